"""Fault tests of issue 10: SIGKILL mid-write, a full disk, MLflow gone before the gate,
two scans logging to one SQLite store at once. Every child process has a bounded wait."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bad_inputs as bi  # noqa: E402

CLI = [sys.executable, "-m", "acgate.cli"]
CHILD_TIMEOUT_S = 120


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _run(argv, *, cwd, timeout=CHILD_TIMEOUT_S, preexec_fn=None):
    return subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=_env(), preexec_fn=preexec_fn)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ----------------------------------------------------------------------------- SIGKILL


def _scan_argv(data, out, seed):
    return ["scan", data, "--out", out, "--no-mlflow", "--no-report", "--epochs", "3",
            "--seed", seed]


def _kill_while_writing(argv, parent: Path, out: Path, cwd: Path) -> int:
    """Start a scan, SIGKILL it once its hidden staging folder holds a file; return rc."""
    process = subprocess.Popen([*CLI, *map(str, argv)], cwd=cwd, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while time.monotonic() < deadline and process.poll() is None:
            staging = [p for p in parent.glob(f".{out.name}.tmp-*") if p.is_dir()]
            if staging and any(p.is_file() for p in staging[0].iterdir()):
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_sigkill_during_scan_keeps_the_previous_complete_result(tmp_path):
    data = bi.write_digits(tmp_path / "digits.parquet", n_rows=200)
    parent = tmp_path / "results"
    out = parent / "scan"
    first = _run(_scan_argv(data, out, 0), cwd=tmp_path)
    assert first.returncode in (0, 3), first.stderr
    before = _tree(out)
    assert "report.json" in before and "samples.parquet" in before

    rc = _kill_while_writing(_scan_argv(data, out, 1), parent, out, tmp_path)
    assert rc == -signal.SIGKILL, "the scan finished before it could be killed mid-write"
    assert _tree(out) == before  # the previous complete result, byte for byte
    visible = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
    assert visible == ["scan"]


def test_sigkill_during_first_scan_leaves_no_output_folder(tmp_path):
    data = bi.write_digits(tmp_path / "digits.parquet", n_rows=200)
    parent = tmp_path / "results"
    parent.mkdir()
    out = parent / "scan"
    rc = _kill_while_writing(_scan_argv(data, out, 0), parent, out, tmp_path)
    assert rc == -signal.SIGKILL
    assert not out.exists()
    assert [p.name for p in parent.iterdir() if not p.name.startswith(".")] == []
    # The killed scan's hidden staging folder is cleaned up by the next scan of that folder.
    assert [p for p in parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]
    rerun = _run(_scan_argv(data, out, 0), cwd=tmp_path)
    assert rerun.returncode in (0, 3), rerun.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["scan"]


# ----------------------------------------------------------------------------- disk full


def _file_size_limit(limit_bytes: int):
    def apply() -> None:
        # Ignore SIGXFSZ so an over-limit write fails with EFBIG ("File too large"), as a
        # full disk fails with ENOSPC, instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.fixture(scope="module")
def no_space_run(tmp_path_factory):
    """``no_space_run(command)``: the CLI run under a 4 kB file-size limit (once per command)."""
    cache = {}

    def run(command):
        if command not in cache:
            cache[command] = _no_space_run(command, tmp_path_factory.mktemp(f"nospace-{command}"))
        return cache[command]
    return run


def _no_space_run(command, tmp_path):
    data = bi.write_digits(tmp_path / "digits.parquet", n_rows=200)
    parent = tmp_path / "results"
    parent.mkdir()
    if command == "poison":
        out = parent / "poisoned.parquet"
        argv = ["poison", data, "--out", out, "--rate", "0.2"]
    else:
        out = parent / "scan"
        argv = ["scan", data, "--out", out, "--no-mlflow", "--no-report", "--epochs", "1"]
    proc = _run(argv, cwd=tmp_path, preexec_fn=_file_size_limit(4_000))
    return proc, out, parent


@pytest.mark.parametrize("command", ["poison", "scan"])
def test_write_failing_for_lack_of_space_leaves_no_partial_file(command, no_space_run):
    proc, out, parent = no_space_run(command)
    assert proc.returncode != 0, "the write did not hit the file-size limit"
    assert not out.exists(), proc.stderr[-2000:]
    assert sorted(p.name for p in parent.iterdir()) == [], proc.stderr[-2000:]


@pytest.mark.parametrize("command", ["poison", "scan"])
def test_write_failing_for_lack_of_space_gives_a_clear_error(command, no_space_run):
    proc, _, _ = no_space_run(command)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # Exit 4: the environment failed, not the input (exit 2 is kept for bad input).
    assert proc.returncode == 4
    assert "File too large" in proc.stderr


# ----------------------------------------------------------------------------- MLflow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(folder: Path, port: int, log_path: Path) -> subprocess.Popen:
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli), "server", "--workers", "1", "--host", "127.0.0.1",
               "--port", str(port), "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
               "--artifacts-destination", str(folder / "server-artifacts")]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                   cwd=folder, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    _stop(process)
    pytest.fail(f"mlflow server not healthy in 60 s:\n{log_path.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def _clean_result():
    import numpy as np

    from acgate.core import detect

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    activations = rng.normal(size=(120, 8)) + labels[:, None] * 10.0
    return detect(activations, labels, random_state=0, analysis="size", size_threshold=0.05)


def _register(client, name: str) -> str:
    experiment_id = client.create_experiment("models")
    run = client.create_run(experiment_id, run_name="train")
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_registered_model(name)
    return str(client.create_model_version(name, source=f"{run.info.artifact_uri}/model",
                                           run_id=run.info.run_id).version)


def test_gate_refuses_when_the_mlflow_server_stopped_after_the_scan(tmp_path):
    from acgate.cli import main
    from acgate.mlflow.tracking import log_scan, make_client

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port, tmp_path / "server.log")
    try:
        client = make_client(url)
        result = _clean_result()
        assert result.verdict == "clean"
        run_id = log_scan(result, tracking_uri=url)
        version = _register(client, "guarded")
    finally:
        _stop(server)
    assert server.poll() is not None

    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["gate", "--model-name", "guarded", "--model-version", version,
                     "--run-id", run_id, "--tracking-uri", url])
    assert code == 4, stderr.getvalue()  # infrastructure, not poison
    decision = json.loads(stdout.getvalue())
    assert decision["promoted"] is False
    assert any(f"127.0.0.1:{port}" in reason for reason in decision["reasons"]), decision
    # the alias was not moved: read the server's store directly
    store = make_client(f"sqlite:///{tmp_path / 'server.db'}")
    assert store.get_registered_model("guarded").aliases == {}


def _run_concurrently(argvs, cwd):
    """Start every CLI command at once; their exit codes and (stdout, stderr)."""
    processes = [subprocess.Popen([*CLI, *map(str, argv)], cwd=cwd, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True) for argv in argvs]
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=CHILD_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return [process.returncode for process in processes], outputs


def _two_concurrent_scans(tmp_path, uri):
    from acgate.mlflow.tracking import make_client

    data = bi.write_digits(tmp_path / "digits.parquet", n_rows=200)
    codes, outputs = _run_concurrently(
        [["scan", data, "--out", tmp_path / f"scan{seed}", "--tracking-uri", uri,
          "--experiment", "concurrent", "--epochs", "1", "--no-report", "--seed", seed]
         for seed in (0, 1)], tmp_path)
    for code, (_, err) in zip(codes, outputs, strict=True):
        assert code in (0, 3), err[-1500:]
    run_ids = [line.split("mlflow run: ")[1].strip() for out, _ in outputs
               for line in out.splitlines() if "mlflow run: " in line]
    assert len(set(run_ids)) == 2, outputs
    client = make_client(uri)
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags.get("acgate.status") == "complete"
        assert run.data.tags.get("acgate.verdict") in ("clean", "poisoned", "incomplete")
        assert client.list_artifacts(run_id)


def test_two_scans_logging_to_one_existing_sqlite_store_at_once_both_complete(tmp_path):
    from acgate.mlflow.tracking import default_tracking_uri, make_client

    uri = default_tracking_uri(tmp_path / "store")
    make_client(uri).search_experiments()  # the store exists before the scans start
    _two_concurrent_scans(tmp_path, uri)


def test_two_scans_creating_one_sqlite_store_at_once_both_complete(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    _two_concurrent_scans(tmp_path, uri)


def test_two_scans_with_the_same_out_never_mix_their_results(tmp_path):
    """Seeds 10 and 11 into one ``--out``: the second writer is refused while the first holds
    the folder, or runs after it; either way each MLflow run's artifacts are its own scan's."""
    from acgate.mlflow.tracking import make_client

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    data = bi.write_digits(tmp_path / "digits.parquet", n_rows=200)
    out = tmp_path / "scan"
    codes, outputs = _run_concurrently(
        [["scan", data, "--out", out, "--tracking-uri", uri, "--experiment", "same-out",
          "--epochs", "1", "--no-report", "--seed", seed] for seed in (10, 11)], tmp_path)
    refused = [err for code, (_, err) in zip(codes, outputs, strict=True) if code == 2]
    assert all("being written by another acgate process" in err for err in refused), refused
    assert sum(code in (0, 3, 5) for code in codes) >= 1, outputs
    client = make_client(uri)
    for seed, (stdout, _) in zip((10, 11), outputs, strict=True):
        run_ids = [line.split("mlflow run: ")[1].strip() for line in stdout.splitlines()
                   if "mlflow run: " in line]
        for run_id in run_ids:
            target = tmp_path / "downloads" / run_id
            target.mkdir(parents=True)
            logged = json.loads(Path(client.download_artifacts(run_id, "scan.json",
                                                               str(target))).read_text())
            assert logged["config"]["seed"] == seed, (seed, logged["config"]["seed"])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert json.loads((out / "scan.json").read_text())["config"]["seed"] in (10, 11)
