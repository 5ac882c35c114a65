"""How far apart the sides of each redraw lie: the table that chose REDRAW_MIN_SEPARATION.

Thin entry point of :mod:`bench.experiments.redraw_separation`, whose docstring has the usage
and the flags (``python bench/redraw_separation.py --help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # A script run puts bench/ first on sys.path; the package needs the repository root there
    # instead (and bench/'s own files must not shadow top-level modules).
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [str(_bench.parent)] + [p for p in sys.path if Path(p).resolve() != _bench]
    from bench.experiments.redraw_separation import main

    sys.exit(main())
