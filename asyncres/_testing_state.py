"""Process-wide switches set by `asyncres.testing` (kept here so the core need not import it)."""

from __future__ import annotations

#: When not None: every Retry makes at most this many attempts and never waits.
attempts_cap: int | None = None
