"""Digits beyond the paper's setting: blended triggers, merged clean classes (parts/beyond.md).

Thin entry point of :mod:`bench.experiments.beyond_paper`, whose docstring has the usage
and the flags (``python bench/beyond_paper.py --help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # A script run puts bench/ first on sys.path; the package needs the repository root there
    # instead (and bench/'s own files must not shadow top-level modules).
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [str(_bench.parent)] + [p for p in sys.path if Path(p).resolve() != _bench]
    from bench.experiments.beyond_paper import main

    sys.exit(main())
