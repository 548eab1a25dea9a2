"""The import structure of asyncres: no cycle between modules, no module imported twice.

The rule for the graph: **module-level imports are acyclic.** An edge ``a -> b`` is any
``import`` that runs when ``a`` is first imported — at the top, in ``try``/``if`` blocks,
in class bodies, and under ``if TYPE_CHECKING:`` (a dependency for the type checker and
the reader is still a dependency: breaking the cycle there takes a Protocol, not a guard).
Importing ``p.q.r`` also runs the packages ``p`` and ``p.q``, so those are edges too (except
packages that contain ``a``: they are already running). Imports inside a function body
are *not* edges: they run later, on first use, and are the sanctioned way to reach an
optional dependency (httpx for ``chaos.ChaosTransport``) or to defer a cost.

The fresh-interpreter check imports public modules in a subprocess that records every
module body that runs (a ``<module>`` frame whose code comes from the module's own file)
and fails if one runs twice or one file runs under two names (``asyncres.chaos._x`` and
``_x``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

Graph = dict[str, set[str]]


def discover(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``: dotted name -> source file."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _module_level(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module runs (function bodies excluded)."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: Mapping[str, Path]) -> Graph:
    """The module-level import edges between ``modules`` (see the module docstring)."""
    graph: Graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _module_level(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule; `from pkg import Name` the package.
                submodule = f"{target}.{alias.name}"
                targets.add(submodule if submodule in modules else target)
        edges: set[str] = set()
        own = set(_ancestors(name)) | {name}
        for target in targets:
            for module in [*_ancestors(target), target]:
                if module in modules and module not in own:
                    edges.add(module)
        graph[name] = edges
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` (iterative DFS)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done and following in graph:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph[following])))
    return None


def _write_package(root: Path, files: Mapping[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


# -- the graph -------------------------------------------------------------------------


#: Known debt, allowed so that it can only shrink: the db pool's helper modules name
#: `GuardedPool` in annotations (``if TYPE_CHECKING:`` back-references to the class they
#: serve). They never run at import time; the fix is a Protocol of what each helper needs.
TYPE_ONLY_BACK_EDGES = {
    ("asyncres.db._pool._checkout", "asyncres.db._pool._pool"),
    ("asyncres.db._pool._defaults", "asyncres.db._pool._pool"),
    ("asyncres.db._pool._health", "asyncres.db._pool._pool"),
    ("asyncres.db._pool._maintenance", "asyncres.db._pool._pool"),
}


def test_module_level_imports_are_acyclic() -> None:
    """No chain of module-level imports inside asyncres leads back to where it started."""
    modules = discover(ROOT, "asyncres")
    assert {"asyncres", "asyncres.chaos", "asyncres.chaos._proxy"} <= set(modules)
    graph = import_graph(modules)
    for source, target in TYPE_ONLY_BACK_EDGES:
        assert target in graph[source], f"{source} -> {target} is gone: drop it from the list"
        graph[source].discard(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_chaos_cycle_stays_broken() -> None:
    """`Switch` sits in a leaf, toxics know their proxy by a Protocol, loaders sit apart."""
    graph = import_graph(discover(ROOT, "asyncres"))
    switch = graph["asyncres.chaos._switch"]
    assert switch == {"asyncres._setting"}  # nothing from chaos
    assert graph["asyncres._setting"] == set()
    assert "asyncres.chaos._proxy" not in graph["asyncres.chaos._toxics"]
    assert "asyncres.chaos._schedule" not in graph["asyncres.chaos._proxy"]
    chaos = {name for name in graph if name.startswith("asyncres.chaos.")}
    assert graph["asyncres.chaos._loaders"] & chaos == {
        "asyncres.chaos._http",
        "asyncres.chaos._inject",
        "asyncres.chaos._phase",
        "asyncres.chaos._toxics",
        "asyncres.chaos._units",
    }
    below_schedule = graph["asyncres.chaos._schedule"] & chaos
    assert "asyncres.chaos._loaders" in below_schedule


def test_graph_sees_relative_type_checking_and_package_edges(tmp_path: Path) -> None:
    """The graph follows relative, TYPE_CHECKING and parent-package imports, not function ones."""
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",
            "pkg/a.py": """\
                from typing import TYPE_CHECKING
                from . import b
                if TYPE_CHECKING:
                    from .sub.c import C
                class A:
                    def f(self):
                        from .d import D
                """,
            "pkg/b.py": "from pkg.sub import c\n",
            "pkg/d.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from .. import d\nfrom ..b import *\n",
        },
    )
    graph = import_graph(discover(tmp_path, "pkg"))
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b", "pkg.sub", "pkg.sub.c"},
        "pkg.b": {"pkg.sub", "pkg.sub.c"},
        "pkg.d": set(),
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.d", "pkg.b"},
    }
    assert find_cycle(graph) == ["pkg.b", "pkg.sub.c", "pkg.b"]


def test_cycle_through_a_type_checking_import_is_reported(tmp_path: Path) -> None:
    """A cycle closed only under ``if TYPE_CHECKING:`` still fails, naming every module."""
    _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/proxy.py": "from .toxics import Toxic\n",
            "pkg/toxics.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .proxy import Proxy
                """,
            "pkg/lazy.py": "def load():\n    from .proxy import Proxy\n",
        },
    )
    graph = import_graph(discover(tmp_path, "pkg"))
    assert find_cycle(graph) == ["pkg.proxy", "pkg.toxics", "pkg.proxy"]
    assert graph["pkg.lazy"] == set()  # a function-level import is no edge


# -- a fresh interpreter ----------------------------------------------------------------

_PROBE = """
import json, sys

runs = []

def profile(frame, event, arg):
    code = frame.f_code
    if event == "call" and code.co_name == "<module>":
        module_globals = frame.f_globals
        if code.co_filename == module_globals.get("__file__"):
            runs.append([module_globals.get("__name__"), code.co_filename])

sys.setprofile(profile)
try:
    exec(sys.argv[1], {"__name__": "__probe__"})
finally:
    sys.setprofile(None)
print(json.dumps(runs))
"""


def run_probe(code: str, *, cwd: Path = ROOT) -> list[tuple[str, str]]:
    """Run ``code`` in a fresh interpreter; every module body that ran: ``(name, file)``."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, code],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )
    return [(name, file) for name, file in json.loads(result.stdout.splitlines()[-1])]


def duplicates(runs: Iterable[tuple[str, str]]) -> list[str]:
    """Problems in ``runs``: a module run twice, or one file run under two names."""
    names: dict[str, list[str]] = {}
    files: dict[str, set[str]] = {}
    for name, file in runs:
        names.setdefault(name, []).append(file)
        files.setdefault(os.path.realpath(file), set()).add(name)
    problems = [f"{name} ran {len(seen)} times" for name, seen in names.items() if len(seen) > 1]
    problems += [f"{file} ran as {sorted(seen)}" for file, seen in files.items() if len(seen) > 1]
    return problems


def _every_module() -> str:
    names = [name for name in discover(ROOT, "asyncres") if not name.endswith("__main__")]
    return "\n".join(f"import {name}" for name in names)


#: What to import in a fresh interpreter, and a module that must then have run.
FRESH_IMPORTS = {
    "asyncres": ("import asyncres", "asyncres"),
    "asyncres.chaos": ("import asyncres.chaos", "asyncres.chaos._schedule"),
    "asyncres.chaos.ChaosTransport": (
        "import asyncres.chaos\nasyncres.chaos.ChaosTransport",
        "asyncres.chaos._transport",
    ),
    "asyncres.httpx": ("import asyncres.httpx", "asyncres.httpx"),
    "asyncres.db": ("import asyncres.db", "asyncres.db"),
    "asyncres.drill": ("import asyncres.drill", "asyncres.drill"),
    "every module": (_every_module(), "asyncres.cli"),
}


@pytest.mark.parametrize("what", sorted(FRESH_IMPORTS))
def test_fresh_interpreter_imports_no_module_twice(what: str) -> None:
    """Importing a public module in a fresh interpreter runs each module body exactly once."""
    code, expected = FRESH_IMPORTS[what]
    runs = run_probe(code)
    ours = {name for name, file in runs if Path(file).is_relative_to(ROOT / "asyncres")}
    assert expected in ours
    assert ours <= set(discover(ROOT, "asyncres")), "an asyncres file ran under a foreign name"
    assert duplicates(runs) == []


def test_probe_catches_a_module_run_twice_or_under_two_names() -> None:
    """The probe is not blind: a re-run module and a file imported under a second name show."""
    twice = run_probe(
        "import sys, asyncres.chaos._units\n"
        "del sys.modules['asyncres.chaos._units']\n"
        "import asyncres.chaos._units"
    )
    assert duplicates(twice) == ["asyncres.chaos._units ran 2 times"]
    two_names = run_probe(
        f"import sys, asyncres.chaos._units\nsys.path.insert(0, {str(ROOT / 'asyncres/chaos')!r})\n"
        "import _units"
    )
    [problem] = duplicates(two_names)
    assert problem.endswith("ran as ['_units', 'asyncres.chaos._units']")
