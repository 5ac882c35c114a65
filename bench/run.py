"""Benchmarks of acgate's Activation Clustering; writes ``bench/RESULTS.md``.

Thin entry point of :mod:`bench.runner` (see there for the flags): ``python bench/run.py
--quick``, ``--only NAME``, ``--threads N``, ``--note TEXT``, ``--assemble``. The same as
``python -m bench`` from the repository root.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # A script run puts bench/ first on sys.path; the package needs the repository root there
    # instead (and bench/'s own files must not shadow top-level modules).
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [str(_bench.parent)] + [p for p in sys.path if Path(p).resolve() != _bench]
    from bench.runner import main

    sys.exit(main())
