"""``python -m asyncres``: the command line (``asyncres drill``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
