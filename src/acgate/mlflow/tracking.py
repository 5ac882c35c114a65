"""Log a scan to MLflow: params, per-class metrics, verdict tags, the dataset digest, artifacts.

This module and :mod:`acgate.mlflow.gate` are the only places that import :mod:`mlflow`, and
they import it inside functions. The tracking URI is always passed explicitly (an
``MlflowClient(tracking_uri=...)``). Every call runs inside :func:`acgate.mlflow.bounds.bounded`,
which bounds MLflow's HTTP timeouts and retries through MLflow's own environment variables for
the duration of the call (MLflow reads them nowhere else); nothing else here touches
``os.environ``. Store failures (unreachable, stalled, 5xx, a locked or full database, a full
disk) raise :class:`acgate.errors.InfrastructureError` with a one-line message.

What a scan run holds (the promotion gate reads exactly this):

* params: the detector settings (``result.info.params`` plus the ``params`` given), ``dataset_uri``,
  ``dataset_fingerprint``, ``dataset_sha256`` (SHA-256 of the scanned file's bytes),
  ``acgate_version``, ``seed``;
* metrics per class ``c``: ``silhouette/<c>``, ``size_ratio/<c>``, ``exre/<c>``,
  ``source_share/<c>`` and ``confusion/<c>`` (the exclusionary-reclassification source share and
  natural confusion of the judged candidate), ``confidence/<c>`` and ``typicality/<c>`` (how
  surely it went to its source, large classes only; a dense core standing apart records no
  confidence and is asked neither cut), ``overlap/<c>`` and ``overlap_median/<c>``
  (the held-out overlap of the class and that source, large classes only), ``tail_flips/<c>``,
  ``tail_cohesive/<c>`` and ``tail_clump/<c>`` (the class's tail, :mod:`acgate.core.tail`;
  each only when measured), ``flagged/<c>`` (count), ``poisoned/<c>`` and ``skipped/<c>``
  (1 or 0); totals ``n_samples``, ``n_flagged``, ``n_poisoned_classes``,
  ``n_skipped_classes``, ``n_classes``; the proxy's ``proxy_train_accuracy`` and, when the
  dataset records its attack, ``proxy_attack_success`` (when :mod:`acgate.stages` trained it);
  all logged once, at step 0, with one timestamp;
* tags: ``acgate.kind=scan``, ``acgate.classes`` (JSON list), ``acgate.verdict`` (``clean`` |
  ``poisoned`` | ``incomplete``), ``acgate.poisoned_classes`` (JSON list),
  ``acgate.suspected_sources`` (JSON object, poisoned class -> suspected source or ``null``),
  ``acgate.dataset_sha256``, ``acgate.classes_sha256`` (SHA-256 of ``acgate/classes.json``) and,
  set last, ``acgate.status=complete``; a run that raised midway ends ``FAILED`` with
  ``acgate.status=failed``;
* dataset input (``mlflow.data``): the scanned file, context ``scan``, with the input tag
  ``acgate.dataset_sha256`` (MLflow caps a dataset's own ``digest`` field at 36 characters, so it
  holds the first 36 hex digits);
* artifacts: ``acgate/classes.json`` (the per-class table the gate checks the tags and metrics
  against, see :mod:`acgate.mlflow.evidence`), ``acgate/result.json`` (the result summary),
  ``gx/results.json`` (when GX results are given) and the report files of ``artifacts_dir``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acgate.errors import InfrastructureError
from acgate.io.results import result_metrics
from acgate.mlflow.bounds import (
    MlflowBounds,
    StoreUnreachableError,
    bounded,
    describe_error,
    infrastructure_error,
    is_store_error,
)
from acgate.mlflow.evidence import (
    CLASSES_ARTIFACT,
    classes_document,
    document_bytes,
    is_sha256,
    sha256_bytes,
)
from acgate.review import near_misses

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput

    from acgate.core.result import DetectionResult

logger = logging.getLogger(__name__)

#: Tag holding the run's state: ``running`` while logging, ``complete`` once everything is in,
#: ``failed`` when logging raised.
STATUS_TAG = "acgate.status"
STATUS_COMPLETE = "complete"
CLASSES_TAG = "acgate.classes"
VERDICT_TAG = "acgate.verdict"
POISONED_CLASSES_TAG = "acgate.poisoned_classes"
SUSPECTED_SOURCES_TAG = "acgate.suspected_sources"
#: Clean classes that came close to a cut (:func:`acgate.review.near_misses`): where to look.
NEAR_MISS_CLASSES_TAG = "acgate.near_miss_classes"
#: Run tag: what the run is (``scan`` or ``repair``).
KIND_TAG = "acgate.kind"
#: Run tag of a scan of repaired data: the id of the scan run whose flagged rows were repaired
#: (that run is also its MLflow parent, ``mlflow.parentRunId``).
RESCAN_OF_TAG = "acgate.rescan_of"
#: Run param and run tag holding the SHA-256 of the scanned file's bytes.
DATASET_SHA256_PARAM = "dataset_sha256"
DATASET_SHA256_TAG = "acgate.dataset_sha256"
#: Run tag holding the SHA-256 of the ``acgate/classes.json`` artifact.
CLASSES_SHA256_TAG = "acgate.classes_sha256"
#: Model-version tag (or training-run tag) holding the SHA-256 of the training data file.
TRAINING_DATA_SHA256_TAG = "acgate.training_data_sha256"
#: Input tag naming what a dataset input was used for (MLflow's own key).
DATASET_CONTEXT_TAG = "mlflow.data.context"

#: Files of ``artifacts_dir`` logged as artifacts (relative glob patterns). Anything else in the
#: folder (an ``mlflow.db``, an ``mlartifacts/`` root) is left alone.
ARTIFACT_PATTERNS: tuple[str, ...] = ("*.parquet", "*.json", "*.html", "plots/*.png")

#: Seconds to wait for an HTTP tracking server's ``/health`` before calling it unreachable.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Seconds :func:`check_tracking_store` waits for the store in all.
DEFAULT_CHECK_TIMEOUT_S = 30.0
#: Seconds to wait for another process that is creating or migrating the same SQLite store.
STORE_LOCK_TIMEOUT_S = 120.0
#: Free bytes :func:`check_tracking_store` wants beside a SQLite store.
MIN_FREE_BYTES = 1 << 20
#: Bounds of the best-effort calls that end a failed run (the store may be what failed).
_CLEANUP_BOUNDS = MlflowBounds(timeout_s=3, max_retries=0, backoff_factor=0)

_MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
_MAX_TAG_VALUE = 8000  # MLflow's limit on a tag value
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_PARAM_NAME = re.compile(r"^[\w./\- ]+$")
_RESERVED_PARAMS = ("dataset_uri", "dataset_fingerprint", DATASET_SHA256_PARAM, "acgate_version",
                    "seed")


def default_tracking_uri(out_dir: str | Path) -> str:
    """SQLite tracking URI of a local store in ``out_dir``.

    Args:
        out_dir: Folder of the store; the database is ``<out_dir>/mlflow.db`` and runs logged
            with :func:`log_scan` keep their artifacts under ``<out_dir>/mlartifacts``.

    Returns:
        ``"sqlite:///<absolute out_dir>/mlflow.db"``.
    """
    return f"sqlite:///{Path(out_dir).resolve() / 'mlflow.db'}"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifact root used when :func:`log_scan` creates an experiment.

    Args:
        tracking_uri: The tracking URI.

    Returns:
        ``file://<folder of the database>/mlartifacts`` for a ``sqlite:///`` store; ``None``
        otherwise (a tracking server chooses its own artifact root).
    """
    db_path = sqlite_path(tracking_uri)
    if db_path is None:
        return None
    return (db_path.parent / "mlartifacts").as_uri()


def sqlite_path(tracking_uri: str) -> Path | None:
    """Absolute path of the database file of a ``sqlite:///`` URI, else ``None``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def is_http_uri(tracking_uri: str) -> bool:
    """Whether the tracking URI points at a tracking server over HTTP(S)."""
    return tracking_uri.startswith(("http://", "https://"))


def check_server_reachable(
    tracking_uri: str, *, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
) -> None:
    """Fail fast when an HTTP tracking server does not answer.

    MLflow's own client retries an unreachable server with backoff for minutes; this probe
    (``GET <uri>/health``) answers in at most ``timeout_s``. Any HTTP response, even an error
    status, counts as reachable. Non-HTTP URIs are not probed. A server that answers here but
    stalls its API is caught by the bounds of :func:`acgate.mlflow.bounds.bounded`.

    Args:
        tracking_uri: The tracking URI.
        timeout_s: Seconds to wait for the server.

    Raises:
        acgate.mlflow.bounds.StoreUnreachableError: When the server cannot be reached, naming
            the URI and the error (an :class:`~acgate.errors.InfrastructureError` and a
            :class:`ConnectionError`).
    """
    if not is_http_uri(tracking_uri):
        return
    health_url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health_url, timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StoreUnreachableError(
            f"MLflow tracking server {tracking_uri!r} is unreachable ({health_url}: {reason})"
        ) from error


def make_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` bound to ``tracking_uri`` for tracking and the model registry.

    For a ``sqlite:///`` URI the database's folder, file and schema are created (or migrated)
    here, under a lock beside the database.

    Raises:
        ValueError: ``tracking_uri`` is empty or of a kind MLflow does not support.
        acgate.errors.InfrastructureError: The store cannot be opened (a folder that cannot be
            created, a locked, full or unreadable database, a missing database driver).
    """
    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise ValueError(f"tracking_uri must be a non-empty string, got {tracking_uri!r}")
    try:
        from mlflow import MlflowClient
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "acgate.mlflow needs MLflow: pip install 'acgate[mlflow]'"
        ) from error
    db_path = sqlite_path(tracking_uri)
    try:
        if db_path is None:
            return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        with _store_lock(db_path, tracking_uri):
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            # Touch both schemas while locked: MLflow creates / migrates tables on first use.
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        return client
    except InfrastructureError:
        raise
    except Exception as error:
        if getattr(error, "error_code", None) == "INVALID_PARAMETER_VALUE":
            raise ValueError(f"tracking URI {tracking_uri!r} cannot be used: "
                             f"{describe_error(error)}") from error
        if is_store_error(error) or isinstance(error, ImportError):
            raise infrastructure_error(tracking_uri, "opening the store", error) from error
        raise


@contextlib.contextmanager
def _store_lock(db_path: Path, tracking_uri: str = "",
                timeout_s: float = STORE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``.<db>.lock`` (beside the database) while a store is opened.

    MLflow creates (or migrates) the schema when a client first opens a store; two processes
    doing that at once on a new file race ("table experiments already exists") and one dies.
    Serialising the opening makes concurrent scans safe; on an existing store the lock is held
    for milliseconds. Waits at most ``timeout_s`` for another holder. Without ``fcntl`` (not
    POSIX) no lock is taken.

    Raises:
        acgate.errors.InfrastructureError: The folder cannot be created, or another process held
            the lock for ``timeout_s``.
    """
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InfrastructureError(
            f"cannot create the folder {str(db_path.parent)!r} of tracking store "
            f"{tracking_uri or str(db_path)!r}: {describe_error(error)}") from error
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path = db_path.with_name(f".{db_path.name}.lock")
    try:
        lock = open(lock_path, "a+b")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InfrastructureError(
            f"cannot open the lock file {str(lock_path)!r} of tracking store "
            f"{tracking_uri or str(db_path)!r}: {describe_error(error)}") from error
    with lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InfrastructureError(
                        f"tracking store {tracking_uri or str(db_path)!r}: another process has "
                        f"held {str(lock_path)!r} for over {timeout_s:g} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def check_tracking_store(
    tracking_uri: str,
    *,
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> None:
    """Check that a tracking store answers a real API call, within ``timeout_s``.

    Call it before long work whose result will be logged (the scan calls it before training):
    a store that is down should stop the work at once, not after it.

    * ``sqlite:///``: the database's folder is created when missing and must have
      ``min_free_bytes`` free and take a 64 KiB test write; the database is opened (created or
      migrated when needed, like :func:`make_client`) and searched.
    * ``http(s)://``: ``/health`` answers, then ``search_experiments(max_results=1)`` does, with
      per-request timeouts and retries bounded to fit ``timeout_s``; a call still pending after
      ``timeout_s`` is abandoned (its thread ends on its own). Other URIs (``postgresql://``,
      ...) get the same search under the same overall limit.

    Args:
        tracking_uri: The tracking URI.
        timeout_s: Seconds to wait in all (for an HTTP server; a SQLite store waits at most
            MLflow's 20 s busy timeout for a locked database).
        min_free_bytes: Free bytes wanted on the SQLite store's file system.

    Raises:
        ValueError: An empty or unsupported URI, or a non-positive ``timeout_s``.
        acgate.errors.InfrastructureError: The store is unreachable, stalls, answers with
            errors, is locked or full, or its folder is not writable; the message names the
            URI.
    """
    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise ValueError(f"tracking_uri must be a non-empty string, got {tracking_uri!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (
            math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    db_path = sqlite_path(tracking_uri)
    if db_path is not None:
        _check_sqlite_folder(tracking_uri, db_path, min_free_bytes)
        with bounded():
            try:
                make_client(tracking_uri).search_experiments(max_results=1)
            except (InfrastructureError, ValueError):
                raise
            except Exception as error:
                if is_store_error(error):
                    raise infrastructure_error(tracking_uri, "searching experiments",
                                               error) from error
                raise
        return

    per_request = MlflowBounds(timeout_s=max(1, int(timeout_s / 3)), max_retries=1,
                               backoff_factor=0)
    outcome: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            with bounded(per_request):
                check_server_reachable(tracking_uri, timeout_s=min(timeout_s / 3,
                                                                   DEFAULT_CONNECT_TIMEOUT_S))
                make_client(tracking_uri).search_experiments(max_results=1)
            outcome["error"] = None
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=probe, name="acgate-check-tracking-store", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise InfrastructureError(
            f"MLflow tracking store {tracking_uri!r} did not answer search_experiments within "
            f"{timeout_s:g} s")
    error = outcome.get("error")
    if error is None:
        return
    if isinstance(error, InfrastructureError):
        raise error
    if isinstance(error, Exception) and is_store_error(error):
        raise infrastructure_error(tracking_uri, "searching experiments", error) from error
    raise error


def _check_sqlite_folder(tracking_uri: str, db_path: Path, min_free_bytes: int) -> None:
    folder = db_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InfrastructureError(
            f"tracking store {tracking_uri!r}: cannot create its folder {str(folder)!r}: "
            f"{describe_error(error)}") from error
    if db_path.exists() and not db_path.is_file():
        raise InfrastructureError(
            f"tracking store {tracking_uri!r}: {str(db_path)!r} is not a file")
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise InfrastructureError(
            f"tracking store {tracking_uri!r}: only {free} bytes free in {str(folder)!r} "
            f"(want {min_free_bytes})")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".acgate-write-test-") as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise InfrastructureError(
            f"tracking store {tracking_uri!r}: cannot write in its folder {str(folder)!r}: "
            f"{describe_error(error)}") from error


def dataset_input(
    sha256: str, *, name: str, source: str, context: str = "training"
) -> DatasetInput:
    """An MLflow dataset input for a data file, carrying its SHA-256 for the promotion gate.

    Log it on a training run with ``MlflowClient.log_inputs(run_id, [dataset_input(...)])``; the
    gate accepts the run's model versions when the digest equals the scan's. The full digest
    is the input tag ``acgate.dataset_sha256`` (the dataset's own ``digest`` field is capped at
    36 characters by MLflow and holds the first 36 hex digits).

    Args:
        sha256: SHA-256 of the file's bytes (:func:`acgate.io.file_sha256`, ``sha256sum``).
        name: Dataset name shown by MLflow (e.g. the file name).
        source: Where the file lives (a path or URI).
        context: What the run used it for: ``training`` (what the gate reads), ``scan``, ...

    Raises:
        ValueError: ``sha256`` is not 64 hex characters, or ``name`` is empty.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    digest = _normalise_sha256(sha256, "sha256")
    if digest is None or not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset_input needs a SHA-256 and a name, got {sha256!r}, {name!r}")
    scheme = urllib.parse.urlparse(str(source)).scheme
    source_type = scheme if len(scheme) > 1 else "local"  # a Windows drive letter is local
    dataset = Dataset(
        name=name[:500], digest=digest[:36], source_type=source_type[:36],
        source=json.dumps({"uri": str(source)}), profile=json.dumps({"sha256": digest}),
    )
    return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context),
                                       InputTag(DATASET_SHA256_TAG, digest)])


def _normalise_sha256(value: Any, name: str) -> str | None:
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    if not is_sha256(text):
        raise ValueError(f"{name} must be a SHA-256 digest (64 hex characters), got {value!r}")
    return text


def log_scan(
    result: DetectionResult,
    *,
    tracking_uri: str,
    experiment: str = "acgate",
    artifacts_dir: str | Path | None = None,
    dataset_uri: str | None = None,
    dataset_fingerprint: str | None = None,
    params: Mapping[str, Any] | None = None,
    gx_results: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    artifact_location: str | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    dataset_sha256: str | None = None,
    bounds: MlflowBounds | None = None,
    metrics: Mapping[str, float] | None = None,
    started_at: float | None = None,
    rescan_of: str | None = None,
) -> str:
    """Log one scan as an MLflow run and return its run id.

    Everything is validated before the run is created. Once created, the run gets params,
    metrics and tags, the dataset input, then artifacts, then ``acgate.status=complete`` and
    status ``FINISHED``; when anything raises midway the run is ended ``FAILED``
    (``acgate.status=failed``, best effort) and the error propagates, so the promotion gate
    refuses it.

    Args:
        result: The detection result.
        tracking_uri: Tracking URI, e.g. from :func:`default_tracking_uri` or
            ``http://host:5000``. The parent folder of a ``sqlite:///`` database is created.
        experiment: Experiment name; created when missing.
        artifacts_dir: Folder whose report files (:data:`ARTIFACT_PATTERNS`: ``samples.parquet``,
            ``classes.parquet``, ``flagged.parquet``, ``report.json``, ``report.html``,
            ``plots/*.png``) are logged as artifacts.
        dataset_uri: Where the scanned dataset lives (logged as a param).
        dataset_fingerprint: Content hash of the dataset; defaults to
            ``result.info.extra["dataset_fingerprint"]`` when present.
        params: Detector settings; merged with ``result.info.params`` (a name given in both
            must have the same value).
        gx_results: Great Expectations results by stage (JSON-able values, or objects with a
            ``to_dict()`` such as :class:`acgate.gx.suites.ValidationReport`); logged as
            ``gx/results.json`` and summarised in the tag ``acgate.gx_success``.
        run_name: Run name; MLflow picks one when ``None``.
        artifact_location: Artifact root when the experiment is created; defaults to
            :func:`default_artifact_location` (``<db folder>/mlartifacts`` for SQLite).
        connect_timeout_s: Seconds to wait for an HTTP tracking server before giving up.
        dataset_sha256: SHA-256 (hex) of the scanned file's bytes
            (:func:`acgate.io.file_sha256`); logged as the param ``dataset_sha256``, the tag
            ``acgate.dataset_sha256`` and a dataset input. The promotion gate needs it: it
            promotes only a model version whose training data has this digest. ``None``: not
            logged (the gate refuses the run).
        bounds: Timeouts and retries of each MLflow request; ``None``:
            :data:`acgate.mlflow.bounds.DEFAULT_BOUNDS` (a stalled server fails in ~30 s).
        metrics: More run metrics, logged with the result's (same timestamp, step 0): the
            proxy's (:func:`acgate.io.results.proxy_metrics`: ``proxy_train_accuracy``,
            ``proxy_attack_success``).
        started_at: When the scan began (seconds since the epoch): the run's start time, so
            its duration covers the scan; ``None``: when the run is created.
        rescan_of: This scan re-scans the repaired data of that scan run: the run is created
            as its child (tag ``mlflow.parentRunId``, nested under it in the MLflow UI) and
            tagged ``acgate.rescan_of``; ``None`` or ``""``: a top-level run.

    Returns:
        The run id.

    Raises:
        ValueError: On an invalid param name, conflicting param values, a ``dataset_sha256``
            that is not 64 hex characters, a missing ``artifacts_dir``, a deleted experiment,
            or a metric in ``metrics`` that is not a finite number or that the result already
            names.
        acgate.errors.InfrastructureError: The store is unreachable (also a
            :class:`ConnectionError` then), stalls, fails, is locked or full, or an artifact
            cannot be written; one line naming the store. A run created before the failure
            is ended ``FAILED`` when the store still answers.
    """
    record = _scan_record(
        result, artifacts_dir=artifacts_dir, dataset_uri=dataset_uri,
        dataset_fingerprint=dataset_fingerprint, params=params, gx_results=gx_results,
        dataset_sha256=dataset_sha256, extra_metrics=metrics,
    )
    with bounded(bounds):
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        client = make_client(tracking_uri)  # creates a SQLite store's folder and schema
        run_id = _create_scan_run(
            client, tracking_uri, experiment=experiment, run_name=run_name,
            artifact_location=artifact_location or default_artifact_location(tracking_uri),
            started_at=started_at, rescan_of=rescan_of or None,
        )
        _write_scan_run(client, tracking_uri, run_id, record)
    logger.info(
        "logged scan run %s (verdict %s) to %s", run_id, result.verdict, tracking_uri
    )
    return run_id


@dataclass(frozen=True)
class _ScanRecord:
    """Everything a scan run will hold, built and validated before the run is created.

    Attributes:
        params: Run params, name -> text.
        metrics: Run metrics (:func:`acgate.io.results.result_metrics`).
        tags: Run tags, ``acgate.classes_sha256`` and ``acgate.dataset_sha256`` included
            (``acgate.kind`` and ``acgate.status`` are set when the run is created and ended).
        timestamp_ms: The one timestamp every metric is logged with (also in ``classes_json``).
        classes_json: The exact bytes of ``acgate/classes.json``.
        result_json: The text of ``acgate/result.json``.
        gx_json: The text of ``gx/results.json``; ``None`` without GX results.
        inputs: The scanned file as a dataset input; empty without a dataset digest.
        artifacts: Report files to log: ``(path, artifact folder or None)``.
        tables: ``(artifact file, columns)`` logged with ``log_table``, which the MLflow UI
            previews (the Parquet files it cannot): :data:`CLASSES_TABLE`, :data:`FLAGGED_TABLE`.
    """

    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    timestamp_ms: int
    classes_json: bytes
    result_json: str
    gx_json: str | None
    inputs: tuple[DatasetInput, ...]
    artifacts: tuple[tuple[Path, str | None], ...]
    tables: tuple[tuple[str, dict[str, list[Any]]], ...] = ()


def _scan_record(
    result: DetectionResult,
    *,
    artifacts_dir: str | Path | None,
    dataset_uri: str | None,
    dataset_fingerprint: str | None,
    params: Mapping[str, Any] | None,
    gx_results: Mapping[str, Any] | None,
    dataset_sha256: str | None,
    extra_metrics: Mapping[str, float] | None = None,
) -> _ScanRecord:
    """Validate the arguments of :func:`log_scan` and build what its run will hold.

    Raises:
        ValueError: As :func:`log_scan` says (nothing has been written yet).
    """
    digest = _normalise_sha256(dataset_sha256, "dataset_sha256")
    artifacts = _artifact_files(artifacts_dir) if artifacts_dir is not None else []
    run_params = _scan_params(result, params, dataset_uri, dataset_fingerprint, digest)
    metrics = result_metrics(result)
    for name, value in (extra_metrics or {}).items():
        if name in metrics:
            raise ValueError(f"metric {name!r} is the scan result's own; give another name")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
        metrics[name] = float(value)
    tags = _result_tags(result)
    gx_json = _gx_json(gx_results) if gx_results is not None else None
    if gx_json is not None:
        tags.update(_gx_tags(json.loads(gx_json)))
    for name, value in result.info.versions.items():
        tags[f"acgate.versions.{name}"] = str(value)
    result_json = json.dumps(
        _json_safe(result.to_dict()), indent=2, sort_keys=True, default=str
    )
    timestamp = int(time.time() * 1000)
    document = classes_document(result, dataset_sha256=digest, metrics_timestamp_ms=timestamp)
    classes_json = document_bytes(document)
    tags[CLASSES_SHA256_TAG] = sha256_bytes(classes_json)
    inputs = []
    if digest is not None:
        tags[DATASET_SHA256_TAG] = digest
        inputs.append(_scanned_file_input(digest, dataset_uri))
    return _ScanRecord(
        params=run_params, metrics=metrics, tags=tags, timestamp_ms=timestamp,
        classes_json=classes_json, result_json=result_json, gx_json=gx_json,
        inputs=tuple(inputs), artifacts=tuple(artifacts), tables=_scan_tables(result, document),
    )


#: The per-class table as the MLflow UI previews it (``log_table``).
CLASSES_TABLE = "tables/classes.json"
#: The flagged rows as the MLflow UI previews them (``log_table``).
FLAGGED_TABLE = "tables/flagged.json"


#: The per-class table's columns, by the classes document's field they show.
_CLASSES_TABLE_COLUMNS = (("class", "label"), ("verdict", "verdict"), ("rows", "n_samples"),
                          ("flagged", "n_flagged"), ("suspected_source", "suspected_source"),
                          ("reason", "reason"))


def _scan_tables(result: DetectionResult, document: Mapping[str, Any]
                 ) -> tuple[tuple[str, dict[str, list[Any]]], ...]:
    """The per-class and flagged tables of a scan, JSON-safe columns for ``log_table``.

    The per-class table shows entries of ``document`` (:func:`classes_document`, the table the
    gate checks), so both say the same.
    """
    classes = {column: [entry[field] for entry in document["classes"]]
               for column, field in _CLASSES_TABLE_COLUMNS}
    rows = np.flatnonzero(np.asarray(result.is_poison, dtype=bool))
    sources = np.asarray(result.suspected_source)[rows]
    flagged = {
        "sample_id": [int(v) for v in np.asarray(result.sample_ids)[rows]],
        "label": [int(v) for v in np.asarray(result.labels)[rows]],
        "suspected_source": [None if v < 0 else int(v) for v in sources],
        "score": [round(float(v), 6) for v in np.asarray(result.poison_score)[rows]],
    }
    return (CLASSES_TABLE, classes), (FLAGGED_TABLE, flagged)


def _scan_params(
    result: DetectionResult,
    params: Mapping[str, Any] | None,
    dataset_uri: str | None,
    dataset_fingerprint: str | None,
    digest: str | None,
) -> dict[str, str]:
    """The run params: detector settings, dataset URI, fingerprint and SHA-256, versions.

    Raises:
        ValueError: A param named twice with different values, or a ``dataset_sha256`` param
            that is not ``digest``.
    """
    import acgate

    fingerprint = dataset_fingerprint
    if fingerprint is None and result.info.extra.get("dataset_fingerprint") is not None:
        fingerprint = str(result.info.extra["dataset_fingerprint"])
    run_params = _run_params(result, params, dataset_uri, fingerprint, acgate.__version__)
    if digest is not None:
        if run_params.get(DATASET_SHA256_PARAM, digest) != digest:
            raise ValueError(f"param {DATASET_SHA256_PARAM!r} is "
                             f"{run_params[DATASET_SHA256_PARAM]!r} in params but "
                             f"dataset_sha256 is {digest!r}")
        run_params[DATASET_SHA256_PARAM] = digest
    return run_params


def _scanned_file_input(digest: str, dataset_uri: str | None) -> DatasetInput:
    """The scanned file as a dataset input of context ``scan``, named after its file name."""
    source = dataset_uri or "unknown"
    name = Path(urllib.parse.urlparse(source).path).name or source
    return dataset_input(digest, name=name, source=source, context="scan")


def _create_scan_run(
    client: MlflowClient,
    tracking_uri: str,
    *,
    experiment: str,
    run_name: str | None,
    artifact_location: str | None,
    started_at: float | None = None,
    rescan_of: str | None = None,
) -> str:
    """Create the scan run (tags ``acgate.kind=scan``, ``acgate.status=running``); its id.

    With ``rescan_of``, the run is also the child of that scan run (``mlflow.parentRunId``)
    and tagged :data:`RESCAN_OF_TAG`.

    Raises:
        ValueError: The experiment is deleted.
        acgate.errors.InfrastructureError: The store failed.
    """
    try:
        experiment_id = _experiment_id(client, experiment, artifact_location)
        tags = {STATUS_TAG: "running", KIND_TAG: "scan"}
        if rescan_of:
            tags.update({RESCAN_OF_TAG: rescan_of, "mlflow.parentRunId": rescan_of})
        run = client.create_run(
            experiment_id,
            run_name=run_name,
            tags=tags,
            start_time=None if started_at is None else int(started_at * 1000),
        )
    except Exception as error:
        if is_store_error(error):
            raise infrastructure_error(tracking_uri, "creating the scan run",
                                       error) from error
        raise
    return run.info.run_id


def _write_scan_run(
    client: MlflowClient, tracking_uri: str, run_id: str, record: _ScanRecord
) -> None:
    """Log ``record`` into the run and end it ``FINISHED``; on any error end it ``FAILED``.

    Raises:
        acgate.errors.InfrastructureError: The store failed; the message names the step.
        BaseException: Anything else that was raised, after the run was ended ``FAILED``.
    """
    step = "logging params"
    try:
        for step, write in _scan_writes(client, run_id, record):
            write()
    except BaseException as error:
        _end_failed(client, run_id, error)
        if isinstance(error, Exception) and is_store_error(error):
            raise infrastructure_error(
                tracking_uri, f"{step} of scan run {run_id}", error) from error
        raise


def _scan_writes(
    client: MlflowClient, run_id: str, record: _ScanRecord
) -> list[tuple[str, Callable[[], None]]]:
    """The writes of a scan run in order, each with the words naming it in an error.

    Params, metrics (one timestamp, step 0), tags, the dataset input, the artifacts
    (``acgate/classes.json`` first), then ``acgate.status=complete`` and status ``FINISHED``.
    """
    from mlflow.entities import Metric, Param, RunTag

    def log_params() -> None:
        items = [Param(k, v) for k, v in record.params.items()]
        _log_in_batches(client, run_id, "params", items, _MAX_PARAMS_PER_BATCH)

    def log_metrics() -> None:
        items = [Metric(k, v, record.timestamp_ms, 0) for k, v in record.metrics.items()]
        _log_in_batches(client, run_id, "metrics", items, _MAX_METRICS_PER_BATCH)

    def log_tags() -> None:
        items = [RunTag(k, v) for k, v in record.tags.items()]
        _log_in_batches(client, run_id, "tags", items, _MAX_PARAMS_PER_BATCH)

    def log_inputs() -> None:
        client.log_inputs(run_id, datasets=list(record.inputs))

    writes = [("logging params", log_params), ("logging metrics", log_metrics),
              ("logging tags", log_tags)]
    if record.inputs:
        writes.append(("logging the dataset input", log_inputs))
    writes.append(("logging artifacts", lambda: _log_scan_artifacts(client, run_id, record)))
    writes.append(("finishing the run", lambda: _finish_run(client, run_id)))
    return writes


def _log_in_batches(
    client: MlflowClient, run_id: str, kind: str, items: Sequence[Any], size: int
) -> None:
    """``client.log_batch`` of ``items`` as ``kind`` (params, metrics, tags), ``size`` a call."""
    for chunk in _chunks(items, size):
        client.log_batch(run_id, **{kind: chunk})


def _log_scan_artifacts(client: MlflowClient, run_id: str, record: _ScanRecord) -> None:
    """``acgate/classes.json`` (byte for byte), ``acgate/result.json``, GX results, reports."""
    _log_bytes(client, run_id, record.classes_json, CLASSES_ARTIFACT)
    client.log_text(run_id, record.result_json, "acgate/result.json")
    if record.gx_json is not None:
        client.log_text(run_id, record.gx_json, "gx/results.json")
    for path, artifact_path in record.artifacts:
        if Path(path).name == "report.html":
            from acgate.report.html import stamp_run_id

            stamp_run_id(path, run_id)  # the report names the run it is logged in
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    for artifact_file, columns in record.tables:
        client.log_table(run_id, data=columns, artifact_file=artifact_file)


def _finish_run(client: MlflowClient, run_id: str) -> None:
    """Tag the run ``acgate.status=complete`` (last tag) and end it ``FINISHED``."""
    client.set_tag(run_id, STATUS_TAG, STATUS_COMPLETE)
    client.set_terminated(run_id, "FINISHED")


def _log_bytes(client: MlflowClient, run_id: str, data: bytes, artifact_path: str) -> None:
    """Log ``data`` as the artifact ``artifact_path`` byte for byte (no newline translation)."""
    folder, _, name = artifact_path.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="acgate-artifact-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        client.log_artifact(run_id, str(path), artifact_path=folder or None)


def _end_failed(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Mark a run ``FAILED`` after ``error``; best effort, with short bounds."""
    logger.error("logging run %s failed (%s); ending it FAILED", run_id,
                 describe_error(error) if isinstance(error, Exception) else type(error).__name__)
    try:
        with bounded(_CLEANUP_BOUNDS):
            client.set_tag(run_id, STATUS_TAG, "failed")
            client.set_terminated(run_id, "FAILED")
    except Exception as cleanup_error:  # the original error matters more
        logger.warning("could not mark run %s FAILED: %s", run_id,
                       describe_error(cleanup_error))


def repair_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Numbers of a repair report (``repair.json``) as MLflow metrics."""
    metrics: dict[str, float] = {}
    for key in ("n_relabelled", "n_removed", "epochs", "seconds"):
        value = report.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = float(value)
    backdoor = report.get("backdoor") or {}
    for when in ("before", "after"):
        for key in ("clean_accuracy", "attack_success_rate"):
            value = (backdoor.get(when) or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{when}/{key}"] = float(value)
    return metrics


def log_repair(
    report: Mapping[str, Any],
    *,
    tracking_uri: str,
    scan_run_id: str | None = None,
    experiment: str = "acgate",
    artifacts_dir: str | Path | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    bounds: MlflowBounds | None = None,
) -> str:
    """Log a repair as an MLflow run, a child of the scan's run when ``scan_run_id`` is given.

    Metrics: ``n_relabelled``, ``n_removed``, ``epochs``, ``seconds`` and, when measured,
    ``before/clean_accuracy``, ``before/attack_success_rate``, ``after/...``. Params: the
    strategy. Artifacts: ``repair.json`` (and ``repair.html`` when present in ``artifacts_dir``).

    Args:
        report: The repair report (``repair.json``).
        tracking_uri: Tracking URI.
        scan_run_id: The scan run the repair follows (becomes the parent run).
        experiment: Experiment when no ``scan_run_id`` is given.
        artifacts_dir: Folder holding ``repair.html``.
        connect_timeout_s: Seconds to wait for an HTTP tracking server before giving up.
        bounds: Timeouts and retries of each MLflow request (see :func:`log_scan`).

    Returns:
        The repair run's id.

    Raises:
        ValueError: ``scan_run_id`` names no run in this store.
        acgate.errors.InfrastructureError: The store is unreachable (also a
            :class:`ConnectionError` then), stalls, fails, is locked or full.
    """
    from acgate.mlflow.bounds import is_not_found

    with bounded(bounds):
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        client = make_client(tracking_uri)  # creates a SQLite store's folder and schema
        tags = {STATUS_TAG: "running", KIND_TAG: "repair"}
        try:
            if scan_run_id is not None:
                try:
                    parent = client.get_run(scan_run_id)
                except Exception as error:
                    if is_not_found(error):
                        raise ValueError(f"scan run {scan_run_id!r} is not in {tracking_uri}: "
                                         f"{describe_error(error)}") from error
                    raise
                experiment_id = parent.info.experiment_id
                tags["mlflow.parentRunId"] = scan_run_id
            else:
                experiment_id = _experiment_id(client, experiment,
                                               default_artifact_location(tracking_uri))
            run = client.create_run(experiment_id,
                                    run_name=f"repair-{report.get('strategy', '')}", tags=tags)
        except Exception as error:
            if is_store_error(error):
                raise infrastructure_error(tracking_uri, "creating the repair run",
                                           error) from error
            raise
        run_id = run.info.run_id
        try:
            client.log_param(run_id, "strategy", str(report.get("strategy")))
            for name, value in repair_metrics(report).items():
                client.log_metric(run_id, name, value)
            client.log_text(run_id,
                            json.dumps(_json_safe(dict(report)), indent=2, default=str),
                            "repair/repair.json")
            if artifacts_dir is not None:
                page = Path(artifacts_dir) / "repair.html"
                if page.is_file():
                    client.log_artifact(run_id, str(page), artifact_path="repair")
            client.set_tag(run_id, STATUS_TAG, STATUS_COMPLETE)
            client.set_terminated(run_id, "FINISHED")
        except BaseException as error:
            _end_failed(client, run_id, error)
            if isinstance(error, Exception) and is_store_error(error):
                raise infrastructure_error(tracking_uri, f"logging repair run {run_id}",
                                           error) from error
            raise
    return run_id


#: The experiment tag MLflow 3's UI reads to pick its view, and acgate's value: the classic
#: runs / metrics / artifacts view (an experiment without it may open in the GenAI view).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if experiment.lifecycle_stage != "active":
        raise ValueError(
            f"experiment {name!r} is {experiment.lifecycle_stage} in this tracking store; "
            "restore it or log to another experiment"
        )
    return experiment.experiment_id


def _artifact_files(artifacts_dir: str | Path) -> list[tuple[Path, str | None]]:
    folder = Path(artifacts_dir)
    if not folder.is_dir():
        raise ValueError(f"artifacts_dir {str(folder)!r} is not a folder")
    files: list[tuple[Path, str | None]] = []
    for pattern in ARTIFACT_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                parent = path.parent.relative_to(folder).as_posix()
                files.append((path, None if parent == "." else parent))
    if not files:
        warnings.warn(
            f"artifacts_dir {str(folder)!r} holds no report files matching {ARTIFACT_PATTERNS}",
            stacklevel=4,  # log_scan's caller: log_scan, _scan_record, here
        )
    return files


def _param_value(name: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > _MAX_PARAM_VALUE:
        warnings.warn(
            f"param {name!r} is {len(text)} characters long; MLflow keeps {_MAX_PARAM_VALUE}, "
            "so it is truncated",
            stacklevel=7,  # log_scan's caller: log_scan, _scan_record, _scan_params, _run_params
        )
        text = text[: _MAX_PARAM_VALUE - 3] + "..."
    return text


def _run_params(
    result: DetectionResult,
    params: Mapping[str, Any] | None,
    dataset_uri: str | None,
    dataset_fingerprint: str | None,
    acgate_version: str,
) -> dict[str, str]:
    merged: dict[str, str] = {}
    sources: dict[str, str] = {}

    def add(name: str, value: Any, source: str) -> None:
        if not isinstance(name, str) or not _PARAM_NAME.match(name):
            raise ValueError(
                f"param name {name!r} (from {source}) is not a valid MLflow name: use letters, "
                "digits, '_', '-', '.', '/' and spaces"
            )
        text = _param_value(name, value)
        if name in merged and merged[name] != text:
            raise ValueError(
                f"param {name!r} is {merged[name]!r} in {sources[name]} but {text!r} in {source}"
            )
        merged[name] = text
        sources[name] = source

    for name, value in result.info.params.items():
        add(name, value, "result.info.params")
    for name, value in (params or {}).items():
        add(name, value, "params")
    if dataset_uri is not None:
        add("dataset_uri", str(dataset_uri), "dataset_uri")
    if dataset_fingerprint is not None:
        add("dataset_fingerprint", str(dataset_fingerprint), "dataset_fingerprint")
    add("acgate_version", acgate_version, "acgate")
    if "seed" not in merged:
        for key in ("random_state", "seed"):
            for mapping in (params or {}, result.info.params):
                if key in mapping and mapping[key] is not None:
                    add("seed", mapping[key], f"{key} setting")
                    break
            if "seed" in merged:
                break
    return merged


def _result_tags(result: DetectionResult) -> dict[str, str]:
    sources = {
        str(report.label): report.suspected_source
        for report in result.classes
        if report.is_poisoned
    }
    tags = {
        CLASSES_TAG: json.dumps([int(report.label) for report in result.classes]),
        VERDICT_TAG: result.verdict,
        NEAR_MISS_CLASSES_TAG: json.dumps([int(report.label) for report in result.classes
                                           if near_misses(report)]),
        POISONED_CLASSES_TAG: json.dumps([int(c) for c in result.poisoned_classes]),
        SUSPECTED_SOURCES_TAG: json.dumps(sources, sort_keys=True),
    }
    for name, value in tags.items():
        if len(value) > _MAX_TAG_VALUE:
            raise ValueError(
                f"tag {name!r} would be {len(value)} characters; MLflow keeps {_MAX_TAG_VALUE}"
            )
    return tags


def _gx_json(gx_results: Mapping[str, Any]) -> str:
    plain = {}
    for stage, value in gx_results.items():
        to_dict = getattr(value, "to_dict", None)
        plain[str(stage)] = to_dict() if callable(to_dict) else value
    try:
        return json.dumps(_json_safe(plain), indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"gx_results is not JSON-serialisable: {error}") from error


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by their names: ``"nan"``, ``"inf"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _gx_tags(gx_plain: Mapping[str, Any]) -> dict[str, str]:
    flags = [
        value.get("success")
        for value in gx_plain.values()
        if isinstance(value, Mapping) and isinstance(value.get("success"), bool)
    ]
    if not flags:
        return {}
    return {"acgate.gx_success": "true" if all(flags) else "false"}


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
