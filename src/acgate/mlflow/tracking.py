"""Log a scan to MLflow: params, per-class metrics, verdict tags and artifacts.

This module and :mod:`acgate.mlflow.gate` are the only places that import :mod:`mlflow`, and
they import it inside functions. The tracking URI is always passed explicitly (an
``MlflowClient(tracking_uri=...)``); nothing here reads or writes ``os.environ``.

What a scan run holds (the promotion gate reads exactly this):

* params: the detector settings (``result.info.params`` plus the ``params`` given), ``dataset_uri``,
  ``dataset_fingerprint``, ``acgate_version``, ``seed``;
* metrics per class ``c``: ``silhouette/<c>``, ``size_ratio/<c>``, ``exre/<c>``,
  ``source_share/<c>`` and ``confusion/<c>`` (the exclusionary-reclassification source share and
  natural confusion of the judged candidate; each only when measured), ``flagged/<c>``
  (count), ``poisoned/<c>`` and ``skipped/<c>`` (1 or 0); totals
  ``n_samples``, ``n_flagged``, ``n_poisoned_classes``, ``n_skipped_classes``, ``n_classes``;
* tags: ``acgate.classes`` (JSON list), ``acgate.verdict`` (``clean`` | ``poisoned``),
  ``acgate.poisoned_classes`` (JSON list), ``acgate.suspected_sources`` (JSON object, poisoned
  class -> suspected source or ``null``) and, set last, ``acgate.status=complete``; a run that
  raised midway ends ``FAILED`` with ``acgate.status=failed``;
* artifacts: ``acgate/result.json`` (the result summary), ``gx/results.json`` (when GX results are
  given) and the report files of ``artifacts_dir``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient

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

#: Files of ``artifacts_dir`` logged as artifacts (relative glob patterns). Anything else in the
#: folder (an ``mlflow.db``, an ``mlartifacts/`` root) is left alone.
ARTIFACT_PATTERNS: tuple[str, ...] = ("*.parquet", "*.json", "*.html", "plots/*.png")

#: Seconds to wait for an HTTP tracking server's ``/health`` before calling it unreachable.
DEFAULT_CONNECT_TIMEOUT_S = 5.0

_MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
_MAX_TAG_VALUE = 8000  # MLflow's limit on a tag value
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_PARAM_NAME = re.compile(r"^[\w./\- ]+$")
_RESERVED_PARAMS = ("dataset_uri", "dataset_fingerprint", "acgate_version", "seed")


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
    status, counts as reachable. Non-HTTP URIs are not probed.

    Args:
        tracking_uri: The tracking URI.
        timeout_s: Seconds to wait for the server.

    Raises:
        ConnectionError: When the server cannot be reached, naming the URI and the error.
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
        raise ConnectionError(
            f"MLflow tracking server {tracking_uri!r} is unreachable ({health_url}: {reason})"
        ) from error


def make_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` bound to ``tracking_uri`` for tracking and the model registry."""
    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise ValueError(f"tracking_uri must be a non-empty string, got {tracking_uri!r}")
    try:
        from mlflow import MlflowClient
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "acgate.mlflow needs MLflow: pip install 'acgate[mlflow]'"
        ) from error
    db_path = sqlite_path(tracking_uri)
    if db_path is None:
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with _store_lock(db_path):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # Touch both schemas while locked: MLflow creates / migrates tables on first use.
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


@contextlib.contextmanager
def _store_lock(db_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<db>.lock`` (beside the database) while a store is opened.

    MLflow creates (or migrates) the schema when a client first opens a store; two processes
    doing that at once on a new file race ("table experiments already exists") and one dies.
    Serialising the opening makes concurrent scans safe; on an existing store the lock is held
    for milliseconds. Without ``fcntl`` (not POSIX) no lock is taken.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(db_path.with_name(f".{db_path.name}.lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


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
) -> str:
    """Log one scan as an MLflow run and return its run id.

    Everything is validated before the run is created. Once created, the run gets params,
    metrics and tags, then artifacts, then ``acgate.status=complete`` and status ``FINISHED``;
    when anything raises midway the run is ended ``FAILED`` (``acgate.status=failed``) and the
    error propagates, so the promotion gate refuses it.

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

    Returns:
        The run id.

    Raises:
        ValueError: On an invalid param name, conflicting param values, a missing
            ``artifacts_dir`` or a deleted experiment.
        ConnectionError: When an HTTP tracking server is unreachable.
        mlflow.exceptions.MlflowException: When MLflow refuses a call (the run ends ``FAILED``).
    """
    from mlflow.entities import Metric, Param, RunTag

    import acgate

    artifacts = _artifact_files(artifacts_dir) if artifacts_dir is not None else []
    fingerprint = dataset_fingerprint
    if fingerprint is None and result.info.extra.get("dataset_fingerprint") is not None:
        fingerprint = str(result.info.extra["dataset_fingerprint"])
    run_params = _run_params(result, params, dataset_uri, fingerprint, acgate.__version__)
    metrics = _run_metrics(result)
    tags = _result_tags(result)
    gx_json = _gx_json(gx_results) if gx_results is not None else None
    if gx_json is not None:
        tags.update(_gx_tags(json.loads(gx_json)))
    for name, value in result.info.versions.items():
        tags[f"acgate.versions.{name}"] = str(value)
    result_json = json.dumps(
        _json_safe(result.to_dict()), indent=2, sort_keys=True, default=str
    )

    check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
    client = make_client(tracking_uri)  # creates a SQLite store's folder and schema
    experiment_id = _experiment_id(
        client, experiment, artifact_location or default_artifact_location(tracking_uri)
    )
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={STATUS_TAG: "running", "acgate.kind": "scan"},
    )
    run_id = run.info.run_id
    try:
        timestamp = int(time.time() * 1000)
        param_items = [Param(k, v) for k, v in run_params.items()]
        for chunk in _chunks(param_items, _MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk)
        metric_items = [Metric(k, v, timestamp, 0) for k, v in metrics.items()]
        for chunk in _chunks(metric_items, _MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=chunk)
        tag_items = [RunTag(k, v) for k, v in tags.items()]
        for chunk in _chunks(tag_items, _MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, tags=chunk)
        client.log_text(run_id, result_json, "acgate/result.json")
        if gx_json is not None:
            client.log_text(run_id, gx_json, "gx/results.json")
        for path, artifact_path in artifacts:
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        client.set_tag(run_id, STATUS_TAG, STATUS_COMPLETE)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        logger.exception("logging scan run %s failed; ending it FAILED", run_id)
        try:
            client.set_tag(run_id, STATUS_TAG, "failed")
            client.set_terminated(run_id, "FAILED")
        except Exception:  # the original error matters more
            logger.exception("could not mark run %s FAILED", run_id)
        raise
    logger.info(
        "logged scan run %s (verdict %s) to %s", run_id, result.verdict, tracking_uri
    )
    return run_id


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
) -> str:
    """Log a repair as an MLflow run, a child of the scan's run when ``scan_run_id`` is given.

    Metrics: ``n_relabelled``, ``n_removed``, ``epochs``, ``seconds`` and, when measured,
    ``before/clean_accuracy``, ``before/attack_success_rate``, ``after/...``. Params: the
    strategy. Artifacts: ``repair.json`` (and ``repair.html`` when present in ``artifacts_dir``).

    Returns:
        The repair run's id.

    Raises:
        ValueError: ``scan_run_id`` names no run in this store.
        ConnectionError: When an HTTP tracking server is unreachable.
    """
    from mlflow.exceptions import MlflowException

    check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
    client = make_client(tracking_uri)  # creates a SQLite store's folder and schema
    tags = {STATUS_TAG: "running", "acgate.kind": "repair"}
    if scan_run_id is not None:
        try:
            parent = client.get_run(scan_run_id)
        except MlflowException as error:
            raise ValueError(f"scan run {scan_run_id!r} is not in {tracking_uri}: {error}"
                             ) from error
        experiment_id = parent.info.experiment_id
        tags["mlflow.parentRunId"] = scan_run_id
    else:
        experiment_id = _experiment_id(client, experiment,
                                       default_artifact_location(tracking_uri))
    run = client.create_run(experiment_id, run_name=f"repair-{report.get('strategy', '')}",
                            tags=tags)
    run_id = run.info.run_id
    try:
        client.log_param(run_id, "strategy", str(report.get("strategy")))
        for name, value in repair_metrics(report).items():
            client.log_metric(run_id, name, value)
        client.log_text(run_id, json.dumps(_json_safe(dict(report)), indent=2, default=str),
                        "repair/repair.json")
        if artifacts_dir is not None:
            page = Path(artifacts_dir) / "repair.html"
            if page.is_file():
                client.log_artifact(run_id, str(page), artifact_path="repair")
        client.set_tag(run_id, STATUS_TAG, STATUS_COMPLETE)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
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
            stacklevel=3,
        )
    return files


def _param_value(name: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > _MAX_PARAM_VALUE:
        warnings.warn(
            f"param {name!r} is {len(text)} characters long; MLflow keeps {_MAX_PARAM_VALUE}, "
            "so it is truncated",
            stacklevel=4,
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


def _run_metrics(result: DetectionResult) -> dict[str, float]:
    import numpy as np

    metrics: dict[str, float] = {}
    for report in result.classes:
        c = report.label
        for prefix, value in (
            ("silhouette", report.silhouette),
            ("size_ratio", report.size_ratio),
            ("exre", report.exre_score),
            ("source_share", report.scores.get("source_share")),
            ("confusion", report.scores.get("confusion")),
        ):
            if value is not None and np.isfinite(value):
                metrics[f"{prefix}/{c}"] = float(value)
        in_class = result.segments == c
        metrics[f"flagged/{c}"] = float(np.count_nonzero(result.is_poison & in_class))
        metrics[f"poisoned/{c}"] = 1.0 if report.verdict == "poisoned" else 0.0
        metrics[f"skipped/{c}"] = 1.0 if report.verdict == "skipped" else 0.0
    metrics["n_samples"] = float(result.n_samples)
    metrics["n_flagged"] = float(np.count_nonzero(result.is_poison))
    metrics["n_poisoned_classes"] = float(len(result.poisoned_classes))
    metrics["n_skipped_classes"] = float(len(result.skipped_classes))
    metrics["n_classes"] = float(len(result.classes))
    return metrics


def _result_tags(result: DetectionResult) -> dict[str, str]:
    sources = {
        str(report.label): report.suspected_source
        for report in result.classes
        if report.is_poisoned
    }
    tags = {
        CLASSES_TAG: json.dumps([int(report.label) for report in result.classes]),
        VERDICT_TAG: result.verdict,
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
