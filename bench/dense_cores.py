"""Dense cores of the attack matrix's classes: the table that chose DENSE_CORE_SEPARATION.

Thin entry point of :mod:`bench.experiments.dense_cores`, whose docstring has the usage
and the flags (``python bench/dense_cores.py --help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # A script run puts bench/ first on sys.path; the package needs the repository root there
    # instead (and bench/'s own files must not shadow top-level modules).
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [str(_bench.parent)] + [p for p in sys.path if Path(p).resolve() != _bench]
    from bench.experiments.dense_cores import main

    sys.exit(main())
