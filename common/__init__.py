"""Small pieces every stage shares: CLI errors, atomic writes, worker processes.

Every script imports this package first, so an old Python stops here with one line and exit code 2.
"""

import sys

if sys.version_info < (3, 11):  # noqa: UP036 (the point is to run on older Pythons)
    found = ".".join(map(str, sys.version_info[:3]))
    sys.stderr.write(f"error: this project needs Python 3.11 or newer; this is Python {found} ({sys.executable})\n")
    raise SystemExit(2)
