"""The ``bench`` package: its runner, its registry and the entry points (fast checks, issue 17).

Run in subprocesses from the repository root: under pytest, ``tests/`` is on ``sys.path`` and
its ``bench`` folder would shadow the package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ("bench/run.py", "bench/attack_matrix.py", "bench/detector_variants.py",
                "bench/text_rotten_tomatoes.py", "bench/beyond_paper.py", "bench/dense_cores.py",
                "bench/tail_spread.py", "bench/redraw_separation.py")


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_results_md_is_the_assembly_of_the_committed_parts():
    out = _python(
        "from bench.results import RESULTS_PATH, assembled_text\n"
        "print(assembled_text(quick=False) == RESULTS_PATH.read_text())")
    assert out.strip() == "True"


def test_every_experiment_is_registered_and_takes_frozen_settings():
    out = _python(
        "import dataclasses\n"
        "from bench.common import BenchSettings\n"
        "from bench.results import EXPERIMENT_ORDER\n"
        "from bench.runner import EXPERIMENTS\n"
        "assert tuple(EXPERIMENTS) == EXPERIMENT_ORDER, (tuple(EXPERIMENTS), EXPERIMENT_ORDER)\n"
        "settings = BenchSettings(command='python bench/run.py', quick=True, threads=1)\n"
        "try:\n"
        "    settings.quick = False\n"
        "except dataclasses.FrozenInstanceError:\n"
        "    print('frozen', settings.parts_dir.name)\n")
    assert out.strip() == "frozen quick"


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_points_start(script):
    proc = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage:")


def test_redraw_separation_reads_back_the_core_clauses():
    # The table that chose REDRAW_MIN_SEPARATION parses the reasons the core writes: a change
    # of either clause must change the parser with it.
    out = _python(
        "import numpy as np\n"
        "from acgate.core.redraw import RowRedraw\n"
        "from bench.experiments.redraw_separation import parse_clause\n"
        "flags = np.zeros(10, bool)\n"
        "for separation in (4.567, 3.456):\n"
        "    redraw = RowRedraw(flagged=flags, score=np.zeros(10), added=7, removed=3, rounds=2,\n"
        "                       n_components=20, separation=separation)\n"
        "    print(parse_clause('the analysis; ' + redraw.describe() + '; after'))\n"
        "print(parse_clause('no redraw here'))\n"
        "print(parse_clause(RowRedraw(flagged=flags, score=np.zeros(10), added=1, removed=0,\n"
        "                             rounds=1, n_components=20, separation=float('inf'),\n"
        "                             ).describe()))\n")
    assert out.split("\n")[:4] == ["(7, 3, 4.56, True)", "(7, 3, 3.45, False)", "None",
                                    "(1, 0, inf, True)"]
