"""A clean scan's baseline folder in MLflow: logged under its scan run, fetched by ``runs:/``.

The pipeline's ``publish_baseline`` step logs the baseline folder of a clean full scan
(:func:`acgate.stages.publish_baseline_stage`) as the artifacts ``baseline/`` of that scan's run,
so a later incremental scan can name it ``runs:/<scan run id>/baseline`` (``acgate scan
--baseline``, the incremental pipeline's ``baseline_uri``) and find it wherever the tracking
server keeps artifacts. ``models:/<name>@<alias>`` names it through the registry: the scan run
the promotion gate checked before it gave that version the alias.
"""

from __future__ import annotations

import re
from pathlib import Path

from acgate.mlflow.bounds import (
    bounded,
    describe_error,
    infrastructure_error,
    is_not_found,
    is_store_error,
)
from acgate.mlflow.tracking import make_client

#: The artifact folder of a scan run that holds its baseline.
BASELINE_ARTIFACT = "baseline"

_RUNS_URI = re.compile(r"^runs:/([0-9a-zA-Z_-]+)/(.+)$")
#: ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (an alias: letters, digits, ``_``,
#: ``-``, as MLflow allows).
_MODELS_URI = re.compile(r"^models:/([^/@]+)(?:@([A-Za-z0-9_-]+)|/([0-9]+))$")


def log_baseline(run_id: str, folder: str | Path, *, tracking_uri: str) -> str:
    """Log every file of the baseline ``folder`` under ``baseline/`` of the scan run ``run_id``.

    Returns:
        The baseline's URI, ``runs:/<run_id>/baseline``.

    Raises:
        ValueError: No such run, or an empty folder.
        acgate.errors.InfrastructureError: The tracking store cannot be reached.
    """
    # scan.json last: a baseline folder without it is refused, so a partial upload is too.
    files = sorted((path for path in Path(folder).iterdir()
                    if path.is_file() and not path.name.startswith(".")),
                   key=lambda path: (path.name == "scan.json", path.name))
    if not files:
        raise ValueError(f"baseline folder {str(folder)!r} holds no files")
    client = make_client(tracking_uri)
    try:
        with bounded():
            client.get_run(run_id)  # a wrong id is refused before any upload
            for path in files:
                client.log_artifact(run_id, str(path), artifact_path=BASELINE_ARTIFACT)
    except Exception as error:
        _raise_for(error, tracking_uri, f"run {run_id!r}", "logging the baseline")
    return f"runs:/{run_id}/{BASELINE_ARTIFACT}"


def download_baseline(uri: str, destination: str | Path, *, tracking_uri: str | None) -> Path:
    """Download the baseline ``runs:/<run id>/<path>`` into the folder ``destination``.

    Returns:
        The local baseline folder (inside ``destination``).

    Raises:
        ValueError: Not a ``runs:/`` URI, no tracking URI, no such run or artifact folder.
        acgate.errors.InfrastructureError: The tracking store cannot be reached.
    """
    found = _RUNS_URI.match(uri or "")
    if not found:
        raise ValueError(f"baseline {uri!r} is not runs:/<run id>/<artifact folder>")
    if not tracking_uri:
        raise ValueError(f"baseline {uri!r} is an MLflow run's: give the tracking URI "
                         f"(--tracking-uri, mlflow_tracking_uri)")
    run_id, path = found.group(1), found.group(2).strip("/")
    client = make_client(tracking_uri)
    try:
        with bounded():
            client.get_run(run_id)
            if not client.list_artifacts(run_id, path):
                raise ValueError(f"baseline {uri!r}: run {run_id} has no artifacts under "
                                 f"{path!r} (only a clean full scan's run has a baseline)")
            local = client.download_artifacts(run_id, path, dst_path=str(destination))
    except ValueError:
        raise
    except Exception as error:
        _raise_for(error, tracking_uri, f"baseline {uri!r}", "downloading the baseline")
    return Path(local)


def baseline_of_model(uri: str, *, tracking_uri: str | None) -> tuple[str, str, str]:
    """The baseline of the scan that cleared a registered model version's training data.

    ``models:/<name>@<alias>`` (the alias the promotion gate moves: an incremental scan then
    always judges against the data of the model now promoted) or ``models:/<name>/<version>``.
    The version must carry the gate's ``promoted`` outcome; the scan run the gate checked
    (its ``acgate.gate.checked_run`` tag) must hold the baseline the full pipeline's
    ``publish_baseline`` step logged (an ``acgate scan`` run has none).

    Args:
        uri: The ``models:/`` URI.
        tracking_uri: The MLflow tracking URI of the registry.

    Returns:
        ``(runs:/<scan run id>/baseline, model name, version number)``.

    Raises:
        ValueError: Not a ``models:/`` URI, no tracking URI, no such model, alias or version, a
            version the gate did not promote, or a clearing scan run without a baseline.
        acgate.errors.InfrastructureError: The tracking store cannot be reached.
    """
    from acgate.mlflow.gate import GATE_CHECKED_RUN_TAG, GATE_OUTCOME_TAG

    found = _MODELS_URI.match(uri or "")
    if not found:
        raise ValueError(f"baseline {uri!r} is not models:/<name>@<alias> or "
                         f"models:/<name>/<version> (an alias is letters, digits, '_' and '-')")
    if not tracking_uri:
        raise ValueError(f"baseline {uri!r} is a registered model's: give the tracking URI "
                         f"(--tracking-uri, mlflow_tracking_uri)")
    name, alias, number = found.groups()
    client = make_client(tracking_uri)
    try:
        with bounded():
            version = (client.get_model_version_by_alias(name, alias) if alias
                       else client.get_model_version(name, number))
    except Exception as error:
        _raise_for(error, tracking_uri, f"baseline {uri!r}", "resolving the baseline's model")
    tags = dict(version.tags or {})
    which = f"{name} version {version.version}"
    outcome, scan_run = tags.get(GATE_OUTCOME_TAG), tags.get(GATE_CHECKED_RUN_TAG)
    if outcome != "promoted":
        raise ValueError(f"baseline {uri!r}: {which} was not promoted by acgate gate (its "
                         f"{GATE_OUTCOME_TAG} tag is {outcome!r}): only a version whose "
                         f"training data a clean scan covered names a baseline")
    if not scan_run:
        raise ValueError(f"baseline {uri!r}: {which} has no {GATE_CHECKED_RUN_TAG} tag naming "
                         f"the scan run the gate checked")
    try:
        with bounded():
            published = any(item.path == f"{BASELINE_ARTIFACT}/scan.json"
                            for item in client.list_artifacts(scan_run, BASELINE_ARTIFACT))
    except Exception as error:
        _raise_for(error, tracking_uri, f"scan run {scan_run!r} of {uri!r}",
                   "listing the baseline")
    if not published:
        raise ValueError(f"baseline {uri!r}: {which} was cleared by scan run {scan_run}, which "
                         f"holds no baseline: only the full pipeline's publish_baseline step "
                         f"logs one (an acgate scan run does not); name a baseline folder "
                         f"instead")
    return f"runs:/{scan_run}/{BASELINE_ARTIFACT}", name, str(version.version)


def _raise_for(error: Exception, tracking_uri: str, what: str, doing: str) -> None:
    if is_not_found(error):
        raise ValueError(f"{what} is not in the tracking store {tracking_uri!r}: "
                         f"{describe_error(error)}") from error
    if is_store_error(error):
        raise infrastructure_error(tracking_uri, doing, error) from error
    raise error
