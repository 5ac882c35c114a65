"""Outages end in bounded time with a one-line InfrastructureError / outcome ``unavailable``.

Real parts only: an HTTP server on 127.0.0.1 that answers ``/health`` but stalls (or answers 503
to) the API, a SQLite store that cannot grow (a child process with ``RLIMIT_FSIZE``: every write
past 4 KiB of any file fails with ``EFBIG``, as on a full disk; chosen over a tiny mounted file
system, which needs privileges, and over read-only files, which root ignores), and a SQLite
store locked by another connection.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acgate.errors import EXIT_INFRASTRUCTURE, InfrastructureError
from acgate.mlflow import MlflowBounds, check_tracking_store, log_scan, promote
from acgate.mlflow.bounds import DEFAULT_BOUNDS, bounded
from acgate.mlflow.tracking import default_tracking_uri, make_client

TRAIN = "0" * 63 + "1"
QUICK = MlflowBounds(timeout_s=2, max_retries=1, backoff_factor=0)
HERE = Path(__file__).resolve().parent


def _timed(function, *args, **kwargs):
    start = time.monotonic()
    try:
        return function(*args, **kwargs), None, time.monotonic() - start
    except Exception as error:  # returned for the asserts
        return None, error, time.monotonic() - start


# ------------------------------------------------------------------------ stalled / 503 server


def test_gate_on_a_stalled_server_is_unavailable_within_30_s(fake_server):
    """The probe hung ~15 minutes here (120 s read timeout x 7 retries)."""
    assert DEFAULT_BOUNDS.worst_case_s <= 30
    with fake_server("stall") as server:
        decision, error, seconds = _timed(promote, tracking_uri=server.url, run_id="0" * 32,
                                          model_name="m", model_version=1)
    assert error is None
    assert decision.outcome == "unavailable" and not decision.promoted
    assert decision.exit_code == EXIT_INFRASTRUCTURE
    assert server.url in decision.reasons[0] and "timed out" in decision.reasons[0].lower()
    assert len(decision.reasons[0].splitlines()) == 1
    assert seconds < 40, seconds
    assert server.api_requests == DEFAULT_BOUNDS.max_retries + 1  # then it gave up


def test_check_tracking_store_on_a_stalled_server_raises_within_its_timeout(fake_server):
    with fake_server("stall") as server:
        _, error, seconds = _timed(check_tracking_store, server.url, timeout_s=6)
    assert isinstance(error, InfrastructureError)
    assert server.url in str(error)
    assert seconds < 12, seconds


def test_log_scan_on_a_stalled_server_raises_infrastructure_error(fake_server, make_result):
    with fake_server("stall") as server:
        _, error, seconds = _timed(log_scan, make_result(), tracking_uri=server.url,
                                   dataset_sha256=TRAIN, bounds=QUICK)
    assert isinstance(error, InfrastructureError), error
    assert server.url in str(error) and len(str(error).splitlines()) == 1
    assert seconds < QUICK.worst_case_s + 10, seconds


def test_server_answering_503_is_unavailable_fast(fake_server, make_result):
    with fake_server("503") as server:
        decision, error, seconds = _timed(promote, tracking_uri=server.url, run_id="0" * 32,
                                          model_name="m", model_version=1)
        assert error is None and decision.outcome == "unavailable", decision
        assert seconds < 20, seconds
        _, error, seconds = _timed(check_tracking_store, server.url, timeout_s=10)
        assert isinstance(error, InfrastructureError) and server.url in str(error)
        _, error, _ = _timed(log_scan, make_result(), tracking_uri=server.url,
                             dataset_sha256=TRAIN)
        assert isinstance(error, InfrastructureError) and server.url in str(error)
    assert "503" in str(error) or "too many" in str(error).lower(), error


# ------------------------------------------------------------------------ SQLite stores


def test_check_tracking_store_on_sqlite(fast_dir_factory, tmp_path):
    uri = default_tracking_uri(fast_dir_factory() / "new" / "store")
    check_tracking_store(uri)  # creates the folder and the schema
    assert Path(uri[len("sqlite:///"):]).is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InfrastructureError, match="cannot create its folder"):
        check_tracking_store(f"sqlite:///{blocker / 'mlflow.db'}")
    with pytest.raises(ValueError, match="tracking_uri"):
        check_tracking_store("")
    with pytest.raises(ValueError, match="cannot be used"):
        check_tracking_store("nosuchscheme://x")


_CHILD = r"""
import json, logging, resource, signal, sys
sys.path.insert(0, {here!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
from conftest import make_result
from acgate.mlflow import check_tracking_store, log_scan, promote
from acgate.mlflow.tracking import make_client
uri, action = {uri!r}, {action!r}
make_client(uri)  # imports and opens everything before the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    if action == "scan":
        log_scan(make_result(), tracking_uri=uri, dataset_sha256={sha!r})
        out = {{"raised": None}}
    elif action == "check":
        check_tracking_store(uri)
        out = {{"raised": None}}
    else:
        decision = promote(tracking_uri=uri, run_id={run_id!r}, model_name="full",
                           model_version=1)
        out = {{"raised": None, "outcome": decision.outcome, "reasons": decision.reasons}}
except Exception as error:
    out = {{"raised": type(error).__name__, "message": str(error)}}
print(json.dumps(out))
"""


def _in_full_store(uri, action, run_id=""):
    code = _CHILD.format(here=str(HERE), uri=uri, action=action, sha=TRAIN, run_id=run_id)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1]), child.stderr


def test_full_store_gives_one_line_errors(fast_dir_factory, make_result, register_version):
    uri = default_tracking_uri(fast_dir_factory())
    client = make_client(uri)
    run_id = log_scan(make_result(poisoned=()), tracking_uri=uri, dataset_sha256=TRAIN)
    version = register_version(client, "full", sha256=TRAIN)

    scanned, stderr = _in_full_store(uri, "scan")
    assert scanned["raised"] == "InfrastructureError", scanned
    message = scanned["message"]
    assert uri in message and "creating the scan run" in message
    assert "disk" in message.lower() or "full" in message.lower(), message
    assert len(message.splitlines()) == 1 and len(message) < 600
    assert "Traceback" not in stderr and len(stderr.splitlines()) < 15, stderr

    checked, _ = _in_full_store(uri, "check")
    assert checked["raised"] == "InfrastructureError", checked
    assert "cannot write in its folder" in checked["message"]

    gated, stderr = _in_full_store(uri, "gate", run_id)
    assert gated["raised"] is None and gated["outcome"] == "unavailable", gated
    assert "Traceback" not in stderr
    assert client.get_registered_model("full").aliases == {}  # the alias never moved
    assert version == "1"


def test_locked_store_is_unavailable(fast_dir_factory, make_result, register_version):
    uri = default_tracking_uri(fast_dir_factory())
    client = make_client(uri)
    run_id = log_scan(make_result(poisoned=()), tracking_uri=uri, dataset_sha256=TRAIN)
    version = register_version(client, "locked", sha256=TRAIN)
    holder = sqlite3.connect(uri[len("sqlite:///"):], isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        decision, error, seconds = _timed(promote, tracking_uri=uri, run_id=run_id,
                                          model_name="locked", model_version=version)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert error is None
    assert decision.outcome == "unavailable", decision.reasons
    assert "locked" in decision.reasons[0], decision.reasons
    assert seconds < 40, seconds  # MLflow's 20 s busy timeout
    assert client.get_registered_model("locked").aliases == {}


# ------------------------------------------------------------------------ the bounds


def test_bounded_sets_and_restores_mlflow_settings(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "5")  # the operator's choice
    with bounded(MlflowBounds(timeout_s=4, max_retries=1)):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "5"
        with bounded(MlflowBounds(timeout_s=2)):
            assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "5"
    with pytest.raises(ValueError, match="max_retries.*11"):
        MlflowBounds(max_retries=11)
