"""``python -m bench``: the same command line as ``python bench/run.py``."""

import sys

from bench.runner import main

sys.exit(main())
