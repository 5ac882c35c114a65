"""Probe cases of issue 16 (tests/reliability/probe_cases.py): one test per scripted user
action, each checked against its own expected outcome (exit code, files kept or written,
message). docs/reliability.md renders the same cases ("Probe cases (issue 16)").

Every case is bounded: the stalled-server gate runs in a thread joined for at most
``probe_cases.DEADLINE_S`` seconds, and the servers on 127.0.0.1 stop by themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probe_cases as pc  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("name", [case.name for case in pc.CASES])
def test_probe_case(name, tmp_path):
    result = pc.run_case(name, tmp_path / "case")
    assert not result.problems, f"{result.outcome}: {result.message[:300]} -> {result.problems}"


def test_the_doc_lists_every_probe_case():
    doc = pc.rm.ROOT / "docs" / "reliability.md"
    text = doc.read_text(encoding="utf-8")
    for case in pc.CASES:
        assert f'<a id="probe-{case.name}"></a>' in text, f"{case.name}: run make_matrix.py"
