"""Register a trained model as a version the promotion gate can check.

The gate promotes a model version only when it knows the version's training data (its SHA-256)
and a clean scan of those bytes exists. ``mlflow.register_model`` registers a version but
records nothing about its data; :func:`register_model_version` registers the version from the
training run's logged model folder and tags it with the digest, in one call.
"""

from __future__ import annotations

import logging

from acgate.mlflow.bounds import (
    MlflowBounds,
    bounded,
    infrastructure_error,
    is_not_found,
    is_store_error,
)
from acgate.mlflow.tracking import (
    DEFAULT_CONNECT_TIMEOUT_S,
    TRAINING_DATA_SHA256_TAG,
    _normalise_sha256,
    check_server_reachable,
    make_client,
)

logger = logging.getLogger(__name__)

__all__ = ["register_model_version"]


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
            if is_not_found(error):
                raise ValueError(f"{doing}: {error}") from error
            if is_store_error(error):
                raise infrastructure_error(tracking_uri, doing, error) from error
            raise
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
