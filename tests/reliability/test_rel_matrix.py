"""The bad-input matrix of docs/reliability.md: every (bad input, entry point) cell.

Each cell writes its bad input (tests/reliability/bad_inputs.py), feeds it to one entry point
(library ``detect``, the CLI in-process, a Kubeflow component's ``.python_func``) and checks the
contract of issue 10: exit 2 / ``ValueError`` / ``TypeError`` (gate: a refusal), a message that
names the input and the problem, nothing left in the output or working folder, and no code from
the data run. Cells that break it today are ``xfail(strict=True)`` with the bug
(``rel_matrix.KNOWN_BUGS``); a fix turns them XPASS, which fails until the entry is removed.
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
