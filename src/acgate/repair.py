"""The repair stage: undo a backdoor once a scan has flagged its poison.

Chen et al. (2018), section "Backdoor repair", give two ways:

* ``"relabel"`` (the paper's fast one): give every flagged sample its suspected source class
  and continue training the poisoned model on the relabelled samples (plus, here, a seeded
  replay sample of the kept data, so the model does not forget the clean classes) until the
  loss settles. Flagged samples without a suspected source are dropped.
* ``"remove"``: drop the flagged samples and train a fresh proxy from scratch.

:func:`run_repair` reads a dataset and the scan's ``samples.parquet``, refuses a scan result
that belongs to another dataset *before any training*, and writes into ``out_dir``
(atomically: the folder appears complete or not at all):

* ``cleaned.parquet`` — a new dataset file (the input file is never modified), with the
  columns ``repair_input_row`` and ``repair_input_label`` tracing each row back;
* ``model.pt`` — the repaired model's state_dict;
* ``repair.json`` — strategy, counts, epochs, seconds and, when the dataset records its
  trigger and a clean test set is given, clean accuracy and attack success rate before and
  after the repair.

Torch is imported lazily, as in :mod:`acgate.scan`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from acgate.core.validation import check_choice, check_positive_int

logger = logging.getLogger(__name__)

__all__ = [
    "CLEANED_FILE",
    "MODEL_FILE",
    "REPAIR_FILE",
    "STRATEGIES",
    "RepairOutcome",
    "RepairPlan",
    "evaluate_backdoor",
    "holdout_split",
    "plan_repair",
    "run_repair",
    "scan_fingerprints",
]

Strategy = Literal["relabel", "remove"]
#: Repair strategies (see the module docstring).
STRATEGIES: tuple[str, ...] = ("relabel", "remove")
CLEANED_FILE = "cleaned.parquet"
MODEL_FILE = "model.pt"
REPAIR_FILE = "repair.json"
#: Columns the cleaned dataset gains: the row and the label each row had in the input file.
TRACE_COLUMNS = ("repair_input_row", "repair_input_label")
#: Metadata / JSON keys a scan result may carry its dataset fingerprint under.
_FINGERPRINT_KEYS = ("fingerprint", "dataset_fingerprint")


@dataclass(frozen=True)
class RepairOutcome:
    """What :func:`run_repair` produced.

    Attributes:
        cleaned_dataset_path: The new, cleaned dataset Parquet file (``cleaned.parquet``).
        model_path: The repaired model's state_dict (``model.pt``).
        report: The content of ``repair.json``.
    """

    cleaned_dataset_path: Path
    model_path: Path
    report: dict[str, Any]


@dataclass(frozen=True)
class RepairPlan:
    """Which rows a repair keeps, relabels and drops (dataset row numbers).

    Attributes:
        keep_rows: Rows of the cleaned dataset, ascending (unflagged + relabelled).
        new_labels: Label of each kept row in the cleaned dataset.
        relabelled_rows: Flagged rows given their suspected source class (``relabel`` only).
        removed_rows: Flagged rows dropped (all of them for ``remove``; those without a
            suspected source for ``relabel``).
    """

    keep_rows: np.ndarray
    new_labels: np.ndarray
    relabelled_rows: np.ndarray
    removed_rows: np.ndarray


# ----------------------------------------------------------------------------- checks


def _read_json_object(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return data if isinstance(data, dict) else None


def _fingerprint_in(mapping: Any) -> str | None:
    if not isinstance(mapping, Mapping):
        return None
    for key in _FINGERPRINT_KEYS:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def scan_fingerprints(samples_path: str | Path) -> dict[str, str]:
    """Dataset fingerprints a scan result records, by where they were found.

    Looks in the ``samples.parquet`` metadata (``acgate.fingerprint`` or
    ``acgate.dataset_fingerprint``), in ``scan.json`` next to it (written by
    :func:`acgate.scan.run_scan`) and in ``report.json``'s ``info.extra``.

    Args:
        samples_path: The scan's ``samples.parquet``.

    Returns:
        ``{location: fingerprint}``; empty when the scan recorded none.
    """
    from acgate.io.schema import decode_metadata, open_parquet, raw_metadata

    samples_path = Path(samples_path)
    found: dict[str, str] = {}
    metadata = decode_metadata(samples_path, raw_metadata(open_parquet(samples_path).schema_arrow))
    value = _fingerprint_in(metadata)
    if value:
        found[str(samples_path)] = value
    scan_json = samples_path.parent / "scan.json"
    value = _fingerprint_in(_read_json_object(scan_json))
    if value:
        found[str(scan_json)] = value
    report_json = samples_path.parent / "report.json"
    report = _read_json_object(report_json)
    if report is not None:
        value = _fingerprint_in((report.get("info") or {}).get("extra"))
        if value:
            found[str(report_json)] = value
    return found


def _check_scan_matches(dataset: Any, dataset_path: Path, samples: Any, samples_path: Path,
                        fingerprint: str | None) -> None:
    """Refuse a scan result that does not belong to ``dataset`` (before any training)."""
    from acgate.io.datasets import dataset_fingerprint

    n_rows = len(dataset)
    if len(samples) != n_rows:
        raise ValueError(
            f"{samples_path} has {len(samples)} rows but the dataset {dataset_path} has "
            f"{n_rows}: the scan result belongs to a different dataset"
        )
    expected = dict(scan_fingerprints(samples_path))
    if fingerprint is not None:
        expected["fingerprint argument"] = fingerprint
    if expected:
        actual = dataset_fingerprint(dataset)
        for where, value in expected.items():
            if value != actual:
                raise ValueError(
                    f"dataset fingerprint mismatch: {where} records {value[:16]}... but "
                    f"{dataset_path} has {actual[:16]}...: the scan result belongs to a "
                    "different dataset (or the dataset changed since the scan)"
                )
    indices = samples["index"].to_numpy(dtype=np.int64)
    out_of_range = (indices < 0) | (indices >= n_rows)
    if out_of_range.any():
        bad = indices[out_of_range]
        raise ValueError(
            f"{samples_path}: column 'index' holds {int(out_of_range.sum())} value(s) outside "
            f"[0, {n_rows}) of {dataset_path} (e.g. {bad[:5].tolist()})"
        )
    unique, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"{samples_path}: column 'index' repeats row(s) {unique[counts > 1][:5].tolist()}"
        )
    labels = samples["label"].to_numpy(dtype=np.int64)
    differs = labels != dataset.labels[indices]
    if differs.any():
        row = int(np.flatnonzero(differs)[0])
        raise ValueError(
            f"{samples_path}: row {row} (index {int(indices[row])}) has label {int(labels[row])} "
            f"but {dataset_path} has {int(dataset.labels[indices[row]])} there "
            f"({int(differs.sum())} label(s) differ): the scan result belongs to a different "
            "dataset"
        )


def _check_unit_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- planning


def plan_repair(samples: Any, n_rows: int, labels: np.ndarray, strategy: Strategy
                ) -> RepairPlan:
    """Decide which rows to keep, relabel and drop from a checked samples table.

    Args:
        samples: The scan's per-sample frame (``index``, ``is_poison``, ``suspected_source``).
        n_rows: Rows in the dataset.
        labels: The dataset's labels ``N``.
        strategy: ``"relabel"`` or ``"remove"``.

    Returns:
        The :class:`RepairPlan`.
    """
    check_choice(strategy, STRATEGIES, name="strategy")
    indices = samples["index"].to_numpy(dtype=np.int64)
    flagged = np.zeros(n_rows, dtype=bool)
    flagged[indices[samples["is_poison"].to_numpy(dtype=bool)]] = True
    source = np.full(n_rows, -1, dtype=np.int64)
    source[indices] = samples["suspected_source"].fillna(-1).to_numpy(dtype=np.int64)
    new_labels = np.array(labels, dtype=np.int64, copy=True)
    if strategy == "relabel":
        relabel = flagged & (source >= 0)
        new_labels[relabel] = source[relabel]
        removed = flagged & ~relabel
    else:
        relabel = np.zeros(n_rows, dtype=bool)
        removed = flagged
    keep = np.flatnonzero(~removed)
    return RepairPlan(keep_rows=keep, new_labels=new_labels[keep],
                      relabelled_rows=np.flatnonzero(relabel), removed_rows=np.flatnonzero(removed))


def _cleaned_dataset(dataset: Any, plan: RepairPlan, record: dict[str, Any]) -> Any:
    from acgate.io.datasets import ImageDataset

    rows = plan.keep_rows
    columns = {name: values[rows] for name, values in dataset.columns.items()
               if name not in TRACE_COLUMNS}
    columns[TRACE_COLUMNS[0]] = rows.astype(np.int64)
    input_labels = dataset.labels[rows].astype(np.int64)
    if dataset.label_names is not None:  # the label as the input file wrote it
        input_labels = np.array([dataset.label_names[c] for c in input_labels])
    columns[TRACE_COLUMNS[1]] = input_labels
    return ImageDataset(images=dataset.images[rows], labels=plan.new_labels, columns=columns,
                        metadata={**dataset.metadata, "repair": record},
                        name=f"{dataset.name}-repaired",
                        ids=None if dataset.ids is None else dataset.ids[rows],
                        label_names=dataset.label_names, column_names=dataset.column_names)


def _test_labels_as(test: Any, dataset: Any, test_path: Any) -> Any:
    """The test set with its labels mapped to the dataset's classes (mapped labels only)."""
    from dataclasses import replace

    if dataset.label_names is None and test.label_names is None:
        return test
    if dataset.label_names is None or test.label_names is None:
        kinds = ["integer" if d.label_names is None else "string" for d in (test, dataset)]
        raise ValueError(f"test set {test_path} has {kinds[0]} labels, the dataset {kinds[1]} "
                         "ones: both need the same kind of label column")
    index = {name: c for c, name in enumerate(dataset.label_names)}
    unknown = [name for name in test.label_names if name not in index]
    if unknown:
        raise ValueError(f"test set {test_path} has label(s) {unknown!r} the dataset does not "
                         f"have (its labels: {list(dataset.label_names)!r})")
    labels = np.array([index[test.label_names[c]] for c in test.labels], dtype=np.int64)
    return replace(test, labels=labels, label_names=dataset.label_names)


# ----------------------------------------------------------------------------- evaluation


def holdout_split(dataset: Any, *, test_size: float = 0.25, seed: int = 0) -> tuple[Any, Any]:
    """Seeded, class-stratified split of a *clean* image dataset into train and test parts.

    Split before poisoning (poison only the train part) so the test part is a clean,
    held-out set for :func:`evaluate_backdoor` (e.g. for scikit-learn digits).

    Args:
        dataset: An :class:`acgate.io.datasets.ImageDataset`.
        test_size: Share of each class held out, in ``(0, 1)``.
        seed: Seed of the split.

    Returns:
        ``(train, test)`` image datasets (names suffixed ``-train`` / ``-test``).
    """
    from sklearn.model_selection import train_test_split

    from acgate.io.datasets import ImageDataset

    if not (isinstance(test_size, float) and 0.0 < test_size < 1.0):
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    rows = np.arange(len(dataset))
    train_rows, test_rows = train_test_split(rows, test_size=test_size, random_state=seed,
                                             stratify=dataset.labels)
    parts = []
    for suffix, part in (("train", np.sort(train_rows)), ("test", np.sort(test_rows))):
        parts.append(ImageDataset(
            images=dataset.images[part], labels=dataset.labels[part],
            columns={k: v[part] for k, v in dataset.columns.items()},
            metadata=dict(dataset.metadata), name=f"{dataset.name}-{suffix}"))
    return parts[0], parts[1]


def evaluate_backdoor(
    model: Any,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    trigger_spec: Any,
    pairs: Iterable[Sequence[int]],
) -> dict[str, Any]:
    """Clean accuracy and attack success rate of a model on a clean test set.

    The attack success rate is the share of triggered test images of each source class that
    the model classifies as that pair's target (test images of the target class itself are
    never counted).

    Args:
        model: A torch model returning ``N x n_classes`` logits.
        test_images: Clean test images ``N x C x H x W`` in ``[0, 1]``.
        test_labels: Their true labels ``N``.
        trigger_spec: An :class:`acgate.io.poison.TriggerSpec` or its ``to_dict()``.
        pairs: ``(source, target)`` class pairs of the attack.

    Returns:
        ``{"clean_accuracy", "attack_success_rate" (pooled over pairs; ``None`` when no test
        image belongs to a source class), "n_test", "n_triggered", "per_pair": [{"source",
        "target", "n", "attack_success_rate"}]}``.
    """
    from acgate.io.poison import TriggerSpec, apply_trigger
    from acgate.torch.evaluate import attack_success_by_pair, clean_accuracy

    if isinstance(trigger_spec, Mapping):
        trigger_spec = TriggerSpec.from_dict(trigger_spec)
    if not isinstance(trigger_spec, TriggerSpec):
        raise TypeError(f"trigger_spec must be a TriggerSpec or a dict, got "
                        f"{type(trigger_spec).__name__}")
    images = np.asarray(test_images, dtype=np.float32)
    labels = np.asarray(test_labels, dtype=np.int64)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"test_images must be N x C x H x W with one label each, got shapes "
                         f"{images.shape} and {labels.shape}")
    if len(images) == 0:
        raise ValueError("the test set is empty")
    pairs = [(int(source), int(target)) for source, target in pairs]
    attack = attack_success_by_pair(model, (
        (source, target, apply_trigger(images[labels == source], trigger_spec))
        for source, target in pairs))
    return {"clean_accuracy": clean_accuracy(model, images, labels),
            "attack_success_rate": attack["attack_success_rate"], "n_test": int(len(images)),
            "n_triggered": attack["n_triggered"], "per_pair": attack["per_pair"]}


def _attack_of(dataset: Any) -> tuple[dict[str, Any], list[tuple[int, int]]] | None:
    """The image trigger and pairs ``acgate.io.poison`` recorded in the dataset, if any."""
    from acgate.io.poison import recorded_attack

    attack = recorded_attack(dataset.metadata)
    if attack is None or attack.modality != "image":
        return None
    return attack.trigger.to_dict(), list(attack.pairs)


# ----------------------------------------------------------------------------- models


def _load_proxy(model_path: Path) -> Any:
    """The scanned proxy: ``model.pt`` in its folder with ``model.json`` (one format)."""
    from acgate.stages import MODEL_SPEC_FILE, load_proxy

    if not (model_path.parent / MODEL_SPEC_FILE).is_file():
        raise ValueError(f"{model_path}: no {MODEL_SPEC_FILE} beside it; the proxy folder of an "
                         "acgate scan (the scan's output folder, or the pipeline's model "
                         "artifact) holds both")
    return load_proxy(model_path.parent)


def _replay_rows(kept: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    n = int(round(fraction * len(kept)))
    if n >= len(kept):
        return kept
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(kept, size=n, replace=False))


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class _RepairTask:
    """A repair's checked inputs: the data, its plan, the attack to measure, the record."""

    dataset: Any
    plan: RepairPlan
    cleaned: Any
    test: Any
    attack: tuple[dict[str, Any], list[tuple[int, int]]] | None
    record: dict[str, Any]
    backdoor: dict[str, Any]


def _check_repair_settings(strategy: str, epochs: int | None, max_epochs: int,
                           replay_fraction: float) -> float:
    check_choice(strategy, STRATEGIES, name="strategy")
    if epochs is not None:
        check_positive_int(epochs, name="epochs")
    check_positive_int(max_epochs, name="max_epochs")
    return _check_unit_fraction(replay_fraction, "replay_fraction")


def _read_repair_inputs(dataset_path: Path, samples_path: Path,
                        test_dataset_path: str | Path | None, strategy: str,
                        replay_fraction: float, fingerprint: str | None,
                        columns: Any) -> _RepairTask:
    """Read and check the dataset, the scan result and the test set; plan the repair."""
    from acgate.io.datasets import dataset_fingerprint, read_image_dataset
    from acgate.io.results import read_samples
    from acgate.scan import check_dataset_labels

    check_dataset_labels(dataset_path, columns)  # two columns, before the images are decoded
    dataset = read_image_dataset(dataset_path, image_column=columns.image,
                                 label_column=columns.label, id_column=columns.id)
    samples = read_samples(samples_path)
    _check_scan_matches(dataset, dataset_path, samples, samples_path, fingerprint)
    plan = plan_repair(samples, len(dataset), dataset.labels, strategy)
    if strategy == "relabel" and len(plan.relabelled_rows) == 0 and replay_fraction == 0.0:
        raise ValueError(f"{samples_path}: no flagged sample has a suspected source class and "
                         "replay_fraction is 0: nothing to fine-tune on")
    if len(plan.keep_rows) == 0:
        raise ValueError(f"{samples_path}: every row of {dataset_path} is flagged; nothing "
                         "would be left to train on")
    test = None
    if test_dataset_path is not None:  # the same label and image columns; no ids needed
        test = _test_labels_as(read_image_dataset(test_dataset_path, image_column=columns.image,
                                                  label_column=columns.label),
                               dataset, test_dataset_path)
    attack = _attack_of(dataset)
    if test is not None and test.image_shape != dataset.image_shape:
        raise ValueError(f"test set {test_dataset_path} has images {test.image_shape}, the "
                         f"dataset {dataset_path} has {dataset.image_shape}")
    backdoor: dict[str, Any] = {"measured": attack is not None and test is not None}
    if not backdoor["measured"]:
        backdoor["reason"] = ("no clean test set was given (test_dataset_path)" if test is None
                              else f"{dataset_path} records no image trigger (metadata "
                              "'poison')")
        logger.info("backdoor metrics skipped: %s", backdoor["reason"])
    record: dict[str, Any] = {
        "strategy": strategy, "input": str(dataset_path),
        "input_fingerprint": dataset_fingerprint(dataset), "samples": str(samples_path),
        "n_input": len(dataset), "n_flagged": int(samples["is_poison"].sum()),
        "n_relabelled": int(len(plan.relabelled_rows)), "n_removed": int(len(plan.removed_rows)),
    }
    cleaned = _cleaned_dataset(dataset, plan, record)
    return _RepairTask(dataset, plan, cleaned, test, attack, record, backdoor)


def _measure(task: _RepairTask, model: Any, when: str) -> None:
    """The backdoor's success on the clean test set, before or after (when measurable)."""
    if task.backdoor["measured"]:
        trigger, pairs = task.attack
        task.backdoor[when] = evaluate_backdoor(model, task.test.images, task.test.labels,
                                                trigger, pairs)
        task.backdoor["trigger"] = trigger
        task.backdoor["pairs"] = [list(p) for p in pairs]


def _repaired_model(task: _RepairTask, user_model: Any, config: Any,
                    timings: dict[str, float], *, strategy: str, epochs: int | None,
                    max_epochs: int, replay_fraction: float, seed: int) -> Any:
    """Fine-tune the poisoned proxy on the relabelled rows, or retrain on the cleaned data."""
    from acgate.scan import train_proxy
    from acgate.torch.train import fine_tune, train_model

    dataset, plan, record = task.dataset, task.plan, task.record
    poisoned_model = user_model
    if poisoned_model is None and (strategy == "relabel" or task.backdoor["measured"]):
        clock = time.perf_counter()
        poisoned_model, _ = train_proxy(dataset, config)
        timings["train_poisoned_proxy"] = time.perf_counter() - clock
    _measure(task, poisoned_model, "before")
    clock = time.perf_counter()
    if strategy == "relabel":
        model = poisoned_model
        replay = _replay_rows(np.setdiff1d(plan.keep_rows, plan.relabelled_rows),
                              replay_fraction, seed)
        rows = np.concatenate([plan.relabelled_rows, replay])
        new_labels = np.array(dataset.labels, dtype=np.int64, copy=True)
        new_labels[plan.keep_rows] = plan.new_labels
        kwargs = {"batch_size": config.batch_size, "lr": config.lr, "seed": seed,
                  "progress": config.progress}
        if epochs is None:
            stats = fine_tune(model, dataset.images[rows], new_labels[rows],
                              max_epochs=max_epochs, **kwargs)
            converged = stats.converged
        else:
            stats = train_model(model, dataset.images[rows], new_labels[rows], epochs=epochs,
                                **kwargs)
            converged = None
        record.update({"n_replayed": int(len(replay)), "n_trained_on": int(len(rows)),
                       "converged": converged})
    else:
        model, stats = train_proxy(task.cleaned, replace(config, epochs=epochs))
        record.update({"n_trained_on": len(task.cleaned), "converged": None})
    timings["repair_training"] = time.perf_counter() - clock
    record.update({"epochs": int(stats.epochs), "final_loss": float(stats.final_loss),
                   "seconds": timings["repair_training"]})
    _measure(task, model, "after")
    return model


def _write_repair_outputs(staging: Path, task: _RepairTask, model: Any, config: Any,
                          report: dict[str, Any]) -> None:
    """``cleaned.parquet``, the proxy folder (``model.pt`` + ``model.json``), the report."""
    from acgate.io.datasets import write_image_dataset
    from acgate.report.html import write_repair_report
    from acgate.stages import save_proxy

    write_image_dataset(task.cleaned, staging / CLEANED_FILE)
    save_proxy(model, task.dataset, config, staging)  # the scan's proxy format
    (staging / REPAIR_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n",
                                       encoding="utf-8")
    write_repair_report(report, staging / "repair.html")


def run_repair(
    dataset_path: str | Path,
    samples_path: str | Path,
    model_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    strategy: Strategy = "relabel",
    seed: int = 0,
    epochs: int | None = None,
    max_epochs: int = 50,
    replay_fraction: float = 1.0,
    test_dataset_path: str | Path | None = None,
    fingerprint: str | None = None,
    config: Any = None,
    overwrite: bool = False,
) -> RepairOutcome:
    """Repair a poisoned dataset and its model from a scan result.

    Every input is checked before any training: a scan result from another dataset (row count,
    recorded or given fingerprint, labels) or with out-of-range indices is refused and nothing
    is written.

    Args:
        dataset_path: The scanned (poisoned) image dataset Parquet file; never modified.
        samples_path: The scan's ``samples.parquet``.
        model_path: The proxy's state_dict (as :func:`acgate.torch.byo.save_state_dict`
            writes it; built with ``config``'s proxy settings). ``None``: train a fresh proxy
            on the dataset (``relabel`` needs it; ``remove`` only to measure "before").
        out_dir: Output folder (replaced atomically): ``cleaned.parquet``, ``model.pt``,
            ``repair.json``. Required. ``cleaned.parquet`` has the input's column names, its
            id column (``config.id_column``) and, for mapped labels, the original label values.
        strategy: ``"relabel"`` (fine-tune on relabelled flagged samples + replay) or
            ``"remove"`` (drop flagged samples, train from scratch).
        seed: Seed of every random step (replay sample, training, fresh proxies).
        epochs: Fixed epoch count. ``None``: ``relabel`` fine-tunes until the loss settles
            (at most ``max_epochs``); ``remove`` uses the scan's default (30 below 10k rows).
        max_epochs: Upper bound of the fine-tuning epochs.
        replay_fraction: Share of the kept (unflagged) rows replayed while fine-tuning, in
            ``[0, 1]``; 0 fine-tunes on the relabelled rows alone (the paper's recipe).
        test_dataset_path: A clean image test set for the backdoor metrics.
        fingerprint: The dataset fingerprint the scan was made on
            (:func:`acgate.io.datasets.dataset_fingerprint`), checked in addition to those
            the scan folder records.
        config: An :class:`acgate.scan.ScanConfig` for the proxy (architecture, batch size,
            learning rate, hidden width) and the dataset's columns (``label_column``,
            ``image_column``, ``id_column``: the scan's); its ``seed`` is replaced by ``seed``.
        overwrite: Accept an output folder with files acgate did not write (only acgate's
            outputs are replaced there; see :func:`acgate.io.output.output_folder`).

    Returns:
        The :class:`RepairOutcome`.

    Raises:
        ValueError: A scan result from another dataset, out-of-range or repeated indices, bad
            settings, a ``relabel`` with nothing left to fine-tune on.
        FileNotFoundError: A missing input file.
    """
    from acgate.io.datasets import dataset_fingerprint
    from acgate.io.output import check_output_folder, output_folder
    from acgate.scan import ScanConfig

    started = time.perf_counter()
    if out_dir is None:
        raise ValueError("out_dir is required")
    replay_fraction = _check_repair_settings(strategy, epochs, max_epochs, replay_fraction)
    config = replace(config or ScanConfig(), seed=seed)
    dataset_path, samples_path, out_dir = Path(dataset_path), Path(samples_path), Path(out_dir)
    inputs = (dataset_path, samples_path, model_path, test_dataset_path)
    check_output_folder(out_dir, inputs=inputs)  # before anything is read or trained
    from acgate.torch._arrays import resolve_device

    resolve_device(config.device)  # --device cuda without CUDA: refused before any work
    if model_path is not None and not Path(model_path).is_file():
        raise FileNotFoundError(f"model file {str(model_path)!r} does not exist")
    task = _read_repair_inputs(dataset_path, samples_path, test_dataset_path, strategy,
                               replay_fraction, fingerprint, config.columns)
    # The given model is loaded (and refused when unsafe) before the output folder is touched.
    user_model = _load_proxy(Path(model_path)) if model_path is not None else None
    if user_model is not None:
        from acgate.torch._arrays import resolve_device

        user_model = user_model.to(resolve_device(config.device))
    with output_folder(out_dir, command="repair", inputs=inputs,
                       overwrite=overwrite) as output:
        timings: dict[str, float] = {}
        model = _repaired_model(task, user_model, config, timings, strategy=strategy,
                                epochs=epochs, max_epochs=max_epochs,
                                replay_fraction=replay_fraction, seed=seed)
        timings["total"] = time.perf_counter() - started
        report = {**task.record, "cleaned_fingerprint": dataset_fingerprint(task.cleaned),
                  "n_cleaned": len(task.cleaned), "seed": seed,
                  "replay_fraction": replay_fraction, "max_epochs": max_epochs,
                  "model_path": str(model_path) if model_path else None,
                  "config": config.to_dict(), "timings": timings, "backdoor": task.backdoor}
        if task.backdoor["measured"]:
            task.backdoor["test_dataset"] = str(test_dataset_path)
        _write_repair_outputs(output.staging, task, model, config, report)
    logger.info("repair (%s): %d relabelled, %d removed, %d epochs, %.1f s", strategy,
                report["n_relabelled"], report["n_removed"], report["epochs"], timings["total"])
    return RepairOutcome(cleaned_dataset_path=out_dir / CLEANED_FILE,
                         model_path=out_dir / MODEL_FILE, report=report)
