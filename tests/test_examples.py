"""Every example runs, on both backends, and every README code block is an example excerpt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# Examples that need servers or optional extras opt out of the plain run with this marker.
NOT_STANDALONE = "# example: not standalone"


def _normalise(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def readme_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, backend: str) -> None:
    """Each example script exits cleanly when run as a program."""
    if NOT_STANDALONE in example.read_text():
        pytest.skip("exercised by its adapter's tests")
    # Import the package from this checkout, even where another tree is installed (editable).
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(example), backend],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert result.returncode == 0, result.stderr


def test_every_readme_code_block_lives_in_an_example() -> None:
    """README code is never untested prose: each block is an excerpt of an example file."""
    sources = {path.name: _normalise(path.read_text()) for path in EXAMPLES}
    missing = []
    for block in readme_blocks():
        wanted = _normalise(block)
        if not any(wanted in source for source in sources.values()):
            missing.append(block)
    assert not missing, "README blocks not found in examples/:\n\n" + "\n---\n".join(missing)


def test_readme_starts_with_the_two_commands() -> None:
    """The README opens with the main-job command and the test command."""
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:console|bash|sh)\n(.*?)```", readme, flags=re.DOTALL)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pytest" in commands[1]
