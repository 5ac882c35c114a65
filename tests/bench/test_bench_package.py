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
                "bench/tail_spread.py")


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
