"""Promotion gate: move a model alias only when the scan run of its training data is clean.

The gate reads a scan run logged by :func:`acgate.mlflow.tracking.log_scan` and decides whether
a registered model version may take an alias (``champion`` by default). It **fails closed**:
a missing run, a run not ``FINISHED``, a run without ``acgate.status=complete``, a class of the
run's class list without its metrics, an unreachable tracking server or any MLflow error gives
``promoted=False`` with a reason, and the alias is not touched.

Rule, per class ``c`` of the run's class list (tag ``acgate.classes``):

* ``poisoned/<c>`` is 1 → fail;
* ``skipped/<c>`` is 1 → fail unless ``allow_skipped``;
* with thresholds given: ``silhouette/<c> >= silhouette_threshold`` and
  ``size_ratio/<c> <= size_threshold`` → fail, unless ``exre/<c>`` is present and ``>= 1``
  (exclusionary reclassification cleared the cluster). With one threshold only, that condition
  alone decides.

On a pass the version is tagged ``acgate.verdict=pass`` and ``acgate.run_id=<run>``, then the
alias is set. On a fail it is tagged ``acgate.verdict=fail``, ``acgate.failing_classes`` (JSON
list) and ``acgate.reasons``; tagging is best effort (the server may be the thing that is down).
The CLI maps ``promoted=False`` to a non-zero exit status.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, Any

from acgate.mlflow.tracking import (
    CLASSES_TAG,
    DEFAULT_CONNECT_TIMEOUT_S,
    STATUS_COMPLETE,
    STATUS_TAG,
    VERDICT_TAG,
    check_server_reachable,
    make_client,
    sqlite_path,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

GATE_VERDICT_TAG = "acgate.verdict"
GATE_RUN_TAG = "acgate.run_id"
GATE_FAILING_TAG = "acgate.failing_classes"
GATE_REASONS_TAG = "acgate.reasons"
_MAX_TAG_VALUE = 5000


@dataclass(frozen=True)
class GateDecision:
    """Outcome of :func:`promote`.

    Attributes:
        promoted: Whether the alias now points at the model version.
        reasons: Plain-words reasons: why it failed, or a one-line summary of the pass.
        failing_classes: Classes that failed the rule or lacked their metrics.
        run_id: The scan run judged.
        model_name: Registered model name.
        model_version: Model version the alias was (or would have been) set on.
        alias: The alias.
    """

    promoted: bool
    reasons: tuple[str, ...]
    failing_classes: tuple[int, ...] = ()
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    alias: str | None = None
    thresholds: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable) of the decision."""
        return {
            "promoted": self.promoted,
            "reasons": list(self.reasons),
            "failing_classes": list(self.failing_classes),
            "run_id": self.run_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "alias": self.alias,
            "thresholds": dict(self.thresholds),
        }


def promote(
    *,
    tracking_uri: str,
    run_id: str | None,
    model_name: str,
    model_version: int | str,
    alias: str = "champion",
    silhouette_threshold: float | None = None,
    size_threshold: float | None = None,
    allow_skipped: bool = False,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> GateDecision:
    """Set ``alias`` on a model version only if the scan run passes the rule.

    Args:
        tracking_uri: Tracking (and registry) URI of the scan run and the model.
        run_id: The scan run (from :func:`acgate.mlflow.tracking.log_scan`); ``None`` fails.
        model_name: Registered model name.
        model_version: Version number of the model trained on the scanned data.
        alias: Alias to move on a pass.
        silhouette_threshold: Fail a class whose silhouette is at least this (together with
            ``size_threshold``), unless ExRe cleared it. ``None``: not used.
        size_threshold: Fail a class whose suspicious-cluster share is at most this (together
            with ``silhouette_threshold``), unless ExRe cleared it. ``None``: not used.
        allow_skipped: Accept classes the scan could not analyse.
        connect_timeout_s: Seconds to wait for an HTTP tracking server before failing closed.

    Returns:
        The decision; ``promoted`` is ``False`` on every failure (never raises for MLflow
        problems).

    Raises:
        ValueError: On invalid arguments (empty names, a non-integer version, thresholds out of
            range) — a caller bug, not a gate decision.
    """
    version = _check_arguments(
        model_name, model_version, alias, silhouette_threshold, size_threshold
    )
    thresholds = {"silhouette": silhouette_threshold, "size_ratio": size_threshold}

    def decide(
        promoted: bool, reasons: list[str], failing: tuple[int, ...] = ()
    ) -> GateDecision:
        decision = GateDecision(
            promoted=promoted,
            reasons=tuple(reasons),
            failing_classes=failing,
            run_id=run_id,
            model_name=model_name,
            model_version=version,
            alias=alias,
            thresholds=thresholds,
        )
        log = logger.info if promoted else logger.warning
        log("gate %s for %s v%s: %s", "passed" if promoted else "refused", model_name,
            version, "; ".join(reasons))
        return decision

    db_path = sqlite_path(tracking_uri)
    if db_path is not None and not db_path.is_file():
        return decide(False, [f"tracking store {tracking_uri!r} does not exist ({db_path})"])
    try:
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        client = make_client(tracking_uri)
    except ConnectionError as error:
        return decide(False, [str(error)])
    except Exception as error:  # fail closed on any client error
        return decide(False, [f"cannot open tracking store {tracking_uri!r}: {error}"])

    try:
        reasons, failing = _judge_run(
            client, run_id, silhouette_threshold, size_threshold, allow_skipped
        )
    except Exception as error:  # fail closed on any MLflow error
        reasons, failing = [f"MLflow error while reading run {run_id!r}: {error}"], ()

    try:
        model = client.get_model_version(model_name, version)
    except Exception as error:  # fail closed on any MLflow error
        return decide(
            False, reasons + [f"model {model_name!r} version {version} not found: {error}"],
            failing,
        )

    if reasons:
        _tag_quietly(
            client, model_name, version,
            {
                GATE_VERDICT_TAG: "fail",
                GATE_RUN_TAG: str(run_id),
                GATE_FAILING_TAG: json.dumps(list(failing)),
                GATE_REASONS_TAG: "; ".join(reasons)[:_MAX_TAG_VALUE],
            },
        )
        return decide(False, reasons, failing)

    try:
        client.set_model_version_tag(model_name, version, GATE_VERDICT_TAG, "pass")
        client.set_model_version_tag(model_name, version, GATE_RUN_TAG, str(run_id))
        for stale in (GATE_FAILING_TAG, GATE_REASONS_TAG):
            if stale in (model.tags or {}):
                client.delete_model_version_tag(model_name, version, stale)
        client.set_registered_model_alias(model_name, alias, version)
    except Exception as error:  # fail closed on any MLflow error
        reason = f"could not set alias {alias!r} on {model_name!r} version {version}: {error}"
        _tag_quietly(
            client, model_name, version,
            {GATE_VERDICT_TAG: "fail", GATE_REASONS_TAG: reason[:_MAX_TAG_VALUE]},
        )
        return decide(False, [reason])
    return decide(
        True,
        [f"run {run_id}: every class passed; alias {alias!r} now points at "
         f"{model_name!r} version {version}"],
    )


def _check_arguments(
    model_name: Any,
    model_version: Any,
    alias: Any,
    silhouette_threshold: Any,
    size_threshold: Any,
) -> str:
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    if not isinstance(alias, str) or not alias.strip():
        raise ValueError(f"alias must be a non-empty string, got {alias!r}")
    version = str(model_version).strip()
    if isinstance(model_version, bool) or not version.isdigit() or int(version) < 1:
        raise ValueError(f"model_version must be a positive integer, got {model_version!r}")
    for name, value, low, high in (
        ("silhouette_threshold", silhouette_threshold, -1.0, 1.0),
        ("size_threshold", size_threshold, 0.0, 1.0),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number or None, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return str(int(version))


def _judge_run(
    client: MlflowClient,
    run_id: str | None,
    silhouette_threshold: float | None,
    size_threshold: float | None,
    allow_skipped: bool,
) -> tuple[list[str], tuple[int, ...]]:
    """Reasons to refuse (empty when the run passes) and the failing classes."""
    if not isinstance(run_id, str) or not run_id.strip():
        return [f"no scan run id given (got {run_id!r})"], ()
    try:
        run = client.get_run(run_id)
    except Exception as error:  # a missing run is an MLflow error
        return [f"scan run {run_id!r} not found: {error}"], ()

    reasons: list[str] = []
    if run.info.lifecycle_stage != "active":
        reasons.append(f"scan run {run_id} is {run.info.lifecycle_stage}")
    if run.info.status != "FINISHED":
        reasons.append(f"scan run {run_id} has status {run.info.status}, not FINISHED")
    tags = run.data.tags
    if tags.get(STATUS_TAG) != STATUS_COMPLETE:
        reasons.append(
            f"scan run {run_id} has {STATUS_TAG}={tags.get(STATUS_TAG)!r}, not "
            f"{STATUS_COMPLETE!r} (logging did not finish)"
        )
    classes = _class_list(tags.get(CLASSES_TAG))
    if classes is None:
        reasons.append(
            f"scan run {run_id} has no valid {CLASSES_TAG} tag "
            f"(got {tags.get(CLASSES_TAG)!r}); is it an acgate scan run?"
        )
        return reasons, ()
    if not classes:
        reasons.append(f"scan run {run_id} analysed no classes")
        return reasons, ()

    failing: list[int] = []
    for label in classes:
        class_reasons = _judge_class(
            label, run.data.metrics, silhouette_threshold, size_threshold, allow_skipped
        )
        if class_reasons:
            failing.append(label)
            reasons.extend(class_reasons)
    verdict = tags.get(VERDICT_TAG)
    if verdict not in ("clean", "poisoned"):
        reasons.append(f"scan run {run_id} has {VERDICT_TAG}={verdict!r}, not clean or poisoned")
    elif verdict == "poisoned" and not failing:
        reasons.append(f"scan run {run_id} is tagged {VERDICT_TAG}=poisoned but no class metric "
                       "says so; refusing an inconsistent run")
    return reasons, tuple(failing)


def _class_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        return None
    return values


def _judge_class(
    label: int,
    metrics: Mapping[str, float],
    silhouette_threshold: float | None,
    size_threshold: float | None,
    allow_skipped: bool,
) -> list[str]:
    def metric(prefix: str) -> float | None:
        value = metrics.get(f"{prefix}/{label}")
        if value is None or not math.isfinite(value):
            return None
        return float(value)

    poisoned, skipped = metric("poisoned"), metric("skipped")
    missing = [f"{p}/{label}" for p, v in (("poisoned", poisoned), ("skipped", skipped))
               if v is None]
    if missing:
        return [f"class {label}: metric(s) {', '.join(missing)} missing from the scan run"]

    reasons = []
    if poisoned != 0:
        reasons.append(f"class {label}: judged poisoned by the scan (poisoned/{label} = "
                       f"{poisoned:g})")
    if skipped != 0:
        if not allow_skipped:
            reasons.append(f"class {label}: skipped by the scan (not analysed); "
                           "allow_skipped=True accepts it")
        return reasons
    if silhouette_threshold is None and size_threshold is None:
        return reasons

    silhouette, size_ratio = metric("silhouette"), metric("size_ratio")
    needed = [
        f"{p}/{label}"
        for p, v, threshold in (
            ("silhouette", silhouette, silhouette_threshold),
            ("size_ratio", size_ratio, size_threshold),
        )
        if threshold is not None and v is None
    ]
    if needed:
        reasons.append(f"class {label}: metric(s) {', '.join(needed)} missing from the scan "
                       "run, needed by the thresholds")
        return reasons
    over_silhouette = silhouette_threshold is None or silhouette >= silhouette_threshold
    under_size = size_threshold is None or size_ratio <= size_threshold
    if over_silhouette and under_size:
        exre = metric("exre")
        evidence = []
        if silhouette_threshold is not None:
            evidence.append(f"silhouette {silhouette:.3f} >= {silhouette_threshold:g}")
        if size_threshold is not None:
            evidence.append(f"size ratio {size_ratio:.3f} <= {size_threshold:g}")
        if exre is not None and exre >= 1:
            logger.info("class %s: %s, cleared by ExRe %.2f >= 1", label,
                        " and ".join(evidence), exre)
        else:
            cleared = (f"ExRe {exre:.2f} < 1" if exre is not None
                       else "no ExRe score to clear it")
            reasons.append(f"class {label}: {' and '.join(evidence)}; {cleared}")
    return reasons


def _tag_quietly(
    client: MlflowClient, model_name: str, version: str, tags: Mapping[str, str]
) -> None:
    """Set model-version tags; log and swallow errors (the decision stands regardless)."""
    for key, value in tags.items():
        try:
            client.set_model_version_tag(model_name, version, key, value)
        except Exception as error:  # best effort
            logger.warning("could not tag %s v%s %s=%r: %s", model_name, version, key,
                           value, error)
            return
