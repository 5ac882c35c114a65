"""What ``acgate`` writes to stderr: its own warnings, libraries' chatter only with ``-v``."""

from __future__ import annotations

import subprocess
import sys

import pytest

_MAIN = "import sys; from acgate.cli import main; sys.exit(main(sys.argv[1:]))"


def _acgate(*argv: str) -> subprocess.CompletedProcess[str]:
    # A process of its own: the logging set-up is the console script's, not pytest's.
    return subprocess.run([sys.executable, "-c", _MAIN, *argv], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def poisoned_digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("logging") / "poisoned.parquet"
    run = _acgate("poison", "digits", "--out", str(out), "--rate", "0.1")
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.parametrize("verbose", [False, True])
def test_great_expectations_info_lines_only_with_verbose(tmp_path, poisoned_digits, verbose):
    # The scan validates the dataset (Great Expectations logs INFO records of its own), then
    # refuses the model file: the validation's logging without a minute of training.
    model = tmp_path / "not-weights.pt"
    model.write_bytes(b"not a state_dict")
    run = _acgate(*(["-v"] if verbose else []), "scan", str(poisoned_digits), "--out",
                  str(tmp_path / "scan"), "--no-mlflow", "--model", str(model))
    assert run.returncode == 2, run.stderr
    assert "refusing to load" in run.stderr
    assert ("INFO great_expectations" in run.stderr) is verbose, run.stderr


def test_stage_progress_lines_and_quiet(tmp_path, poisoned_digits):
    # A whole (short) scan with --progress: every stage announced, with what it works on, and
    # each one's time (stderr is not a terminal here, so --progress asks for them).
    run = _acgate("scan", str(poisoned_digits), "--out", str(tmp_path / "scan"), "--no-mlflow",
                  "--no-report", "--epochs", "2", "--progress")
    assert run.returncode in (0, 3, 5), run.stderr  # a verdict, whichever two epochs give
    lines = [line for line in run.stderr.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/6] reading and validating", "[2/6] training the proxy",
        "[3/6] extracting activations", "[4/6] clustering", "[5/6] analysing"]
    assert "2 epochs" in lines[1] and "10 classes" in lines[3]
    assert "retraining the proxy" in lines[4]
    for stage in ("read validate", "train proxy", "extract", "cluster", "analyze report"):
        assert f"{stage} done in " in run.stderr, run.stderr
    # -q: nothing of it (the scan fails after validating: no need to train).
    model = tmp_path / "not-weights.pt"
    model.write_bytes(b"not a state_dict")
    for quiet in (False, True):
        run = _acgate(*(["-q"] if quiet else []), "scan", str(poisoned_digits), "--out",
                      str(tmp_path / f"scan-{quiet}"), "--no-mlflow", "--model", str(model),
                      "--progress")
        assert run.returncode == 2, run.stderr
        assert ("[1/6] reading and validating" in run.stderr) is not quiet, run.stderr


def test_the_analysis_outlook_counts_the_retrains_rows():
    # Two retrains at the proxy's epochs, each on at most --exre-max-rows rows.
    from acgate.scan import ScanConfig, _analysis_outlook

    def seconds(config, n_rows):
        return _analysis_outlook(config, 60.0, n_rows).rsplit("(about ", 1)[1].split(" s ")[0]

    assert seconds(ScanConfig(epochs=2), 60_000) == "120"
    assert seconds(ScanConfig(epochs=2, exre_max_rows=30_000), 60_000) == "60"
    assert seconds(ScanConfig(epochs=2, exre_max_rows=30_000), 20_000) == "120"
    assert seconds(ScanConfig(epochs=2, exre_epochs=1, exre_max_rows=15_000), 60_000) == "15"
    with pytest.raises(ValueError, match="exre_max_rows"):
        ScanConfig(exre_max_rows=0)
