"""Promotion gate: move a model alias only when a clean scan covers the model's training data.

The gate reads a scan run logged by :func:`acgate.mlflow.tracking.log_scan` and a registered model
version, and decides whether the version may take an alias (``champion`` by default). It **fails
closed**: anything it cannot verify refuses, and the alias is not touched unless the outcome is
``promoted``. See ``docs/gate.md`` for how to register a version it accepts and for the threat
model.

What it checks, in order:

1. **The version exists** and **the run is an acgate scan run** (tag ``acgate.kind=scan`` or a
   class list): otherwise ``bad_input``.
2. **The run finished**: active, ``FINISHED``, ``acgate.status=complete``.
3. **The evidence is intact**: the artifact ``acgate/classes.json`` has the SHA-256 of the tag
   ``acgate.classes_sha256``; the tags ``acgate.classes``, ``acgate.verdict``,
   ``acgate.poisoned_classes`` and the metrics ``poisoned/<c>``, ``skipped/<c>``,
   ``flagged/<c>``, ``silhouette/<c>``, ``size_ratio/<c>``, ``exre/<c>`` and totals say what the
   file says; every such metric's latest value carries the scan's timestamp and step 0, and
   ``poisoned/<c>`` and ``skipped/<c>`` were logged exactly once (metric history). A re-logged
   metric or an edited tag refuses.
4. **The rule**, per class ``c`` of the class list:

   * ``poisoned/<c>`` is 1 → fail;
   * ``skipped/<c>`` is 1 → fail unless ``allow_skipped``;
   * with thresholds given: ``silhouette/<c> >= silhouette_threshold`` and
     ``size_ratio/<c> <= size_threshold`` → fail, unless the scan's own one-source rule of
     exclusionary reclassification (:func:`acgate.core.analyses.one_source_verdict`), replayed
     on the numbers the run recorded (``exre/<c>``, ``source_share/<c>``, ``confusion/<c>``,
     ``confidence/<c>``, ``typicality/<c>``, ``overlap/<c>``, ``overlap_median/<c>``)
     with the thresholds the scan judged the class with (its entry of the checked
     ``classes.json``, else the run params ``<name>_threshold``), clears the cluster. A
     missing number or threshold fails (but a threshold that became a setting after the run
     was recorded: the value every such scan used). With one gate threshold only, that
     condition alone decides.
5. **The digests match**: the scan's ``dataset_sha256`` (param; the tag, the dataset input and
   ``classes.json`` must agree with it) equals the version's training-data digest: the version
   tag ``acgate.training_data_sha256`` and/or, on the version's source run, the tag
   ``acgate.training_data_sha256`` or a ``training`` dataset input carrying the input tag
   ``acgate.dataset_sha256`` (:func:`acgate.mlflow.tracking.dataset_input`). All of those that
   are present must agree; none present refuses.

Every MLflow call runs under :func:`acgate.mlflow.bounds.bounded` (a stalled server gives
``unavailable`` in about 30 s). What was checked is written onto the version (tags
``acgate.gate.*``, see :data:`GATE_TAGS`) on every outcome but ``unavailable``; the alias is set
last, and only on ``promoted``.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from acgate.core.analyses import Thresholds, one_source_verdict
from acgate.core.detect import resolve_settings
from acgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_INFRASTRUCTURE,
    EXIT_POISON,
    InfrastructureError,
)
from acgate.mlflow.bounds import (
    MlflowBounds,
    bounded,
    describe_error,
    is_not_found,
    is_store_error,
)
from acgate.mlflow.evidence import (
    CLASSES_ARTIFACT,
    MAX_CLASSES_ARTIFACT_BYTES,
    check_run_against_document,
    is_sha256,
    parse_document,
    sha256_bytes,
)
from acgate.mlflow.tracking import (
    CLASSES_SHA256_TAG,
    CLASSES_TAG,
    DATASET_CONTEXT_TAG,
    DATASET_SHA256_PARAM,
    DATASET_SHA256_TAG,
    DEFAULT_CONNECT_TIMEOUT_S,
    KIND_TAG,
    POISONED_CLASSES_TAG,
    STATUS_COMPLETE,
    STATUS_TAG,
    TRAINING_DATA_SHA256_TAG,
    VERDICT_TAG,
    check_server_reachable,
    make_client,
    sqlite_path,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

#: How a gate decision ends; see :data:`OUTCOME_EXIT_CODES`.
Outcome = Literal["promoted", "refused", "bad_input", "unavailable"]

#: Exit code of each outcome (the table of :mod:`acgate.errors`).
OUTCOME_EXIT_CODES: Mapping[str, int] = {
    "promoted": EXIT_CLEAN,
    "refused": EXIT_POISON,
    "bad_input": EXIT_BAD_INPUT,
    "unavailable": EXIT_INFRASTRUCTURE,
}

# Model-version tags kept from earlier acgate versions.
GATE_VERDICT_TAG = "acgate.verdict"
GATE_RUN_TAG = "acgate.run_id"
GATE_FAILING_TAG = "acgate.failing_classes"
GATE_REASONS_TAG = "acgate.reasons"
# Model-version tags recording what the gate checked.
GATE_OUTCOME_TAG = "acgate.gate.outcome"
GATE_CHECKED_RUN_TAG = "acgate.gate.checked_run"
GATE_CHECKED_AT_TAG = "acgate.gate.checked_at"
GATE_SCAN_VERDICT_TAG = "acgate.gate.verdict"
GATE_DATASET_TAG = "acgate.gate.dataset_sha256"
GATE_TRAINING_DATA_TAG = "acgate.gate.training_data_sha256"
GATE_ALIAS_TAG = "acgate.gate.alias"
GATE_GATE_REASONS_TAG = "acgate.gate.reasons"
#: Every model-version tag the gate writes.
GATE_TAGS = (GATE_VERDICT_TAG, GATE_RUN_TAG, GATE_FAILING_TAG, GATE_REASONS_TAG,
             GATE_OUTCOME_TAG, GATE_CHECKED_RUN_TAG, GATE_CHECKED_AT_TAG, GATE_SCAN_VERDICT_TAG,
             GATE_DATASET_TAG, GATE_TRAINING_DATA_TAG, GATE_ALIAS_TAG, GATE_GATE_REASONS_TAG)

#: Metric histories read are ``poisoned/<c>`` and ``skipped/<c>`` of at most this many classes
#: (two calls per class); beyond it the timestamp check of step 3 alone catches re-logging.
MAX_HISTORY_CLASSES = 256
_MAX_TAG_VALUE = 5000
_T = TypeVar("_T")


def exit_code(outcome: str) -> int:
    """The process exit code of a gate outcome (:data:`OUTCOME_EXIT_CODES`).

    Raises:
        ValueError: ``outcome`` is not one of the four.
    """
    try:
        return OUTCOME_EXIT_CODES[outcome]
    except KeyError:
        raise ValueError(f"unknown gate outcome {outcome!r}; expected one of "
                         f"{sorted(OUTCOME_EXIT_CODES)}") from None


@dataclass(frozen=True)
class GateDecision:
    """Outcome of :func:`promote`.

    ``outcome`` and the exit code it maps to (:attr:`exit_code`, :func:`exit_code`):

    ==============  ====  ==========================================================
    outcome         exit  when
    ==============  ====  ==========================================================
    ``promoted``    0     every check passed; the alias now points at the version
    ``refused``     3     poison, a skipped class, a digest that is not the scan's or
                          missing, tampered or inconsistent evidence, an unfinished run
    ``bad_input``   2     unknown run, model or version; no run id; a SQLite store file
                          that does not exist; a run that is not an acgate scan run
    ``unavailable`` 4     the store is unreachable, stalls, answers 5xx, is locked or
                          full, or fails otherwise
    ==============  ====  ==========================================================

    Attributes:
        promoted: Whether the alias now points at the model version.
        reasons: Plain-words reasons: why it did not promote, or a one-line summary of the pass.
        failing_classes: Classes that failed the rule, lacked their metrics or whose evidence
            disagrees.
        run_id: The scan run judged.
        model_name: Registered model name.
        model_version: Model version the alias was (or would have been) set on.
        alias: The alias.
        thresholds: The gate thresholds used (``None``: not used).
        outcome: ``promoted``, ``refused``, ``bad_input`` or ``unavailable`` (derived from
            ``promoted`` when not given: ``promoted`` or ``refused``).
        dataset_sha256: SHA-256 of the scanned file, as the scan run records it.
        training_data_sha256: SHA-256 of the version's training data, as registered.
        scan_verdict: The scan run's ``acgate.verdict`` tag.
        checked_at: When the gate decided (ISO 8601, UTC).
    """

    promoted: bool
    reasons: tuple[str, ...]
    failing_classes: tuple[int, ...] = ()
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    alias: str | None = None
    thresholds: Mapping[str, float | None] = field(default_factory=dict)
    outcome: Outcome | None = None
    dataset_sha256: str | None = None
    training_data_sha256: str | None = None
    scan_verdict: str | None = None
    checked_at: str | None = None

    def __post_init__(self) -> None:
        """Derive ``outcome`` from ``promoted`` when not given; refuse a contradiction."""
        if self.outcome is None:
            object.__setattr__(self, "outcome", "promoted" if self.promoted else "refused")
        if self.outcome not in OUTCOME_EXIT_CODES:
            raise ValueError(f"unknown gate outcome {self.outcome!r}")
        if (self.outcome == "promoted") != bool(self.promoted):
            raise ValueError(f"outcome {self.outcome!r} contradicts promoted={self.promoted!r}")

    @property
    def exit_code(self) -> int:
        """Process exit code of the outcome: 0, 3, 2 or 4 (see the class docstring)."""
        return exit_code(str(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable) of the decision."""
        return {
            "promoted": self.promoted,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "reasons": list(self.reasons),
            "failing_classes": list(self.failing_classes),
            "run_id": self.run_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "alias": self.alias,
            "thresholds": dict(self.thresholds),
            "dataset_sha256": self.dataset_sha256,
            "training_data_sha256": self.training_data_sha256,
            "scan_verdict": self.scan_verdict,
            "checked_at": self.checked_at,
        }


class _Stop(Exception):
    """Ends the checks early with ``bad_input`` or ``unavailable``."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass
class _Findings:
    """What the checks found so far: refusals, failing classes, the digests and verdict read."""

    reasons: list[str] = field(default_factory=list)
    failing: set[int] = field(default_factory=set)
    version_found: bool = False
    dataset_sha256: str | None = None
    training_data_sha256: str | None = None
    scan_verdict: str | None = None


@dataclass(frozen=True)
class _Request:
    """The arguments of :func:`promote`, checked, and when the gate was asked."""

    run_id: str | None
    model_name: str
    version: str
    alias: str
    silhouette_threshold: float | None
    size_threshold: float | None
    allow_skipped: bool
    checked_at: str

    @property
    def thresholds(self) -> dict[str, float | None]:
        """The gate thresholds by name, as :attr:`GateDecision.thresholds` reports them."""
        return {"silhouette": self.silhouette_threshold, "size_ratio": self.size_threshold}


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
    bounds: MlflowBounds | None = None,
) -> GateDecision:
    """Set ``alias`` on a model version only if a clean scan covers its training data.

    Args:
        tracking_uri: Tracking (and registry) URI of the scan run and the model.
        run_id: The scan run (from :func:`acgate.mlflow.tracking.log_scan`); ``None`` or ``""``
            gives ``bad_input``.
        model_name: Registered model name.
        model_version: Version number of the model trained on the scanned data.
        alias: Alias to move on a pass.
        silhouette_threshold: Fail a class whose silhouette is at least this (together with
            ``size_threshold``), unless the scan's one-source rule, replayed on the recorded
            numbers, clears it. ``None``: not used.
        size_threshold: Fail a class whose suspicious-cluster share is at most this (together
            with ``silhouette_threshold``), unless the replayed rule clears it. ``None``: not
            used.
        allow_skipped: Accept classes the scan could not analyse.
        connect_timeout_s: Seconds to wait for an HTTP tracking server's ``/health``.
        bounds: Timeouts and retries of each MLflow request; ``None``:
            :data:`acgate.mlflow.bounds.DEFAULT_BOUNDS` (a stalled server fails in ~30 s).

    Returns:
        The decision; ``outcome`` says which of promoted / refused / bad input / unavailable,
        and :attr:`GateDecision.exit_code` maps it to the CLI's exit code. Never raises for
        MLflow problems.

    Raises:
        ValueError: On invalid arguments (empty names, a non-integer version, thresholds out of
            range) — a caller bug, not a gate decision.
    """
    request = _Request(
        run_id=run_id,
        model_name=model_name,
        version=_check_arguments(model_name, model_version, alias, silhouette_threshold,
                                 size_threshold),
        alias=alias,
        silhouette_threshold=silhouette_threshold,
        size_threshold=size_threshold,
        allow_skipped=allow_skipped,
        checked_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    found = _Findings()
    db_path = sqlite_path(tracking_uri)
    if db_path is not None and not db_path.is_file():
        return _decision(request, found, "bad_input",
                         [f"tracking store {tracking_uri!r} does not exist ({db_path})"])
    with bounded(bounds):
        try:
            client = _open_store(tracking_uri, connect_timeout_s)
        except _Stop as stop:
            return _decision(request, found, stop.outcome, [stop.reason])
        return _Gate(client, tracking_uri, request, found).decide()


def _open_store(tracking_uri: str, connect_timeout_s: float) -> MlflowClient:
    """Reach the store and make a client; an unusable URI or store becomes a ``_Stop``."""
    try:
        check_server_reachable(tracking_uri, timeout_s=connect_timeout_s)
        return make_client(tracking_uri)
    except ValueError as error:  # a URI MLflow does not support
        raise _Stop("bad_input", str(error)) from error
    except InfrastructureError as error:  # unreachable, locked, unreadable
        raise _Stop("unavailable", str(error)) from error
    except Exception as error:
        if not is_store_error(error):
            raise
        raise _Stop("unavailable", f"cannot open tracking store {tracking_uri!r}: "
                                   f"{describe_error(error)}") from error


def _decision(request: _Request, found: _Findings, outcome: Outcome,
              reasons: list[str]) -> GateDecision:
    """The :class:`GateDecision` of ``outcome``, logged (info on a pass, warning otherwise)."""
    decision = GateDecision(
        promoted=outcome == "promoted",
        reasons=tuple(reasons),
        failing_classes=tuple(sorted(found.failing)),
        run_id=request.run_id,
        model_name=request.model_name,
        model_version=request.version,
        alias=request.alias,
        thresholds=request.thresholds,
        outcome=outcome,
        dataset_sha256=found.dataset_sha256,
        training_data_sha256=found.training_data_sha256,
        scan_verdict=found.scan_verdict,
        checked_at=request.checked_at,
    )
    log = logger.info if decision.promoted else logger.warning
    log("gate %s for %s v%s: %s", outcome, request.model_name, request.version,
        "; ".join(reasons))
    return decision


@dataclass
class _Evidence:
    """What step 3 read: the checked ``classes.json`` (``None``: unusable) and its problems."""

    document: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    concerned: set[int] = field(default_factory=set)


class _Gate:
    """The checks of :func:`promote` over one client; findings accumulate in ``found``."""

    def __init__(self, client: MlflowClient, tracking_uri: str, request: _Request,
                 found: _Findings) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self.request = request
        self.found = found
        self.run: Run | None = None
        self.document: dict[str, Any] | None = None

    def call(self, doing: str, function: Callable[..., _T], *args: Any,
             not_found: str | None = None) -> _T:
        """Run one MLflow call; store errors become ``_Stop`` (``bad_input`` for not-found)."""
        try:
            return function(*args)
        except Exception as error:
            if not_found is not None and is_not_found(error):
                raise _Stop("bad_input", f"{not_found}: {describe_error(error)}") from error
            if is_store_error(error):
                raise _Stop("unavailable", f"MLflow tracking store {self.tracking_uri!r} failed "
                                           f"while {doing}: {describe_error(error)}") from error
            raise

    def refuse(self, reason: str, classes: set[int] | None = None) -> None:
        """Record a refusal (and the classes it concerns)."""
        self.found.reasons.append(reason)
        self.found.failing.update(classes or ())

    # ----------------------------------------------------------------------------- deciding

    def decide(self) -> GateDecision:
        """Run every check, write what was checked onto the version, move the alias on a pass."""
        try:
            model = self._read_version()
            self.judge()
            self.check_binding(model)
        except _Stop as stop:
            reasons = self.found.reasons + [stop.reason]
            if stop.outcome != "unavailable" and self.found.version_found:
                self.tag_version(stop.outcome, reasons)
            return _decision(self.request, self.found, stop.outcome, reasons)
        if self.found.reasons:
            self.tag_version("refused", self.found.reasons)
            return _decision(self.request, self.found, "refused", self.found.reasons)
        return self._move_alias(model)

    def _read_version(self) -> ModelVersion:
        """Step 1: the model version exists (``bad_input`` otherwise)."""
        name, version = self.request.model_name, self.request.version
        model = self.call(f"reading model {name!r} version {version}",
                          self.client.get_model_version, name, version,
                          not_found=f"model {name!r} version {version} not found")
        self.found.version_found = True
        return model

    def _move_alias(self, model: ModelVersion) -> GateDecision:
        """Every check passed: tag the version ``promoted``, then set the alias."""
        request = self.request
        name, version, alias = request.model_name, request.version, request.alias
        summary = (f"run {request.run_id}: every class passed and the scanned data (SHA-256 "
                   f"{self.found.dataset_sha256}) is the version's training data; alias "
                   f"{alias!r} now points at {name!r} version {version}")
        try:
            self.tag_version("promoted", [summary], strict=True, stale=model.tags or {})
            self.call(f"setting alias {alias!r}", self.client.set_registered_model_alias,
                      name, alias, version)
        except _Stop as stop:
            reason = f"could not set alias {alias!r} on {name!r} version {version}: " \
                     f"{stop.reason}"
            with bounded(MlflowBounds(timeout_s=3, max_retries=0, backoff_factor=0)):
                self.tag_version("unavailable", [reason])
            return _decision(request, self.found, stop.outcome, [reason])
        return _decision(request, self.found, "promoted", [summary])

    # ----------------------------------------------------------------------------- the run

    def judge(self) -> None:
        """Steps 1-4 of the module docstring.

        The evidence (step 3) is read before the classes are judged (step 4), whose re-check
        replays the scan's rule with the thresholds in the checked ``classes.json``; its
        problems are refused after the class reasons, in the order the gate has always given.
        """
        run = self._read_scan_run(self.request.run_id)
        classes = _class_list(run.data.tags.get(CLASSES_TAG))
        finished = self._check_finished(run)
        # Its artifacts may be what failed an unfinished run: evidence of finished runs only.
        evidence = self._read_evidence(run) if finished else _Evidence()
        self.document = evidence.document
        self._judge_class_list(run, classes)
        for problem in evidence.problems:
            self.refuse(problem)
        self.found.failing.update(evidence.concerned)
        if finished:
            labels = set(classes or ()) | {entry["label"] for entry in
                                           (self.document or {}).get("classes", [])}
            self._check_histories(run.info.run_id, sorted(labels))

    def _read_scan_run(self, run_id: str | None) -> Run:
        """Step 1: the run exists and is an acgate scan run (``bad_input`` otherwise)."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise _Stop("bad_input", f"no scan run id given (got {run_id!r})")
        run = self.call(f"reading scan run {run_id!r}", self.client.get_run, run_id,
                        not_found=f"scan run {run_id!r} not found")
        self.run = run
        tags = run.data.tags
        self.found.scan_verdict = tags.get(VERDICT_TAG)
        kind = tags.get(KIND_TAG)
        if kind not in (None, "scan"):
            raise _Stop("bad_input", f"run {run_id} is an acgate {kind!r} run, not a scan run "
                                     f"(tag {KIND_TAG}={kind!r})")
        if _class_list(tags.get(CLASSES_TAG)) is None and kind != "scan":
            raise _Stop("bad_input", f"scan run {run_id} has no valid {CLASSES_TAG} tag "
                                     f"(got {tags.get(CLASSES_TAG)!r}); is it an acgate scan run?")
        return run

    def _check_finished(self, run: Run) -> bool:
        """Step 2: active, ``FINISHED``, ``acgate.status=complete``; whether it finished."""
        run_id, tags = run.info.run_id, run.data.tags
        if run.info.lifecycle_stage != "active":
            self.refuse(f"scan run {run_id} is {run.info.lifecycle_stage}")
        if run.info.status != "FINISHED":
            self.refuse(f"scan run {run_id} has status {run.info.status}, not FINISHED")
        if tags.get(STATUS_TAG) != STATUS_COMPLETE:
            self.refuse(f"scan run {run_id} has {STATUS_TAG}={tags.get(STATUS_TAG)!r}, not "
                        f"{STATUS_COMPLETE!r} (logging did not finish)")
        return run.info.status == "FINISHED" and tags.get(STATUS_TAG) == STATUS_COMPLETE

    def _judge_class_list(self, run: Run, classes: list[int] | None) -> None:
        """Step 4 over the class list: each class, then the verdict tag against them.

        The re-check replays the scan's rule with the thresholds of the checked
        ``classes.json`` (:attr:`document`, read first), else of the run params.
        """
        run_id = run.info.run_id
        if classes is None:
            self.refuse(f"scan run {run_id} has no valid {CLASSES_TAG} tag "
                        f"(got {run.data.tags.get(CLASSES_TAG)!r}) although it is tagged "
                        f"{KIND_TAG}=scan")
            return
        if not classes:
            self.refuse(f"scan run {run_id} analysed no classes")
            return
        document, params = self.document, run.data.params

        def thresholds_of(label: int) -> Thresholds | str:
            return _recorded_thresholds(label, document, params)

        for label in classes:
            for reason in _judge_class(label, run.data.metrics, self.request, thresholds_of):
                self.refuse(reason, {label})
        self._check_verdict_tag(run, classes)

    def _check_verdict_tag(self, run: Run, classes: list[int]) -> None:
        """The run's verdict tag says what its ``poisoned/<c>`` and ``skipped/<c>`` say."""
        run_id, metrics = run.info.run_id, run.data.metrics
        verdict = run.data.tags.get(VERDICT_TAG)
        judged_poisoned = any(metrics.get(f"poisoned/{c}") == 1 for c in classes)
        judged_skipped = any(metrics.get(f"skipped/{c}") == 1 for c in classes)
        if verdict not in ("clean", "poisoned", "incomplete"):
            self.refuse(f"scan run {run_id} has {VERDICT_TAG}={verdict!r}, not clean, poisoned "
                        "or incomplete")
        elif verdict == "poisoned" and not judged_poisoned:
            self.refuse(f"scan run {run_id} is tagged {VERDICT_TAG}=poisoned but no class "
                        "metric says so; refusing an inconsistent run")
        elif verdict == "incomplete" and not judged_skipped:
            self.refuse(f"scan run {run_id} is tagged {VERDICT_TAG}=incomplete but no class "
                        "metric says a class was skipped; refusing an inconsistent run")
        elif verdict == "clean" and (judged_poisoned or judged_skipped):
            self.refuse(f"scan run {run_id} is tagged {VERDICT_TAG}=clean but its class metrics "
                        "say poisoned or skipped; refusing an inconsistent run")

    def _read_evidence(self, run: Run) -> _Evidence:
        """Step 3: download ``acgate/classes.json``, check its digest, compare the run with it.

        The problems are returned, not refused, so that they follow the class reasons.
        """
        run_id = run.info.run_id
        data, problem = self._download_classes_artifact(run)
        if data is None:
            return _Evidence(problems=[problem])
        got, want = sha256_bytes(data), run.data.tags.get(CLASSES_SHA256_TAG)
        if got != want:
            return _Evidence(problems=[
                f"scan run {run_id}: {CLASSES_ARTIFACT} has SHA-256 {got} but the tag "
                f"{CLASSES_SHA256_TAG} says {want}: the artifact or the tag was changed after "
                "the scan"])
        document, problems = parse_document(data)
        problems = [f"scan run {run_id}: {problem}" for problem in problems]
        if document is None:
            return _Evidence(problems=problems)
        disagreements, concerned = check_run_against_document(
            document, tags=run.data.tags, metrics=_latest_metrics(run, document),
            classes_tag=CLASSES_TAG, verdict_tag=VERDICT_TAG,
            poisoned_classes_tag=POISONED_CLASSES_TAG,
        )
        problems += [f"scan run {run_id}: {problem}" for problem in disagreements]
        return _Evidence(document, problems, concerned)

    def _download_classes_artifact(self, run: Run) -> tuple[bytes | None, str]:
        """The bytes of ``acgate/classes.json``, or ``None`` and why they cannot be checked."""
        run_id = run.info.run_id
        folder = CLASSES_ARTIFACT.rpartition("/")[0]
        listed = self.call(f"listing the artifacts of scan run {run_id}",
                           self.client.list_artifacts, run_id, folder)
        info = next((item for item in listed if item.path == CLASSES_ARTIFACT
                     and not item.is_dir), None)
        if info is None:
            return None, (f"scan run {run_id} has no {CLASSES_ARTIFACT} artifact (logged by an "
                          "acgate without tamper evidence, or removed): re-scan the training "
                          "data")
        want = run.data.tags.get(CLASSES_SHA256_TAG)
        if not is_sha256(want):
            return None, (f"scan run {run_id} has {CLASSES_SHA256_TAG}={want!r}, not a SHA-256: "
                          f"{CLASSES_ARTIFACT} cannot be verified")
        size = getattr(info, "file_size", None)
        if size is not None and size > MAX_CLASSES_ARTIFACT_BYTES:
            return None, (f"scan run {run_id}: {CLASSES_ARTIFACT} is {size} bytes, over the "
                          f"{MAX_CLASSES_ARTIFACT_BYTES} the gate reads")
        with tempfile.TemporaryDirectory(prefix="acgate-gate-") as tmp:
            local = self.call(f"downloading {CLASSES_ARTIFACT} of scan run {run_id}",
                              self.client.download_artifacts, run_id, CLASSES_ARTIFACT, tmp)
            with open(local, "rb") as handle:
                data = handle.read(MAX_CLASSES_ARTIFACT_BYTES + 1)
        if len(data) > MAX_CLASSES_ARTIFACT_BYTES:
            return None, (f"scan run {run_id}: {CLASSES_ARTIFACT} is over the "
                          f"{MAX_CLASSES_ARTIFACT_BYTES} bytes the gate reads")
        return data, ""

    def _check_histories(self, run_id: str, labels: list[int]) -> None:
        """Step 3: ``poisoned/<c>`` and ``skipped/<c>`` logged exactly once."""
        if len(labels) > MAX_HISTORY_CLASSES:
            logger.info("scan run %s has %d classes; reading the metric history of the first "
                        "%d (the timestamp check covers all)", run_id, len(labels),
                        MAX_HISTORY_CLASSES)
        for label in labels[:MAX_HISTORY_CLASSES]:
            for prefix in ("poisoned", "skipped"):
                key = f"{prefix}/{label}"
                history = self.call(f"reading the history of metric {key} of scan run {run_id}",
                                    self.client.get_metric_history, run_id, key)
                if len(history) > 1:
                    values = ", ".join(f"{m.value:g}" for m in history[:10])
                    self.refuse(f"scan run {run_id}: metric {key} was logged {len(history)} times "
                                f"(values {values}); a scan logs it once, so it was re-logged "
                                "after the scan", {label})

    # ----------------------------------------------------------------------------- digests

    def check_binding(self, model: ModelVersion) -> None:
        """Step 5: the scan's dataset digest equals the version's training-data digest."""
        run_id = self.request.run_id
        model_name, version = self.request.model_name, self.request.version
        scan_digest = self._scan_digest(self.run)
        claimed = self._training_digests(model)
        bad = {where: value for where, value in claimed.items() if not is_sha256(value)}
        for where, value in bad.items():
            self.refuse(f"{where} is {value!r}, not a SHA-256 (64 lowercase hex characters)")
        digests = sorted({value for value in claimed.values() if is_sha256(value)})
        if not claimed:
            self.refuse(
                f"model {model_name!r} version {version} has no training-data digest: set the "
                f"version tag {TRAINING_DATA_SHA256_TAG} to the SHA-256 of its training file "
                f"(client.set_model_version_tag({model_name!r}, {version!r}, "
                f"{TRAINING_DATA_SHA256_TAG!r}, acgate.io.file_sha256(path)) or `sha256sum`), "
                "or log that file as a training dataset input of its source run "
                "(acgate.mlflow.dataset_input); see docs/gate.md")
            return
        if len(digests) > 1:
            listing = "; ".join(f"{where}: {value}" for where, value in claimed.items())
            self.refuse(f"model {model_name!r} version {version} names {len(digests)} different "
                        f"training-data digests ({listing}); one scan covers one file")
            return
        if not digests:
            return
        self.found.training_data_sha256 = digests[0]
        if scan_digest is not None and digests[0] != scan_digest:
            self.refuse(f"model {model_name!r} version {version} was trained on data with "
                        f"SHA-256 {digests[0]} ({', '.join(claimed)}), but scan run {run_id} "
                        f"scanned data with SHA-256 {scan_digest}: the scan does not cover "
                        "this model's training data")

    def _scan_digest(self, run: Run | None) -> str | None:
        if run is None:
            return None
        run_id = run.info.run_id
        param = run.data.params.get(DATASET_SHA256_PARAM)
        if param is None:
            self.refuse(f"scan run {run_id} has no {DATASET_SHA256_PARAM} param: it was logged "
                        "without the SHA-256 of the scanned file (an older acgate, or log_scan "
                        "without dataset_sha256); re-scan the training data")
            return None
        if not is_sha256(param):
            self.refuse(f"scan run {run_id} has {DATASET_SHA256_PARAM}={param!r}, not a SHA-256")
            return None
        copies = {f"tag {DATASET_SHA256_TAG}": run.data.tags.get(DATASET_SHA256_TAG)}
        if self.document is not None:
            copies[CLASSES_ARTIFACT] = self.document.get("dataset_sha256")
        for index, value in enumerate(_input_digests(run, contexts=None)):
            copies[f"dataset input {index}"] = value
        for where, value in copies.items():
            if value != param:
                self.refuse(f"scan run {run_id}: {where} is {value!r} but the param "
                            f"{DATASET_SHA256_PARAM} is {param!r}")
        self.found.dataset_sha256 = param
        return param

    def _training_digests(self, model: ModelVersion) -> dict[str, str]:
        claimed: dict[str, str] = {}
        tag = (model.tags or {}).get(TRAINING_DATA_SHA256_TAG)
        if tag is not None:
            claimed[f"version tag {TRAINING_DATA_SHA256_TAG}"] = tag
        source_id = getattr(model, "run_id", None)
        if not source_id:
            return claimed
        try:
            source = self.call(f"reading the source run {source_id} of the model version",
                               self.client.get_run, source_id, not_found="")
        except _Stop as stop:
            if stop.outcome != "bad_input":
                raise
            logger.info("source run %s of the model version is not in the store", source_id)
            return claimed
        run_tag = source.data.tags.get(TRAINING_DATA_SHA256_TAG)
        if run_tag is not None:
            claimed[f"source run {source_id} tag {TRAINING_DATA_SHA256_TAG}"] = run_tag
        for index, value in enumerate(_input_digests(source, contexts=(None, "training",
                                                                      "train"))):
            claimed[f"source run {source_id} training dataset input {index}"] = value
        return claimed

    # ----------------------------------------------------------------------------- writing

    def tag_version(self, outcome: Outcome, reasons: list[str], *, strict: bool = False,
                    stale: Mapping[str, str] | None = None) -> None:
        """Write what was checked onto the version; best effort unless ``strict``.

        Args:
            outcome: The outcome being decided.
            reasons: Its reasons (joined, cut to the tag-value limit).
            strict: Raise ``_Stop`` when a tag cannot be written (else log and stop tagging).
            stale: The version's tags before: ``acgate.failing_classes`` and
                ``acgate.reasons`` among them are deleted on a pass.
        """
        found, request = self.found, self.request
        model_name, version = request.model_name, request.version
        run_id, alias, checked_at = request.run_id, request.alias, request.checked_at
        passed = outcome == "promoted"
        tags = {
            GATE_VERDICT_TAG: "pass" if passed else "fail",
            GATE_RUN_TAG: str(run_id),
            GATE_OUTCOME_TAG: outcome,
            GATE_CHECKED_RUN_TAG: str(run_id),
            GATE_CHECKED_AT_TAG: checked_at,
            GATE_SCAN_VERDICT_TAG: str(found.scan_verdict or "unknown"),
            GATE_DATASET_TAG: found.dataset_sha256 or "unknown",
            GATE_TRAINING_DATA_TAG: found.training_data_sha256 or "unknown",
            GATE_ALIAS_TAG: alias,
            GATE_GATE_REASONS_TAG: "; ".join(reasons)[:_MAX_TAG_VALUE],
        }
        if not passed:
            tags[GATE_FAILING_TAG] = json.dumps(sorted(found.failing))
            tags[GATE_REASONS_TAG] = "; ".join(reasons)[:_MAX_TAG_VALUE]
        for key, value in tags.items():
            try:
                self.call(f"tagging {model_name!r} version {version}",
                          self.client.set_model_version_tag, model_name, version, key, value)
            except _Stop as stop:
                if strict:
                    raise
                logger.warning("could not tag %s v%s %s=%r: %s", model_name, version, key,
                               value, stop.reason)
                return
        if passed:
            for key in (GATE_FAILING_TAG, GATE_REASONS_TAG):
                if key in (stale or {}):
                    self.call(f"untagging {model_name!r} version {version}",
                              self.client.delete_model_version_tag, model_name, version, key)


def _input_digests(run: Run, contexts: tuple[str | None, ...] | None) -> list[str]:
    """``acgate.dataset_sha256`` input tags of a run's dataset inputs (of ``contexts``)."""
    inputs = getattr(run, "inputs", None)
    digests = []
    for dataset_input in getattr(inputs, "dataset_inputs", None) or []:
        tags = {tag.key: tag.value for tag in dataset_input.tags or []}
        if contexts is not None and tags.get(DATASET_CONTEXT_TAG) not in contexts:
            continue
        if DATASET_SHA256_TAG in tags:
            digests.append(tags[DATASET_SHA256_TAG])
    return digests


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


def _latest_metrics(run: Run, document: Mapping[str, Any]) -> dict[str, tuple[float, int, int]]:
    """The run's latest value of each metric with its timestamp and step."""
    objects = getattr(run.data, "_metric_objs", None)  # the latest Metric entities
    if objects is None:  # pragma: no cover - an MLflow without them: history check only
        stamp = document.get("metrics_timestamp_ms")
        return {key: (float(value), stamp, 0) for key, value in run.data.metrics.items()}
    return {m.key: (float(m.value), int(m.timestamp), int(m.step)) for m in objects}


def _class_metric(metrics: Mapping[str, float], prefix: str, label: int) -> float | None:
    """The value of metric ``<prefix>/<label>``; ``None`` when absent or not finite."""
    value = metrics.get(f"{prefix}/{label}")
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _judge_class(label: int, metrics: Mapping[str, float], request: _Request,
                 thresholds_of: Callable[[int], Thresholds | str]) -> list[str]:
    """Step 4 for one class: the scan's verdict, then the gate's re-check when asked for.

    Args:
        label: The class.
        metrics: The run's latest metrics.
        request: The gate's thresholds and ``allow_skipped``.
        thresholds_of: The thresholds the scan judged a class with, or why they are unknown
            (:func:`_recorded_thresholds`).

    Returns:
        The refusal reasons (none: the class passes).
    """
    poisoned = _class_metric(metrics, "poisoned", label)
    skipped = _class_metric(metrics, "skipped", label)
    missing = [f"{p}/{label}" for p, v in (("poisoned", poisoned), ("skipped", skipped))
               if v is None]
    if missing:
        return [f"class {label}: metric(s) {', '.join(missing)} missing from the scan run"]

    reasons = []
    if poisoned != 0:
        reasons.append(f"class {label}: judged poisoned by the scan (poisoned/{label} = "
                       f"{poisoned:g})")
    if skipped != 0:
        if not request.allow_skipped:
            reasons.append(f"class {label}: skipped by the scan (not analysed); "
                           "allow_skipped=True accepts it")
        return reasons
    if request.silhouette_threshold is None and request.size_threshold is None:
        return reasons
    return reasons + _recheck_class(label, metrics, request, thresholds_of)


def _recheck_class(label: int, metrics: Mapping[str, float], request: _Request,
                   thresholds_of: Callable[[int], Thresholds | str]) -> list[str]:
    """The gate's re-check: a cluster as tight and small as its thresholds must be cleared."""
    silhouette_threshold, size_threshold = request.silhouette_threshold, request.size_threshold
    silhouette = _class_metric(metrics, "silhouette", label)
    size_ratio = _class_metric(metrics, "size_ratio", label)
    needed = [
        f"{p}/{label}"
        for p, v, threshold in (
            ("silhouette", silhouette, silhouette_threshold),
            ("size_ratio", size_ratio, size_threshold),
        )
        if threshold is not None and v is None
    ]
    if needed:
        return [f"class {label}: metric(s) {', '.join(needed)} missing from the scan run, "
                "needed by the thresholds"]
    evidence = []
    if silhouette_threshold is not None:
        if silhouette < silhouette_threshold:
            return []
        evidence.append(f"silhouette {silhouette:.3f} >= {silhouette_threshold:g}")
    if size_threshold is not None:
        if size_ratio > size_threshold:
            return []
        evidence.append(f"size ratio {size_ratio:.3f} <= {size_threshold:g}")
    return _replay_one_source_rule(label, metrics, " and ".join(evidence), thresholds_of)


def _replay_one_source_rule(label: int, metrics: Mapping[str, float], cluster: str,
                            thresholds_of: Callable[[int], Thresholds | str]) -> list[str]:
    """Refuse a tight small cluster unless the scan's one-source rule clears it.

    The rule (:func:`acgate.core.analyses.one_source_verdict`, the one the scan judged every
    candidate with) is replayed on the numbers the run recorded: ``exre/<c>`` (l/p),
    ``source_share/<c>``, ``confusion/<c>``, ``confidence/<c>``, ``typicality/<c>``,
    ``overlap/<c>`` and ``overlap_median/<c>`` (absent: not measured, that test not applied),
    with the thresholds the scan used for the class. The run does not record whether the judged
    candidate was a sub-cluster, so the smaller of the two source-share thresholds applies: the
    replay is never more lenient than the scan.

    Args:
        label: The class.
        metrics: The run's latest metrics.
        cluster: Why the cluster counts as tight and small (starts each reason).
        thresholds_of: The thresholds the scan judged a class with, or why they are unknown.

    Returns:
        The refusal reason, or nothing when the rule clears the cluster.
    """
    exre = _class_metric(metrics, "exre", label)
    if exre is None:
        return [f"class {label}: {cluster}; no ExRe score to clear it (no metric exre/{label} "
                "in the scan run)"]
    thresholds = thresholds_of(label)
    if isinstance(thresholds, str):
        return [f"class {label}: {cluster}; the scan's one-source rule cannot be replayed: "
                f"{thresholds}"]
    source_share = _class_metric(metrics, "source_share", label)
    if source_share is None and exre < thresholds.exre:
        return [f"class {label}: {cluster}; l/p = {exre:.2f} (< {thresholds.exre:g}) and no "
                f"metric source_share/{label} in the scan run to replay the scan's one-source "
                "rule"]
    poisoned, why = one_source_verdict(
        exre, math.nan if source_share is None else source_share,  # unread when l/p clears
        _class_metric(metrics, "confusion", label), thresholds,
        nested=thresholds.nested_source_share < thresholds.source_share, label=label,
        confidence=_class_metric(metrics, "confidence", label),
        typicality=_class_metric(metrics, "typicality", label),
        overlap=_class_metric(metrics, "overlap", label),
        overlap_median=_class_metric(metrics, "overlap_median", label),
    )
    if poisoned:
        return [f"class {label}: {cluster}; not cleared by the scan's one-source rule on the "
                f"recorded numbers: {why}"]
    logger.info("class %s: %s, cleared by the scan's one-source rule: %s", label, cluster, why)
    return []


#: Thresholds that became settings after scans had been recorded without them, and the value
#: every such scan judged with (a constant of the core then, written out: the setting's default
#: may change later, what those scans used does not): a record that lacks one (neither in the
#: class's ``thresholds`` nor in the run params) was judged with this value.
_LATER_THRESHOLDS: dict[str, float] = {"overlap": 0.03}


def _no_retrain(train_mask: Any, query: Any) -> None:
    """A stand-in retrain: :func:`resolve_settings` validates exre's thresholds with it."""
    del train_mask, query


def _recorded_thresholds(label: int, document: Mapping[str, Any] | None,
                         params: Mapping[str, str]) -> Thresholds | str:
    """The thresholds the scan judged class ``label`` with, as its run recorded them.

    The class's ``thresholds`` in the checked ``classes.json`` (per class, calibrated ones
    included) when it has them; else the run params ``<name>_threshold`` (the scan's global
    thresholds; a document written before thresholds were recorded per class); a threshold
    that the class's entry lacks comes from the run params. Nothing is guessed: a threshold
    recorded in neither, not a finite number, or outside the range a scan accepts is named;
    except one of :data:`_LATER_THRESHOLDS` recorded nowhere (a scan made before it was a
    setting): the value every such scan used.

    Args:
        label: The class.
        document: The run's ``classes.json`` (``None``: unusable).
        params: The run's params.

    Returns:
        The thresholds, or why they cannot be known.
    """
    names = [item.name for item in fields(Thresholds)]
    entries = (document or {}).get("classes") or []
    entry = next((e for e in entries if isinstance(e, Mapping) and e.get("label") == label),
                 None)
    recorded = (entry or {}).get("thresholds")
    if recorded:
        where = f"the thresholds of class {label} in {CLASSES_ARTIFACT}"
        table = recorded if isinstance(recorded, Mapping) else {}
    else:
        where, table = "the run params", {}
    values = {}
    for name in names:
        if name in table:
            values[name] = _threshold_value(table[name])
        else:
            values[name] = _threshold_value(params.get(f"{name}_threshold",
                                                       _LATER_THRESHOLDS.get(name)))
    missing = [name if name in table else f"{name}_threshold"
               for name, value in values.items() if value is None]
    if missing:
        return f"{where} have no finite {', '.join(missing)}"
    try:
        _, thresholds = resolve_settings(
            "exre", _no_retrain, **{f"{name}_threshold": value for name, value in values.items()})
    except (TypeError, ValueError) as error:
        return f"{where} are not valid thresholds ({error})"
    return thresholds


def _threshold_value(value: Any) -> float | None:
    """A recorded threshold (a JSON number or a param's text) as a finite float, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


__all__ = [
    "GATE_TAGS",
    "OUTCOME_EXIT_CODES",
    "GateDecision",
    "Outcome",
    "exit_code",
    "promote",
]
