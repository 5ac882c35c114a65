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


def test_the_fill_table_fills_the_poisoned_classes_of_a_real_result():
    # The table that chose FILL_MIN_FLAGGED: at 0 the result's own F1; at 5 of 10 the rows
    # acgate.core.redraw.fill_rows adds to each poisoned class (here: a group of poison found
    # by a real detect run without redraw and fill, 60% of its rows kept flagged).
    out = _python(
        "import dataclasses\n"
        "import numpy as np\n"
        "from acgate.core import detect\n"
        "from acgate.core.metrics import precision_recall_f1\n"
        "from bench.experiments.fill import filled_f1\n"
        "rng = np.random.default_rng(0)\n"
        "clean = rng.normal(size=(1800, 16))\n"
        "poison = 0.6 * rng.normal(size=(198, 16))\n"
        "poison[:, 0] += 8.0\n"
        "other = rng.normal(size=(2000, 16)) + 30.0\n"
        "acts = np.concatenate([clean, poison, other])\n"
        "labels = np.r_[np.zeros(1998, int), np.ones(2000, int)]\n"
        "truth = np.r_[np.zeros(1800, bool), np.ones(198, bool), np.zeros(2000, bool)]\n"
        "result = detect(acts, labels, analysis='size', n_clusters=2, size_threshold=0.45,\n"
        "                redraw_components=0)\n"
        "flags = np.asarray(result.is_poison, bool)\n"
        "part = flags & (rng.random(len(flags)) < 0.6)\n"
        "result = dataclasses.replace(result, is_poison=part)\n"
        "base = precision_recall_f1(part, truth)['f1']\n"
        "print(round(filled_f1(result, acts, truth, 0) - base, 6),\n"
        "      filled_f1(result, acts, truth, 5) > base + 0.1,\n"
        "      [c.verdict for c in result.classes])\n")
    assert out.strip() == "0.0 True ['poisoned', 'clean']"


def test_digits_separation_tells_a_gathered_group_from_a_scattered_one():
    # The section's measures: a group planted together is its own neighbourhood (purity 1, a
    # direction separates it, whichever its sign); rows drawn like the rest sit among the rest.
    out = _python(
        "import numpy as np\n"
        "from bench.experiments.digits_separation import (\n"
        "    best_direction_auroc, neighbour_purity, principal)\n"
        "rng = np.random.default_rng(0)\n"
        "rest = rng.normal(size=(400, 30))\n"
        "group = rng.normal(size=(40, 30)) * 0.3\n"
        "group[:, 3] -= 12.0\n"
        "marked = np.r_[np.zeros(400, bool), np.ones(40, bool)]\n"
        "gathered = principal(np.concatenate([rest, group]))\n"
        "scattered = principal(rng.normal(size=(440, 30)))\n"
        "print(gathered.shape, neighbour_purity(gathered, marked),\n"
        "      round(best_direction_auroc(gathered, marked), 3),\n"
        "      neighbour_purity(scattered, marked) < 0.3)\n")
    assert out.strip() == "(440, 10) 1.0 1.0 True"
