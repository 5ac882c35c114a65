"""Register a trained model as a version the promotion gate can check; tag it with a verdict.

The gate promotes a model version only when it knows the version's training data (its SHA-256)
and a clean scan of those bytes exists. ``mlflow.register_model`` registers a version but
records nothing about its data; :func:`register_model_version` registers the version from the
training run's logged model folder and tags it with the digest, in one call.

:func:`tag_verdict` writes a scan's verdict onto the version trained on the scanned data
(tags ``acgate.scan.*``), whatever the verdict: the pipeline does it on both branches, so a
version whose data was found poisoned says so in the registry, beside the alias it did not get.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from acgate.mlflow.bounds import (
    MlflowBounds,
    bounded,
    infrastructure_error,
    is_not_found,
    is_store_error,
)
from acgate.mlflow.tracking import (
    DATASET_SHA256_PARAM,
    DEFAULT_CONNECT_TIMEOUT_S,
    KIND_TAG,
    POISONED_CLASSES_TAG,
    STATUS_COMPLETE,
    STATUS_TAG,
    TRAINING_DATA_SHA256_TAG,
    VERDICT_TAG,
    _normalise_sha256,
    check_server_reachable,
    make_client,
)

logger = logging.getLogger(__name__)

__all__ = ["SCAN_TAGS", "register_model_version", "tag_verdict"]

#: Model-version tag: the verdict of the scan of the version's training data (``clean``,
#: ``poisoned`` or ``incomplete``). Not ``acgate.verdict``: the gate writes that one
#: (``pass``/``fail``).
SCAN_VERDICT_TAG = "acgate.scan.verdict"
#: Model-version tag: the MLflow scan run that verdict comes from.
SCAN_RUN_TAG = "acgate.scan.run_id"
#: Model-version tag: the SHA-256 of the bytes that scan read.
SCAN_DATASET_TAG = "acgate.scan.dataset_sha256"
#: Model-version tag: the classes the scan found poisoned (JSON list, ``[]`` when clean).
SCAN_POISONED_CLASSES_TAG = "acgate.scan.poisoned_classes"
#: Every model-version tag :func:`tag_verdict` writes.
SCAN_TAGS = (SCAN_VERDICT_TAG, SCAN_RUN_TAG, SCAN_DATASET_TAG, SCAN_POISONED_CLASSES_TAG)


def register_model_version(
    tracking_uri: str,
    *,
    model_name: str,
    run_id: str,
    training_data_sha256: str,
    artifact_path: str = "model",
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    bounds: MlflowBounds | None = None,
) -> str:
    """Register the model a run logged as a new version tagged with its training data's digest.

    Creates the registered model when it does not exist, then a version whose source is the
    run's ``artifact_path`` folder, tagged ``acgate.training_data_sha256`` (what
    :func:`acgate.mlflow.promote` compares with the scan's digest).

    Args:
        tracking_uri: The tracking URI of the registry and the run.
        model_name: Registered model name.
        run_id: The training run that logged the model.
        training_data_sha256: SHA-256 (hex) of the training file's bytes
            (:func:`acgate.io.file_sha256`, the same as ``sha256sum``).
        artifact_path: The run's artifact folder that holds the model.
        connect_timeout_s: Seconds to wait for an HTTP tracking server's ``/health``.
        bounds: Timeouts and retries of each MLflow request (default: bounded, ~30 s).

    Returns:
        The new version number (as text).

    Raises:
        ValueError: An empty name or path, a digest that is not 64 hex characters, an unknown
            run, or a run with nothing logged under ``artifact_path``.
        acgate.errors.InfrastructureError: The store is unreachable or fails.
    """
    if training_data_sha256 is None:
        raise ValueError("training_data_sha256 is required: the gate promotes only a version "
                         "whose training data it knows")
    digest = _normalise_sha256(training_data_sha256, "training_data_sha256")
    for name, value in (("model_name", model_name), ("run_id", run_id),
                        ("artifact_path", artifact_path)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    artifact_path = artifact_path.strip("/")
    with bounded(bounds):
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        client = make_client(tracking_uri)
        doing = f"reading run {run_id!r}"
        try:
            run = client.get_run(run_id)
            doing = f"listing the run's artifacts under {artifact_path!r}"
            logged = client.list_artifacts(run_id, artifact_path)
            if not logged:
                raise ValueError(
                    f"run {run_id!r} logged nothing under {artifact_path!r}; pass the artifact "
                    f"folder that holds the model (--artifact-path)")
            doing = f"registering a version of {model_name!r}"
            _ensure_registered_model(client, model_name)
            version = client.create_model_version(
                model_name, source=f"{run.info.artifact_uri}/{artifact_path}", run_id=run_id)
            doing = f"tagging version {version.version} of {model_name!r}"
            client.set_model_version_tag(model_name, version.version, TRAINING_DATA_SHA256_TAG,
                                         digest)
        except ValueError:
            raise
        except Exception as error:
            _raise_translated(error, doing, tracking_uri)
    logger.info("registered %s version %s from run %s (training data %s)", model_name,
                version.version, run_id, digest)
    return str(version.version)


def _ensure_registered_model(client: object, name: str) -> None:
    """Create the registered model ``name`` unless it exists."""
    try:
        client.get_registered_model(name)  # type: ignore[attr-defined]
    except Exception as error:
        if not is_not_found(error):
            raise
        client.create_registered_model(name)  # type: ignore[attr-defined]


def _raise_translated(error: Exception, doing: str, tracking_uri: str) -> NoReturn:
    """Raise what a failed registry call means: bad input (not found) or an outage."""
    if is_not_found(error):
        raise ValueError(f"{doing}: {error}") from error
    if is_store_error(error):
        raise infrastructure_error(tracking_uri, doing, error) from error
    raise error


def tag_verdict(
    tracking_uri: str,
    *,
    model_name: str,
    model_version: int | str,
    scan_run_id: str,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    bounds: MlflowBounds | None = None,
) -> dict[str, str]:
    """Tag a model version with the verdict of a scan of its training data.

    The tags are read from the scan run as it was logged (:func:`acgate.mlflow.log_scan`), not
    taken from the caller: ``acgate.scan.verdict`` (``clean``, ``poisoned`` or ``incomplete``),
    ``acgate.scan.run_id``, ``acgate.scan.dataset_sha256`` and ``acgate.scan.poisoned_classes``
    (:data:`SCAN_TAGS`). A later scan's tags replace an earlier one's. Nothing else changes:
    no alias is set or removed (promotion is :func:`acgate.mlflow.promote`'s alone). When the
    version records a training-data digest other than the scanned one, a warning is logged
    (the tags still say what was scanned; the gate refuses such a pair).

    Args:
        tracking_uri: Tracking and registry URI of the run and the model.
        model_name: Registered model name.
        model_version: Its version (e.g. ``"3"``).
        scan_run_id: The scan run (from the pipeline's analyze step or ``acgate scan``).
        connect_timeout_s: Seconds to wait for an HTTP tracking server's ``/health``.
        bounds: Timeouts and retries of each MLflow request (default: bounded, ~30 s).

    Returns:
        The tags written, key -> value.

    Raises:
        ValueError: An empty name or run id, an unknown model version or run, a run that is not
            a finished acgate scan run, or one without a verdict or dataset digest.
        acgate.errors.InfrastructureError: The store is unreachable or fails.
    """
    for name, value in (("model_name", model_name), ("scan_run_id", scan_run_id),
                        ("model_version", str(model_version))):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    version = str(model_version).strip()
    with bounded(bounds):
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        client = make_client(tracking_uri)
        doing = f"reading model {model_name!r} version {version}"
        try:
            model = client.get_model_version(model_name, version)
            doing = f"reading scan run {scan_run_id!r}"
            run = client.get_run(scan_run_id)
            tags = _verdict_tags(run, scan_run_id)
            doing = f"tagging {model_name!r} version {version}"
            for key, value in tags.items():
                client.set_model_version_tag(model_name, version, key, value)
        except ValueError:
            raise
        except Exception as error:
            _raise_translated(error, doing, tracking_uri)
    trained_on = (model.tags or {}).get(TRAINING_DATA_SHA256_TAG)
    if trained_on is not None and trained_on != tags[SCAN_DATASET_TAG]:
        logger.warning("%s version %s records training data %s, but scan run %s read %s: the "
                       "verdict tags describe the scanned data", model_name, version, trained_on,
                       scan_run_id, tags[SCAN_DATASET_TAG])
    logger.info("tagged %s version %s: %s", model_name, version,
                ", ".join(f"{key}={value}" for key, value in tags.items()))
    return tags


def _verdict_tags(run: object, run_id: str) -> dict[str, str]:
    """The :data:`SCAN_TAGS` of a finished acgate scan run (``ValueError`` for any other run)."""
    data = run.data  # type: ignore[attr-defined]
    status = run.info.status  # type: ignore[attr-defined]
    if data.tags.get(KIND_TAG) != "scan":
        raise ValueError(f"run {run_id!r} is not an acgate scan run (tag {KIND_TAG}="
                         f"{data.tags.get(KIND_TAG)!r})")
    if status != "FINISHED" or data.tags.get(STATUS_TAG) != STATUS_COMPLETE:
        raise ValueError(f"scan run {run_id!r} did not finish (status {status}, "
                         f"{STATUS_TAG}={data.tags.get(STATUS_TAG)!r})")
    verdict = data.tags.get(VERDICT_TAG)
    if verdict not in ("clean", "poisoned", "incomplete"):
        raise ValueError(f"scan run {run_id!r} has {VERDICT_TAG}={verdict!r}, not 'clean', "
                         "'poisoned' or 'incomplete'")
    digest = data.params.get(DATASET_SHA256_PARAM)
    if not digest:
        raise ValueError(f"scan run {run_id!r} has no {DATASET_SHA256_PARAM} param")
    return {SCAN_VERDICT_TAG: verdict, SCAN_RUN_TAG: run_id, SCAN_DATASET_TAG: digest,
            SCAN_POISONED_CLASSES_TAG: data.tags.get(POISONED_CLASSES_TAG, "[]")}
