"""Hand-built detection results and a real SQLite MLflow store for the MLflow adapter tests."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from acgate.core.result import ClassReport, DetectionResult, RunInfo

#: The thresholds a hand-built scan judges every class with (``Thresholds`` field names). A
#: real scan records them per class (``ClassReport.thresholds``, in ``acgate/classes.json``)
#: and as the params ``<name>_threshold``.
THRESHOLDS = {
    "size": 0.35,
    "silhouette": 0.10,
    "exre": 1.0,
    "source_share": 0.5,
    "nested_source_share": 0.7,
    "confusion": 0.03,
}

PARAMS = {
    "reducer": "ica",
    "n_components": 10,
    "n_clusters": 2,
    **{f"{name}_threshold": value for name, value in THRESHOLDS.items()},
    "random_state": 0,
}


def make_result(
    *,
    classes=(0, 1, 2),
    poisoned=(1,),
    skipped=(),
    suspicious=None,
    n_per_class=20,
    class_scores=None,
    thresholds=None,
    params=None,
):
    """A result over ``classes``; ``suspicious`` maps a clean class to (silhouette, size, exre).

    ``class_scores`` maps a clean class to its report's scores (``source_share``,
    ``confusion``: the numbers of its exclusionary reclassification); ``thresholds`` maps a
    class to the thresholds its report records (default :data:`THRESHOLDS`; ``{}``: none);
    ``params`` are the run info's params (default :data:`PARAMS`).
    """
    suspicious = dict(suspicious or {})
    class_scores = dict(class_scores or {})
    thresholds = {c: dict(THRESHOLDS) for c in classes} | dict(thresholds or {})
    sample_ids, labels, clusters, flags, scores, sources, reports = [], [], [], [], [], [], []
    for c in classes:
        start = len(sample_ids)
        sample_ids.extend(range(start, start + n_per_class))
        labels.extend([c] * n_per_class)
        n_small = n_per_class // 5
        if c in skipped:
            clusters.extend([-1] * n_per_class)
            flags.extend([False] * n_per_class)
            scores.extend([0.0] * n_per_class)
            sources.extend([-1] * n_per_class)
            reports.append(ClassReport(
                label=c, n_samples=n_per_class, n_clusters=0, cluster_sizes=(),
                suspicious_cluster=None, size_ratio=None, silhouette=None, exre_score=None,
                suspected_source=None, verdict="skipped", reason="too few samples",
                thresholds=thresholds[c],
            ))
            continue
        cluster = [0] * (n_per_class - n_small) + [1] * n_small
        clusters.extend(cluster)
        source = (c - 1) % 10
        if c in poisoned:
            flags.extend([k == 1 for k in cluster])
            scores.extend([0.9 if k == 1 else 0.1 for k in cluster])
            sources.extend([source if k == 1 else -1 for k in cluster])
            reports.append(ClassReport(
                label=c, n_samples=n_per_class, n_clusters=2,
                cluster_sizes=(n_per_class - n_small, n_small), suspicious_cluster=1,
                size_ratio=n_small / n_per_class, silhouette=0.31, exre_score=0.1,
                suspected_source=source, verdict="poisoned", reason="small tight cluster",
                scores={"source_share": 0.9, "confusion": 0.004}, thresholds=thresholds[c],
            ))
        else:
            silhouette, size, exre = suspicious.get(c, (0.05, 0.45, None))
            flags.extend([False] * n_per_class)
            scores.extend([0.2] * n_per_class)
            sources.extend([-1] * n_per_class)
            reports.append(ClassReport(
                label=c, n_samples=n_per_class, n_clusters=2,
                cluster_sizes=(n_per_class - n_small, n_small), suspicious_cluster=None,
                size_ratio=size, silhouette=silhouette, exre_score=exre,
                suspected_source=None, verdict="clean", reason="one cluster fits",
                scores=class_scores.get(c, {}), thresholds=thresholds[c],
            ))
    return DetectionResult(
        sample_ids=np.array(sample_ids), labels=np.array(labels), segments=np.array(labels),
        clusters=np.array(clusters), is_poison=np.array(flags), poison_score=np.array(scores),
        suspected_source=np.array(sources), classes=tuple(reports),
        info=RunInfo(params=PARAMS if params is None else params,
                     versions={"acgate": "0.1.0", "numpy": np.__version__}),
    )


#: SHA-256 of the bytes the test scans "scanned" and the test models were "trained" on.
TRAIN_SHA256 = hashlib.sha256(b"the training file").hexdigest()
OTHER_SHA256 = hashlib.sha256(b"another file").hexdigest()


def register_version(client, name: str, artifact_location: str | None = None, *,
                     sha256: str | None = TRAIN_SHA256, how: str = "version-tag") -> str:
    """Register a real (tiny) model version whose source is a logged artifact folder.

    ``sha256`` is the training-data digest, recorded the way ``how`` says: ``version-tag``
    (the model version's ``acgate.training_data_sha256`` tag, the documented way), ``run-tag``
    (the same tag on the training run) or ``dataset-input`` (a training dataset input of the
    training run, :func:`acgate.mlflow.dataset_input`); ``None``: not recorded.
    """
    from acgate.mlflow import TRAINING_DATA_SHA256_TAG, dataset_input

    experiment = client.get_experiment_by_name("models")
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment("models", artifact_location=artifact_location))
    run = client.create_run(experiment_id, run_name="train")
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    if sha256 is not None and how == "run-tag":
        client.set_tag(run.info.run_id, TRAINING_DATA_SHA256_TAG, sha256)
    elif sha256 is not None and how == "dataset-input":
        client.log_inputs(run.info.run_id, [dataset_input(
            sha256, name="train.parquet", source="s3://bucket/train.parquet")])
    client.set_terminated(run.info.run_id, "FINISHED")
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    if sha256 is not None and how == "version-tag":
        client.set_model_version_tag(name, version.version, TRAINING_DATA_SHA256_TAG, sha256)
    return str(version.version)


def _ram_backed_dir(fallback):
    """A fresh folder in /dev/shm when there is one: MLflow's SQLite schema migrations fsync
    dozens of times, 1 s on tmpfs against 5-7 s on a virtual disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="acgate-test-mlflow-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="acgate-test-mlflow-", dir=fallback))


@pytest.fixture(scope="session")
def fast_dir_factory(tmp_path_factory):
    """Makes RAM-backed folders (removed at the end of the session)."""
    made = []

    def make():
        made.append(_ram_backed_dir(tmp_path_factory.getbasetemp()))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def store(fast_dir_factory):
    """A real SQLite tracking store shared by the MLflow tests.

    Tests use their own experiment and model names, so sharing the store keeps them apart.
    """
    from acgate.mlflow.tracking import default_tracking_uri, make_client

    out_dir = fast_dir_factory()
    uri = default_tracking_uri(out_dir)
    client = make_client(uri)
    client.search_experiments()  # creates the database
    return out_dir, uri, client


@pytest.fixture(name="make_result")
def make_result_fixture():
    """The :func:`make_result` factory."""
    return make_result


@pytest.fixture(name="scan_thresholds")
def scan_thresholds_fixture():
    """A copy of :data:`THRESHOLDS`, the thresholds :func:`make_result` records by default."""
    return dict(THRESHOLDS)


@pytest.fixture(name="scan_params")
def scan_params_fixture():
    """A copy of :data:`PARAMS`, the run params :func:`make_result` records by default."""
    return dict(PARAMS)


@pytest.fixture(name="register_version")
def register_version_fixture():
    """The :func:`register_version` helper."""
    return register_version


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _FakeTrackingServer:
    """An HTTP server on 127.0.0.1 (in a thread) that answers ``/health`` and fails the API.

    ``mode="stall"``: API requests are read and never answered (until the server stops, at the
    latest after ``stall_s``); ``mode="503"``: they get ``503 Service Unavailable``.
    """

    def __init__(self, mode: str, stall_s: float = 120.0) -> None:
        import http.server
        import threading

        release = threading.Event()
        self.api_requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                if self.path.rstrip("/") == "/health":
                    self._send(200, b"OK")
                    return
                outer.api_requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if mode == "503":
                    self._send(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}')
                else:
                    release.wait(stall_s)  # never answers while the test runs

            def _send(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

            def log_message(self, *args):  # quiet
                pass

        self._release = release
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def fake_server():
    """Start a :class:`_FakeTrackingServer`: ``with fake_server("stall") as server: ...``."""
    return _FakeTrackingServer
