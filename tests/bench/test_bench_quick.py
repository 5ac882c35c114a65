"""The benchmark scripts still run: `python bench/run.py --quick` as a smoke test (issue 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_runs_and_writes_its_tables():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "bench/run.py", "--quick", "--threads", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (ROOT / "bench" / "RESULTS-quick.md").read_text(encoding="utf-8")
    for section in ("## reducers", "## digits_quality", "## scale"):
        assert section in results
    assert "command: `python bench/run.py --quick --threads 1`" in results
