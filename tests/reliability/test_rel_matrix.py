"""The bad-input matrix of docs/reliability.md: every (bad input, entry point) cell.

Each cell writes its bad input (tests/reliability/bad_inputs.py), feeds it to one entry point
(library ``detect`` / ``load_model``, the CLI in-process, a Kubeflow component's
``.python_func``) and checks the row's contract (issues 10 and 16): the exit code and exception
the row expects (``BadInput.cli_exit`` / ``BadInput.raises``: exit 2 / ``ValueError`` /
``TypeError`` for bad input; the gate's rows exit 2, 3 or 4 / ``RuntimeError``), a message that
names the input and the problem, nothing left in the output or working folder, and no code from
the data run. A row that could hang (a named pipe) runs under ``rel_matrix.HANG_DEADLINE_S``.
Cells that break it today are ``xfail(strict=True)`` with the bug (``rel_matrix.KNOWN_BUGS``); a
fix turns them XPASS, which fails until the entry is removed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rel_matrix as rm  # noqa: E402

pytest.importorskip("kfp", reason="the kfp extra is needed for the component cells")
pytestmark = pytest.mark.filterwarnings("ignore")


def _params():
    params = []
    for row, entry in rm.cells():
        marks = []
        if (row, entry) in rm.KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=rm.KNOWN_BUGS[(row, entry)]))
        params.append(pytest.param(row, entry, marks=marks, id=f"{row}-{entry.replace(' ', '_')}"))
    return params


@pytest.mark.parametrize(("row", "entry"), _params())
def test_bad_input_cell(row, entry, tmp_path):
    observed = rm.run_cell(row, entry, tmp_path)
    assert not observed.code_ran, "the malicious pickle's payload ran"
    problems = rm.check(row, entry, observed)
    assert not problems, f"{observed.outcome}: {observed.message[:300]} -> {problems}"


def test_every_row_reaches_at_least_one_entry_point():
    import bad_inputs as bi

    for row in bi.ROWS:
        assert any(rm.applicable(row, entry) for entry in rm.ENTRIES), row.name


def test_the_doc_lists_every_row():
    import bad_inputs as bi

    doc = rm.ROOT / "docs" / "reliability.md"
    text = doc.read_text(encoding="utf-8")
    for row in bi.ROWS:
        assert f'<a id="{row.name}"></a>' in text, f"{row.name} missing: run make_matrix.py"


def test_gate_rows_expect_the_exit_codes_of_docs_gate():
    """bad_input 2, refused 3, unavailable 4 (docs/gate.md, acgate.mlflow.OUTCOME_EXIT_CODES)."""
    import bad_inputs as bi

    from acgate.mlflow import OUTCOME_EXIT_CODES

    outcome = {"gate-unknown-run": "bad_input", "gate-missing-store": "bad_input",
               "gate-digest-mismatch": "refused", "gate-no-digest": "refused",
               "gate-relogged-metric": "refused", "gate-edited-classes": "refused",
               "gate-unreachable": "unavailable"}
    gate_rows = {row.name: row for row in bi.ROWS if row.gate is not None}
    assert set(gate_rows) == set(outcome)
    for name, row in gate_rows.items():
        assert row.cli_exit == OUTCOME_EXIT_CODES[outcome[name]], name
        assert row.raises == (RuntimeError,), name


def test_the_hang_guard_releases_a_reader_blocked_on_a_fifo(tmp_path):
    """What keeps a FIFO regression from hanging the run: past the deadline the pipe's reader
    is given end of file, the cell reports ``hang`` and its thread ends."""
    import os
    import threading

    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)

    def blocked_reader():
        with open(fifo, "rb") as handle:  # blocks until a writer opens the pipe
            handle.read()
        return rm.Observed("returned", "")

    observed = rm.run_bounded(blocked_reader, 1.0, unblock=tmp_path)
    assert observed.outcome == "hang"
    assert not [t for t in threading.enumerate() if t.name == "acgate-rel-bounded"]
    assert rm.check("fifo", "cli scan", observed)
