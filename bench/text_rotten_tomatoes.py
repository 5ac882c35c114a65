"""Rotten Tomatoes signature-poison benchmark (the paper's text case); writes bench/parts/text.md.

Thin entry point of :mod:`bench.experiments.text_rotten_tomatoes`, whose docstring has the usage
and the flags (``python bench/text_rotten_tomatoes.py --help``).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # A script run puts bench/ first on sys.path; the package needs the repository root there
    # instead (and bench/'s own files must not shadow top-level modules).
    _bench = Path(__file__).resolve().parent
    sys.path[:] = [str(_bench.parent)] + [p for p in sys.path if Path(p).resolve() != _bench]
    from bench.experiments.text_rotten_tomatoes import main

    sys.exit(main())
