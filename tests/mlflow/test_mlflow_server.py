"""End to end over HTTP: a real `mlflow server` subprocess, a scan logged to it, the gate."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from acgate.mlflow.gate import promote
from acgate.mlflow.tracking import log_scan, make_client

SERVER_START_TIMEOUT_S = 60


def _wait_healthy(url, process, log_path, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n"
                        f"{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"mlflow server not healthy after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def _stop(process):
    """Terminate the server's process group (uvicorn runs as a child of `mlflow server`)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    else:  # the server exited; its children may not have
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_scan_logged_over_http_is_gated(tmp_path, fast_dir_factory, free_port, make_result,
                                       register_version):
    server_dir = fast_dir_factory()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli), "server", "--workers", "1", "--host", "127.0.0.1",
        "--port", str(free_port),
        "--backend-store-uri", f"sqlite:///{server_dir / 'server.db'}",
        "--artifacts-destination", str(server_dir / "server-artifacts"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = tmp_path / "server.log"
    url = f"http://127.0.0.1:{free_port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=tmp_path, start_new_session=True)
    try:
        _wait_healthy(url, process, log_path, SERVER_START_TIMEOUT_S)
        client = make_client(url)
        artifacts = tmp_path / "scan"
        artifacts.mkdir()
        (artifacts / "report.json").write_text(json.dumps({"verdict": "clean"}))

        digest = hashlib.sha256(b"digits").hexdigest()
        clean_run = log_scan(make_result(poisoned=()), tracking_uri=url,
                             artifacts_dir=artifacts, dataset_uri="digits",
                             dataset_sha256=digest)
        poisoned_run = log_scan(make_result(poisoned=(2,)), tracking_uri=url,
                                dataset_sha256=digest)
        version = register_version(client, "http-model", sha256=digest, how="dataset-input")

        refused = promote(tracking_uri=url, run_id=poisoned_run, model_name="http-model",
                          model_version=version)
        assert not refused.promoted and refused.failing_classes == (2,)
        assert refused.outcome == "refused"
        assert client.get_registered_model("http-model").aliases == {}

        passed = promote(tracking_uri=url, run_id=clean_run, model_name="http-model",
                         model_version=version)
        assert passed.promoted, passed.reasons
        assert str(client.get_model_version_by_alias("http-model", "champion").version) == version
        tags = client.get_model_version("http-model", version).tags
        assert tags["acgate.verdict"] == "pass" and tags["acgate.gate.dataset_sha256"] == digest
        # The evidence went through the server too: a re-logged metric is refused over HTTP.
        client.log_metric(poisoned_run, "poisoned/2", 0)
        tampered = promote(tracking_uri=url, run_id=poisoned_run, model_name="http-model",
                           model_version=version)
        assert tampered.outcome == "refused"
        assert any("logged 2 times" in reason for reason in tampered.reasons), tampered.reasons
        # The artifacts went through the server's proxy into its artifact destination.
        assert {a.path for a in client.list_artifacts(clean_run)} >= {"acgate", "report.json"}
        assert {a.path for a in client.list_artifacts(clean_run, "acgate")} >= {
            "acgate/classes.json"}
        assert list((server_dir / "server-artifacts").rglob("report.json"))
    finally:
        _stop(process)
    assert process.poll() is not None
