"""The detector's settings, declared once: name, type, default, help text, where they apply.

:class:`DetectorConfig` is the one declaration. Everything else derives from it or is checked
against it by ``tests/test_config_walk.py``, which walks these fields: the keyword arguments of
:func:`acgate.core.detect` and of :class:`acgate.core.ActivationClustering` (``seed`` is named
``random_state`` there, scikit-learn's name), the ``acgate`` CLI flags (generated from
:func:`settings`), the pipeline's and the components' parameters (KFP needs literal signatures,
so they are checked), the chart's ``pipeline.parameters`` and the MLflow params of a scan run
(``scan.<name>``). The proxy-training settings extend it in :class:`acgate.scan.ScanConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from acgate.core.analyses import (
    ANALYSES,
    CONFUSION_THRESHOLD,
    EXRE_THRESHOLD,
    NESTED_SOURCE_SHARE_THRESHOLD,
    SOURCE_SHARE_THRESHOLD,
)
from acgate.core.clustering import MIN_CLASS_SIZE
from acgate.core.redraw import REDRAW_COMPONENTS
from acgate.core.reducers import REDUCERS
from acgate.core.tail import HELD_OUT_OVERLAP

#: Where a setting applies: the stage that first reads it. A KFP component takes the settings
#: of its own stage and of every stage before it that it replays (analyze replays the proxy's
#: training for its retrain), so a change re-runs only the steps that depend on it.
STAGES: tuple[str, ...] = ("proxy", "cluster", "analyze", "local")


def setting(default: Any, help: str, *, stage: str, choices: tuple[Any, ...] | None = None,
            flag: str | None = None, parse: Callable[[str], Any] | None = None,
            pipeline: bool = True) -> Any:
    """Declare one setting (a dataclass field carrying its documentation).

    Args:
        default: The default value.
        help: One line of help (the CLI's, the docs').
        stage: ``"proxy"``, ``"cluster"``, ``"analyze"`` (see :data:`STAGES`) or ``"local"``
            (only meaningful on the machine that runs the scan, e.g. a progress bar).
        choices: The allowed values, when they are a closed set.
        flag: The CLI flag (default: ``--`` + the name with dashes); ``""``: no CLI flag.
        parse: Turns the flag's text into the value (default: the field's type).
        pipeline: The pipeline and its chart expose it.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    metadata = {"help": help, "stage": stage, "choices": choices, "flag": flag, "parse": parse,
                "pipeline": pipeline and stage != "local"}
    return field(default=default, metadata=metadata)


def parse_n_clusters(text: str) -> int | str | None:
    """``n_clusters`` from text: a whole number >= 2, ``auto`` or ``stable``; ``""``: None.

    Raises:
        ValueError: Anything else (quoting the text).
    """
    text = text.strip()
    if text == "":
        return None
    if text in ("auto", "stable"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"n_clusters must be a whole number >= 2, 'auto' or 'stable', got "
                         f"{text!r}") from None
    if value < 2:
        raise ValueError(f"n_clusters must be >= 2, got {value}")
    return value


@dataclass(frozen=True)
class DetectorConfig:
    """Every setting of the detection itself (see :func:`acgate.core.detect` for the method).

    Values are checked where they are used (:func:`acgate.core.detect.resolve_settings`), so a
    bad one fails the same way on every path.
    """

    reducer: str = setting("pca", "dimensionality reduction before clustering",
                           stage="cluster", choices=REDUCERS)
    n_components: int = setting(10, "dimensions after reduction", stage="cluster")
    n_clusters: int | str | None = setting(
        None, "k of k-means; 'auto': k = 2..4 per class by the best silhouette; 'stable': the "
        "stable small clusters at the smallest k that has any (default: stable under "
        "exclusionary reclassification with more than two classes, else 2)",
        stage="cluster", parse=parse_n_clusters)
    analysis: str = setting(
        "auto", "how a class is judged (auto: exre when a retrain is possible, else "
        "size-silhouette)", stage="cluster", choices=("auto", *ANALYSES))
    size_threshold: float | None = setting(
        None, "largest share of a class a poison cluster may hold (default: 0.45 under exre, "
        "else 0.35; text scans 0.35)", stage="cluster")
    silhouette_threshold: float = setting(0.10, "smallest silhouette counted as two clusters",
                                          stage="analyze")
    exre_threshold: float = setting(EXRE_THRESHOLD, "l/p below this is poison (exclusionary "
                                    "reclassification)", stage="analyze")
    source_share_threshold: float = setting(
        SOURCE_SHARE_THRESHOLD, "and at least this share of the left-out cluster must go to one "
        "other class", stage="analyze")
    nested_source_share_threshold: float = setting(
        NESTED_SOURCE_SHARE_THRESHOLD, "the same for a stable sub-cluster inside a candidate",
        stage="analyze")
    confusion_threshold: float = setting(
        CONFUSION_THRESHOLD, "a candidate is legitimate when the proxy itself mixes up its class "
        "and the suspected source at least this much (2 disables the test)", stage="analyze")
    overlap_threshold: float = setting(
        HELD_OUT_OVERLAP, "a candidate is legitimate when a retrain without every class's tail "
        "sends at least this share of the suspected source's tail to its class, and 6.5x the "
        "other tails' median (classes >= 1,000 rows; 2 disables the test)", stage="analyze")
    redraw_components: int = setting(
        REDRAW_COMPONENTS, "a poisoned class's flagged rows are redrawn around their centre in "
        "the class's whitened principal space of this many directions, then filled with the "
        "rows whose nearest neighbours there are mostly flagged (0 keeps the analysis's rows)",
        stage="analyze")
    segment_by: str = setting("label", "split the activations by label or by the model's "
                              "prediction", stage="cluster", choices=("label", "prediction"))
    min_class_size: int = setting(MIN_CLASS_SIZE, "smaller classes are skipped (reported "
                                  "incomplete)", stage="cluster")
    seed: int = setting(0, "seed of every random step", stage="proxy")

    def detect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`acgate.core.detect` these settings give."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(DetectorConfig)}
        kwargs["random_state"] = kwargs.pop("seed")
        return kwargs


def settings(config_type: type) -> Iterator[Field[Any]]:
    """The declared settings of a configuration class (fields made with :func:`setting`)."""
    for item in fields(config_type):
        if "stage" in item.metadata:
            yield item


def default_of(item: Field[Any]) -> Any:
    """A setting's default value."""
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    raise ValueError(f"setting {item.name!r} has no default")


def from_text(config_type: type, values: dict[str, Any]) -> Any:
    """A configuration from loosely typed values (KFP parameters, ``--set`` pairs).

    ``""`` means "the default" for a setting whose default is ``None``; ``n_clusters`` may come
    as text; unknown names are an error.

    Raises:
        ValueError: An unknown setting name (quoting it and the known names).
    """
    known = {item.name: item for item in settings(config_type)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
    parsed = {}
    for name, value in values.items():
        item = known[name]
        if isinstance(value, str) and item.metadata["parse"] is not None:
            value = item.metadata["parse"](value)
        elif value == "" and default_of(item) is None:
            value = None
        parsed[name] = value
    return config_type(**parsed)


__all__ = ["STAGES", "DetectorConfig", "default_of", "from_text", "parse_n_clusters", "setting",
           "settings"]
