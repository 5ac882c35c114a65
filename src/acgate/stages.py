"""Glue for the Kubeflow components: one function per pipeline stage, files in, files out.

The components in ``components/<stage>/component.py`` stay thin: they turn their KFP artifacts
into paths, call one function of this module and write what it returns. Everything here is the
library (:mod:`acgate.scan`, :mod:`acgate.core`, :mod:`acgate.io`), cut at the pipeline's
artifact boundaries:

``train_proxy`` (stage the dataset, validate it, train the seeded proxy) ->
``extract_activations`` (last hidden layer to Parquet; the classes to fan out over) ->
``cluster`` (one class, :func:`acgate.core.cluster_class`) -> ``analyze`` (all clusterings,
:func:`acgate.core.analyze` with exclusionary reclassification, result files, HTML, MLflow).

The per-class fan-out gives the same result as :func:`acgate.core.detect`: each class's rows are
taken with :func:`acgate.core.detect.segment_rows` (canonical sample-id order), its reduced
activations are stored at full precision, and :func:`analyze_clusterings` resolves the
thresholds exactly as ``detect`` does.

Every reader error names the pipeline artifact it came from (see :func:`reading`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acgate.core.result import DetectionResult
from acgate.logs import configure_logging
from acgate.scan import ScanConfig

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: File kind of a per-class clustering (Parquet ``acgate.stage`` metadata entry).
CLUSTERING_KIND = "clustering/1"
#: The proxy's one file format, a folder (the scan's output folder, or the pipeline's ``model``
#: artifact): the weights (``torch.save`` of the state_dict, loaded ``weights_only``) ...
MODEL_WEIGHTS_FILE = "model.pt"
#: ... how to rebuild the module (proxy name, modality, input shape, classes, hidden width) ...
MODEL_SPEC_FILE = "model.json"
#: ... and, for a text proxy, its vocabulary (:data:`acgate.scan.VOCABULARY_FILE`).
#: Environment variable: torch CPU threads of a pipeline step (default 1: with 2 threads on
#: shared cores training slowed 10-40x; the CLI's ``--torch-threads``).
TORCH_THREADS_ENV = "ACGATE_TORCH_THREADS"
#: The training statistics ``model.json`` and ``scan.json`` record (``seconds`` stays out: the
#: records are the same on every run of the same data and seed).
_TRAINING_FIELDS = ("train_accuracy", "final_loss", "epochs")
_CLUSTERING_META = "acgate.clustering"
_CLUSTERING_COLUMNS = ("position", "cluster")


class StageInputError(ValueError):
    """An input artifact of a stage is missing or malformed (names the artifact)."""


@contextlib.contextmanager
def reading(artifact: str, path: PathLike) -> Iterator[None]:
    """Re-raise reader errors with the name of the pipeline artifact prepended.

    Args:
        artifact: The artifact's name in the pipeline (e.g. ``"activations"``).
        path: Its local path.

    Raises:
        StageInputError: For a missing file or a ``ValueError``/``TypeError`` of the reader;
            the message reads ``input artifact 'activations' (<path>): <reader message>``.
    """
    try:
        yield
    except StageInputError:
        raise
    except FileNotFoundError as error:
        raise StageInputError(
            f"input artifact {artifact!r} ({path}) does not exist: {error}") from error
    except (ValueError, TypeError, KeyError) as error:
        raise StageInputError(f"input artifact {artifact!r} ({path}): {error}") from error


def pipeline_config(**parameters: Any) -> ScanConfig:
    """The :class:`ScanConfig` of a pipeline step, from its parameters.

    Every step builds its config with this function from the same pipeline inputs, so the
    proxy, the extraction and the exclusionary-reclassification retrain agree. Parameters come
    as KFP passes them: ``""`` means the default of a setting whose default is ``None``, and
    ``n_clusters`` is text (``"2"``, ``"auto"``, ``"stable"``).

    Raises:
        ValueError: An unknown setting name.
    """
    from acgate.core.config import from_text

    return from_text(ScanConfig, parameters)


def step_config(values: Mapping[str, Any]) -> ScanConfig:
    """The :class:`ScanConfig` of a component, from its parameters (``locals()``).

    A KFP component's signature lists its settings literally; this picks the declared settings
    out of its parameters, so the component does not list them a second time (the names and
    defaults are checked against the configuration by ``tests/cli/test_config_walk.py``).
    """
    from acgate.core.config import settings

    names = {item.name for item in settings(ScanConfig)}
    return pipeline_config(**{name: value for name, value in values.items() if name in names})


def begin_step(dataset_path: PathLike | None = None, dataset_sha256: str | None = None) -> None:
    """What every pipeline step does first: log at INFO, pin torch's threads, check the data.

    Args:
        dataset_path: The step's dataset artifact, checked against ``dataset_sha256``.
        dataset_sha256: The run's dataset digest (``None`` or ``""``: no check).
    """
    configure_logging(logging.INFO)  # acgate's INFO; Great Expectations' from WARNING
    pin_torch_threads()
    if dataset_path is not None:
        check_dataset_digest(dataset_path, dataset_sha256)


def pin_torch_threads() -> int:
    """Set torch's CPU threads from ``$ACGATE_TORCH_THREADS`` (default 1); return the number.

    Raises:
        ValueError: A value that is not a whole number >= 1.
    """
    import torch

    text = os.environ.get(TORCH_THREADS_ENV, "1")
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"${TORCH_THREADS_ENV} must be a whole number >= 1, got {text!r}")
    torch.set_num_threads(threads)
    return threads


def dataset_modality(path: PathLike, modality: str | None = None,
                     columns: Any = None) -> str:
    """``"image"`` or ``"text"``: the given one, or the one the file's columns say.

    See :func:`acgate.io.datasets.dataset_modality`; ``columns`` (a
    :class:`acgate.io.datasets.Columns`, default the canonical names) names the image and text
    columns.

    Raises:
        ValueError: A file with both an image and a text column and no ``modality``, or an
            unknown modality.
    """
    from acgate.io.datasets import DEFAULT_COLUMNS
    from acgate.io.datasets import dataset_modality as modality_of

    return modality_of(path, modality, columns or DEFAULT_COLUMNS)  # type: ignore[arg-type]


def modality_config(config: ScanConfig, modality: str) -> ScanConfig:
    """The settings a modality runs with: text scans cut candidates at 0.35 by default."""
    from acgate.scan import TEXT_SIZE_THRESHOLD

    if modality == "text" and config.size_threshold is None:
        return dataclasses.replace(config, size_threshold=TEXT_SIZE_THRESHOLD)
    return config


def read_stage_dataset(path: PathLike, config: ScanConfig, modality: str | None = None,
                       *, artifact: str = "dataset", rows: tuple[int, int] | None = None,
                       channels: int | None = None) -> Any:
    """Read an image or text dataset artifact and check it can be scanned.

    ``rows``: only the rows ``[first, stop)`` (a shard, which is not checked on its own: the
    whole dataset was, when it was staged), decoded to ``channels`` image channels (what the
    whole file decodes to; ``None``: these rows' own).
    """
    from acgate.io.datasets import read_dataset
    from acgate.scan import check_scannable

    with reading(artifact, path):
        dataset = read_dataset(path, modality=dataset_modality(path, modality, config.columns),
                               max_decoded_bytes=config.max_decoded_bytes,
                               columns=config.columns, rows=rows, channels=channels)
        if rows is None:
            check_scannable(dataset, path)
    return dataset


def clustering_settings(config: ScanConfig, n_classes: int) -> tuple[int | str, float]:
    """The ``n_clusters`` mode and candidate size cut the per-class clustering uses.

    Resolved as :func:`acgate.core.detect` resolves them for ``n_classes`` classes: the pipeline
    always has a retrain, so ``analysis="auto"`` is exclusionary reclassification.

    Raises:
        ValueError / TypeError: An unknown mode or analysis, or a bad threshold.
    """
    from acgate.core.detect import resolve_n_clusters

    analysis = "exre" if config.analysis == "auto" else config.analysis
    resolved, thresholds = _resolved_settings(config, analysis, lambda mask, query: None)
    return resolve_n_clusters(config.n_clusters, resolved, n_classes), thresholds.size


def _resolved_settings(config: ScanConfig, analysis: str, retrain_and_predict: Any
                       ) -> tuple[str, Any]:
    """``resolve_settings`` with every ``*_threshold`` setting of ``config``.

    Derived from the declaration (:class:`acgate.core.config.DetectorConfig`), so a new
    threshold needs no change here.
    """
    from acgate.core.config import DetectorConfig, settings
    from acgate.core.detect import resolve_settings

    thresholds = {item.name: getattr(config, item.name) for item in settings(DetectorConfig)
                  if item.name.endswith("_threshold")}
    return resolve_settings(analysis, retrain_and_predict, **thresholds)


# ----------------------------------------------------------------------------- train_proxy


def stage_dataset(dataset_uri: str, destination: PathLike, columns: Any = None) -> Path:
    """Copy the dataset at ``dataset_uri`` to ``destination`` and validate it.

    Args:
        dataset_uri: A local path, ``file://`` URI or any URI :mod:`pyarrow.fs` opens
            (``s3://``, ``gs://``, ``hdfs://``) of a dataset Parquet file.
        destination: Local file to write (atomically).
        columns: The file's column names (:attr:`acgate.scan.ScanConfig.columns`); ``None``:
            the canonical ``label``, ``image``, ``text``.

    Returns:
        ``destination``.

    Raises:
        StageInputError: The dataset is missing, not Parquet, or fails the dataset suite.
    """
    from acgate.io.atomic import atomic_write_path
    from acgate.scan import validate_dataset_file

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with reading("dataset_uri", dataset_uri):
        if "://" in dataset_uri and not dataset_uri.startswith("file://"):
            import pyarrow.fs as pafs

            filesystem, remote = pafs.FileSystem.from_uri(dataset_uri)
            with atomic_write_path(destination) as temp:
                pafs.copy_files(remote, str(temp), source_filesystem=filesystem)
                # Before the rename: a bad copy never lands.
                validate_dataset_file(temp, modality=dataset_modality(temp, None, columns),
                                      **_columns_kwarg(columns))
        else:
            from acgate.io.schema import require_regular_file

            source = require_regular_file(Path(dataset_uri.removeprefix("file://")),
                                          what="a dataset file")
            # Validate the input itself (errors name it), and only then copy it.
            validate_dataset_file(source, modality=dataset_modality(source, None, columns),
                                  **_columns_kwarg(columns))
            with atomic_write_path(destination) as temp:
                shutil.copyfile(source, temp)
    return destination


def _columns_kwarg(columns: Any) -> dict[str, Any]:
    return {} if columns is None else {"columns": columns}


def train_proxy_stage(dataset_path: PathLike, model_dir: PathLike, config: ScanConfig, *,
                      modality: str | None = None, dataset: Any = None) -> dict[str, Any]:
    """Train the seeded proxy on the dataset and save it as a model folder.

    The folder holds ``model.pt`` (weights only), ``model.json`` (how to rebuild the module:
    proxy name, modality, input shape, number of classes, hidden width) and, for text,
    ``vocab.json``. The CLI's output folder and the pipeline's ``model`` artifact are such a
    folder; :func:`load_proxy` reads it back.

    When the dataset records the attack it was poisoned with (``metadata["poison"]``), the
    proxy's attack success on it is measured (:func:`acgate.scan.proxy_attack_success`) and a
    warning is logged when it is below :data:`acgate.scan.WEAK_ATTACK_SUCCESS`: the proxy never
    learned the backdoor, so a clean verdict would be weak evidence. ``model.json`` records the
    training under ``"training"`` (:func:`proxy_training`), with the device it ran on
    (``ScanConfig.device``) and its hardware (the CPU's model or the GPU's name: a verdict near a
    cut can differ on another CPU model); the extraction carries it to
    ``scan.json``'s ``"proxy"``.

    Args:
        dataset_path: The dataset Parquet file.
        model_dir: The folder to write (created when missing).
        config: The scan's settings.
        modality: ``"image"`` or ``"text"``; ``None``: from the columns.
        dataset: The dataset already read from ``dataset_path`` (saves reading it again).

    Returns:
        ``model.json``'s rebuild fields plus the training statistics (``final_loss``,
        ``train_accuracy``, ``epochs``, ``seconds`` and, when the dataset records its attack,
        ``attack_success`` and ``attack_success_rows``): the train-proxy step's KFP metrics.
    """
    from acgate.scan import proxy_attack_success, train_proxy, weak_proxy_warning
    from acgate.torch._arrays import device_hardware, model_device

    if dataset is None:
        dataset = read_stage_dataset(dataset_path, config, modality)
    model, stats = train_proxy(dataset, config)
    numbers = {k: v for k, v in dataclasses.asdict(stats).items() if isinstance(v, (int, float))}
    training = {k: v for k, v in numbers.items()
                if k in _TRAINING_FIELDS and np.isfinite(v)}
    attack = proxy_attack_success(model, dataset, seed=config.seed, max_tokens=config.max_tokens)
    training.update(attack or {})
    device = model_device(model)
    training["device"] = device.type  # where it trained ("cpu" or "cuda") ...
    training["hardware"] = device_hardware(device)  # ... on which CPU model or GPU
    warning = weak_proxy_warning(training)
    if warning is not None:
        logger.warning("%s: %s", dataset_path, warning)
    spec = save_proxy(model, dataset, config, model_dir, training=training)
    spec.pop("training")
    attack_numbers = {k: training[k] for k in ("attack_success", "attack_success_rows")
                      if k in training}
    return {**spec, **numbers, **attack_numbers}


def save_proxy(model: Any, dataset: Any, config: ScanConfig, model_dir: PathLike, *,
               training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a proxy folder: ``model.pt``, ``model.json`` and, for text, ``vocab.json``.

    Args:
        model: The trained proxy.
        dataset: The dataset it was trained on.
        config: The scan's settings.
        model_dir: The folder to write (created when missing).
        training: How the proxy trained (JSON-able), recorded in ``model.json`` under
            ``"training"`` (:func:`proxy_training` reads it back); ``None``: not recorded.

    Returns:
        ``model.json``'s content.
    """
    from acgate.scan import VOCABULARY_FILE, n_classes_of, text_vocabulary
    from acgate.torch.byo import save_state_dict

    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_state_dict(model, folder / MODEL_WEIGHTS_FILE)
    modality = "text" if hasattr(dataset, "texts") else "image"
    spec: dict[str, Any] = {"modality": modality, "n_classes": n_classes_of(dataset.labels),
                            "hidden": config.hidden}
    if modality == "text":
        vocabulary = text_vocabulary(dataset, config.max_tokens)
        vocabulary.save(folder / VOCABULARY_FILE)
        spec.update(proxy="textcnn", input_shape=[vocabulary.max_len],
                    vocab_size=vocabulary.size)
    else:
        spec.update(proxy=config.proxy if config.proxy != "auto" else "cnn",
                    input_shape=[int(v) for v in dataset.images.shape[1:]])
    if training is not None:
        spec["training"] = dict(training)
    _write_json(folder / MODEL_SPEC_FILE, spec)
    return spec


def proxy_training(model_dir: PathLike) -> dict[str, Any] | None:
    """How the proxy of a model folder trained (``model.json``'s ``"training"``), if recorded.

    Returns:
        ``train_accuracy``, ``final_loss``, ``epochs``, ``device`` (``"cpu"`` or ``"cuda"``)
        and, when the dataset records its attack, ``attack_success``,
        ``attack_success_rows`` and ``attack_success_pairs``;
        ``None`` for a folder that records none (a repaired model's).
    """
    path = Path(model_dir) / MODEL_SPEC_FILE
    with reading("model", model_dir):
        training = json.loads(path.read_text(encoding="utf-8")).get("training")
    return dict(training) if isinstance(training, Mapping) else None


def load_proxy_vocabulary(model_dir: PathLike) -> Any:
    """The vocabulary saved with a text proxy (``None`` for an image proxy)."""
    from acgate.scan import VOCABULARY_FILE
    from acgate.text import load_vocabulary

    path = Path(model_dir) / VOCABULARY_FILE
    with reading("model", model_dir):
        return load_vocabulary(path) if path.is_file() else None


def load_proxy(model_dir: PathLike) -> Any:
    """Rebuild the proxy saved by :func:`train_proxy_stage` (weights loaded ``weights_only``)."""
    import torch

    from acgate.torch.models import build_proxy

    folder = Path(model_dir)
    with reading("model", folder):
        spec = json.loads((folder / MODEL_SPEC_FILE).read_text(encoding="utf-8"))
        extra = {"vocab_size": spec["vocab_size"]} if "vocab_size" in spec else {}
        model = build_proxy(spec["proxy"], spec["input_shape"], spec["n_classes"],
                            hidden=spec["hidden"], **extra)
        try:
            state = torch.load(folder / MODEL_WEIGHTS_FILE, weights_only=True)
            model.load_state_dict(state)
        except pickle.UnpicklingError as error:
            # weights_only=True refused a pickle that would run code: never retry unsafely.
            raise ValueError(f"refusing to load {folder / MODEL_WEIGHTS_FILE}: it is not a plain "
                             f"weights file (it would execute code when unpickled)") from error
        except (RuntimeError, OSError) as error:
            raise ValueError(f"{folder / MODEL_WEIGHTS_FILE}: cannot load weights: {error}"
                             ) from error
    return model.eval()


# ----------------------------------------------------------------------- extract_activations


def plan_shards_stage(dataset_path: PathLike, n_shards: int) -> list[int]:
    """The shards the pipeline extracts in parallel: ``0..k-1``, ``k <= n_shards``.

    Shards are contiguous row ranges of whole extraction batches
    (:func:`acgate.io.shards.shard_bounds`), so a dataset smaller than ``n_shards`` batches
    gets fewer shards.

    Raises:
        StageInputError: ``n_shards`` is not a positive integer, or the dataset is unreadable.
    """
    from acgate.io.shards import shard_bounds

    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise StageInputError(f"n_shards must be a whole number >= 1, got {n_shards!r}")
    return list(range(len(shard_bounds(_dataset_rows(dataset_path), n_shards))))


def _dataset_rows(dataset_path: PathLike) -> int:
    """The staged dataset's row count (its Parquet footer only)."""
    from acgate.io.schema import open_parquet

    with reading("dataset", dataset_path):
        return int(open_parquet(dataset_path).metadata.num_rows)


def extract_stage(dataset_path: PathLike, model_dir: PathLike | None,
                  activations_path: PathLike, config: ScanConfig, *, dataset: Any = None,
                  model: Any = None, vocabulary: Any = None, shard: int | None = None,
                  n_shards: int = 1) -> tuple[list[int], Any]:
    """Write the model's activations and validate them; return the classes to fan out over.

    The activations file records the dataset's modality (``acgate.modality``), which the
    ``cluster`` and ``analyze`` steps read, and how the proxy trained (``acgate.proxy``, from
    ``model.json``; not for the user's own model), which ``analyze`` writes to ``scan.json``.

    Args:
        dataset_path: The dataset Parquet file.
        model_dir: The proxy folder (from :func:`train_proxy_stage`); ``None`` with ``model``.
        activations_path: The activations Parquet file to write; with ``shard``, the shard's
            activation dataset folder (:func:`acgate.io.shards.write_activation_shard`).
        config: The scan's settings (``layer``, ``segment_by``, ``max_tokens``).
        dataset: The dataset already read from ``dataset_path``.
        model: The user's own model instead of the proxy folder.
        vocabulary: The user's text model's vocabulary (with ``model``).
        shard: Extract only this shard of the dataset's rows (of ``n_shards``; see
            :func:`plan_shards_stage`): only its rows are decoded. ``None``: every row.
        n_shards: The number of shards asked for (with ``shard``).

    Returns:
        The segments present (labels, or predictions with ``segment_by="prediction"``),
        ascending: one ``cluster`` task per entry; and the activations suite's result.
    """
    from acgate.scan import extract_to_parquet

    if shard is not None:
        if dataset is not None or model is not None or vocabulary is not None:
            raise TypeError("extract_stage: a shard reads its own rows and the proxy folder; "
                            "do not pass dataset, model or vocabulary with shard")
        return _extract_shard(dataset_path, model_dir, Path(activations_path), config,
                              shard=shard, n_shards=n_shards)
    if dataset is None:
        dataset = read_stage_dataset(dataset_path, config)
    metadata: dict[str, Any] = {"modality": "text" if hasattr(dataset, "texts") else "image"}
    if model is None:
        model, vocabulary = _extraction_proxy(model_dir, config, metadata)
    table = extract_to_parquet(model, dataset, activations_path, config, vocabulary=vocabulary,
                               metadata=metadata)
    gx_activations = validate_activations_table(table.indices, table.labels, table.activations,
                                                len(dataset))
    segments = table.predictions if config.segment_by == "prediction" else table.labels
    if segments is None:
        raise ValueError("segment_by='prediction' needs predictions; the model gave none")
    return [int(s) for s in np.unique(segments)], gx_activations


def _extraction_proxy(model_dir: PathLike | None, config: ScanConfig,
                      metadata: dict[str, Any]) -> tuple[Any, Any]:
    """The proxy and its vocabulary on the scan's device.

    How it trained goes into ``metadata`` (``"proxy"``, on to the analyze step's ``scan.json``).
    """
    from acgate.torch._arrays import resolve_device

    model = load_proxy(model_dir).to(resolve_device(config.device))
    training = proxy_training(model_dir)
    if training is not None:
        metadata["proxy"] = training
    return model, load_proxy_vocabulary(model_dir)


def _extract_shard(dataset_path: PathLike, model_dir: PathLike | None, out_dir: Path,
                   config: ScanConfig, *, shard: int, n_shards: int) -> tuple[list[int], Any]:
    """One shard of :func:`extract_stage`: its rows' activations, one part per segment."""
    from acgate.io.atomic import scratch_file
    from acgate.io.results import read_json_object
    from acgate.io.shards import (
        check_activation_destination,
        shard_bounds,
        write_activation_shard,
    )
    from acgate.scan import check_dataset_labels, extract_to_parquet

    check_activation_destination(out_dir)  # before any work
    with reading("dataset", dataset_path):
        # What a whole read checks (rows, classes, ids) on the whole file: two columns.
        check_dataset_labels(dataset_path, config.columns)
    n_rows = _dataset_rows(dataset_path)
    bounds = shard_bounds(n_rows, n_shards)
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < len(bounds):
        raise StageInputError(f"shard {shard!r} is not one of the {len(bounds)} shards of "
                              f"{n_rows} rows in {n_shards} (0..{len(bounds) - 1})")
    rows = bounds[shard]
    spec = read_json_object(Path(model_dir) / MODEL_SPEC_FILE, "a model.json")
    shape = [int(v) for v in spec.get("input_shape", [])]
    # A shard's own images might all be greyscale in a file that decodes to RGB.
    dataset = read_stage_dataset(dataset_path, config, rows=rows,
                                 channels=shape[0] if len(shape) == 3 else None)
    if hasattr(dataset, "images") and list(dataset.images.shape[1:]) != shape:
        raise StageInputError(f"input artifact 'dataset' ({dataset_path}): rows "
                              f"[{rows[0]}, {rows[1]}) decode to images of shape "
                              f"{list(dataset.images.shape[1:])}, the proxy reads {shape}")
    metadata: dict[str, Any] = {"modality": "text" if hasattr(dataset, "texts") else "image"}
    model, vocabulary = _extraction_proxy(model_dir, config, metadata)
    with scratch_file(out_dir) as scratch:
        table = extract_to_parquet(model, dataset, scratch, config, vocabulary=vocabulary,
                                   metadata=metadata, first_row=rows[0])
    gx_activations = validate_activations_table(table.indices, table.labels, table.activations,
                                                n_rows)
    manifest = write_activation_shard(table, out_dir, shard=shard, rows=rows,
                                      n_dataset_rows=n_rows, segment_by=config.segment_by)
    return sorted(int(s) for s in manifest["segments"]), gx_activations


def collect_activations_stage(shard_paths: Sequence[PathLike], dataset_path: PathLike,
                              out_path: PathLike) -> list[int]:
    """Gather the shards' activations into one activation dataset; return its segments.

    Raises:
        StageInputError: The shards do not cover the dataset's rows exactly once, or are not
            shards (:func:`acgate.io.shards.collect_activation_shards`).
    """
    from acgate.io.shards import collect_activation_shards

    n_rows = _dataset_rows(dataset_path)
    with reading("shards", ", ".join(map(str, shard_paths))):
        manifest = collect_activation_shards(shard_paths, out_path, n_rows=n_rows)
    return sorted(int(s) for s in manifest["segments"])


# ----------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class _Arrays:
    activations: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    segments: np.ndarray
    predictions: np.ndarray | None = None


def _validated_arrays(activations_path: PathLike, config: ScanConfig) -> tuple[Any, _Arrays]:
    """Read and validate the activations exactly as :func:`acgate.core.detect` does."""
    from acgate.core import validation
    from acgate.io.activations import read_activations

    with reading("activations", activations_path):
        table = read_activations(activations_path)
        x = validation.check_activations(table.activations)
        y = validation.check_labels(table.labels, x.shape[0])
        validation.check_class_count(y, name=f"{activations_path}: column 'label'")
        ids = validation.check_sample_ids(table.indices, x.shape[0])
        predictions = None
        if table.predictions is not None:
            predictions = validation.check_labels(table.predictions, x.shape[0],
                                                  name="predictions")
        segments = _segments_by(config, y, predictions)
        validation.check_informative(x, segments, name=f"{activations_path}: activations")
    return table, _Arrays(x, y, ids, segments, predictions)


def _segments_by(config: ScanConfig, labels: np.ndarray,
                 predictions: np.ndarray | None) -> np.ndarray:
    """Every row's segment: its label, or its prediction with ``segment_by="prediction"``."""
    if config.segment_by != "prediction":
        return labels
    if predictions is None:
        raise ValueError("column 'prediction' is all null; segment_by='prediction' "
                         "needs the model's predictions")
    return predictions


def validate_activations_table(sample_ids: Any, labels: Any, activations: Any,
                               n_dataset_rows: int) -> Any:
    """The activations suite on an activations table (raises when an expectation fails)."""
    from acgate.gx import activations_summary_frame, validate_activations_frame

    return validate_activations_frame(
        activations_summary_frame(sample_ids, labels, activations), n_dataset_rows=n_dataset_rows)


def activations_modality(table: Any) -> str:
    """The dataset modality an activations file records (files before it: images)."""
    return str(table.metadata.get("modality", "image"))


def cluster_stage(activations_path: PathLike, label: int, out_path: PathLike,
                  config: ScanConfig, *, max_rows: int | None = None) -> Any:
    """Cluster one class (segment) and write its clustering as Parquet.

    From an activation dataset (the pipeline's) only the class's parts are read, and a class
    of more than ``max_rows`` rows is clustered from a seeded sample of that many, the other
    rows assigned in a second streamed pass (:mod:`acgate.core.sampled`): the class's
    activations are never held whole (its positions, clusters and reduced values are, ~100
    bytes a row). An activations file (``acgate scan``'s) is clustered whole, whatever its
    size.

    Args:
        activations_path: An activation dataset folder, or an activations Parquet file.
        label: The class (segment).
        out_path: The clustering Parquet file to write.
        config: The scan's settings.
        max_rows: The largest class clustered whole; ``None``:
            :data:`acgate.core.sampled.MAX_CLUSTER_ROWS`.

    Returns:
        The :class:`acgate.core.ClassClustering`.

    Raises:
        StageInputError: Bad activations, or ``label`` absent from them.
    """
    from acgate.core.detect import segment_rows
    from acgate.core.sampled import MAX_CLUSTER_ROWS
    from acgate.io.shards import is_activation_dataset

    max_rows = MAX_CLUSTER_ROWS if max_rows is None else max_rows
    if is_activation_dataset(activations_path):
        manifest = _collected_manifest(activations_path, config)
        n_classes = len(manifest["labels"])
        n_rows = int(manifest["segments"].get(str(int(label)), 0))
        if n_rows > max_rows:
            clustering = _sampled_clustering(activations_path, int(label), n_rows, max_rows,
                                             config, n_classes)
            write_clustering(clustering, out_path)
            return clustering
        activations, positions, modality = _segment_arrays(activations_path, int(label))
    else:
        table, arrays = _validated_arrays(activations_path, config)
        modality = activations_modality(table)
        rows = segment_rows(arrays.sample_ids, arrays.segments)
        if int(label) not in rows:
            raise StageInputError(
                f"input artifact 'activations' ({activations_path}): no row has "
                f"{'prediction' if config.segment_by == 'prediction' else 'label'} {label} "
                f"(present: {sorted(rows)})")
        positions = rows[int(label)]
        activations = arrays.activations[positions]
        n_classes = len(np.unique(arrays.labels))
    clustering = _cluster(activations, positions, int(label), config, n_classes, modality)
    write_clustering(clustering, out_path)
    return clustering


def _cluster(activations: np.ndarray, positions: np.ndarray, label: int, config: ScanConfig,
             n_classes: int, modality: str,
             settings: tuple[int | str, float] | None = None) -> Any:
    """:func:`acgate.core.cluster_class` with the settings ``detect`` would use.

    ``settings``: ``(n_clusters, size_threshold)``; default the pipeline's
    (:func:`clustering_settings`).
    """
    from acgate.core import cluster_class

    config = modality_config(config, modality)
    n_clusters, size_threshold = settings or clustering_settings(config, n_classes)
    return cluster_class(
        activations, label=label, positions=positions,
        reducer=config.reducer, n_components=config.n_components,
        n_clusters=n_clusters, random_state=config.seed, size_threshold=size_threshold,
        min_class_size=config.min_class_size,
    )


def _collected_manifest(path: PathLike, config: ScanConfig) -> dict[str, Any]:
    """An activation dataset's manifest, checked to be the whole dataset split as the scan is."""
    from acgate.io.shards import read_manifest

    with reading("activations", path):
        manifest = read_manifest(path)
        if manifest["segment_by"] != config.segment_by:
            raise ValueError(f"the activations are split by {manifest['segment_by']}, the scan "
                             f"segments by {config.segment_by}")
        if not manifest["complete"]:
            first, stop = manifest["rows"]
            raise ValueError(f"the activations are one shard (rows {first}..{stop - 1}), not "
                             "the whole dataset's (collect_activations)")
    return manifest


def _segment_arrays(path: PathLike, segment: int) -> tuple[np.ndarray, np.ndarray, str]:
    """One segment of a collected activation dataset: activations, positions, modality.

    A collected activation dataset covers rows ``0..n-1`` in order, so a row's position in the
    whole table (what :func:`analyze_stage` reads) is its row number.
    """
    from acgate.core import validation
    from acgate.io.shards import read_activation_dataset

    with reading("activations", path):
        table = read_activation_dataset(path, segment)
        activations = validation.check_activations(table.activations)
        positions = validation.check_sample_ids(table.indices, len(activations))
    return activations, positions, activations_modality(table)


#: Rows read at a time when a large class is streamed (~32 MiB of 128-wide float32).
_CLASS_BATCH_ROWS = 65_536


def _class_batches(path: PathLike, label: int) -> Iterator[Any]:
    """One class's rows of an activation dataset, batch by batch, in row order (bounded)."""
    from acgate.io.activations import iter_activation_batches
    from acgate.io.shards import segment_parts

    for part in segment_parts(path, label):
        yield from iter_activation_batches(part, _CLASS_BATCH_ROWS)


def _sampled_clustering(path: PathLike, label: int, n_rows: int, max_rows: int,
                        config: ScanConfig, n_classes: int,
                        settings: tuple[int | str, float] | None = None) -> Any:
    """A large class of an activation dataset: its seeded sample clustered, every row assigned.

    Two streamed passes over the class's parts: one keeps the sampled rows, one assigns every
    row (:func:`acgate.core.sampled.extend_clustering`).
    """
    from acgate.core.sampled import extend_clustering, sample_ordinals

    with reading("activations", path):
        ordinals = sample_ordinals(n_rows, max_rows, config.seed)
    kept_rows, kept_positions, modality, offset = [], [], "image", 0
    with reading("activations", path):
        for batch in _class_batches(path, label):
            modality = activations_modality(batch) if offset == 0 else modality
            take = ordinals[(ordinals >= offset) & (ordinals < offset + len(batch))] - offset
            kept_rows.append(np.array(batch.activations[take]))
            kept_positions.append(batch.indices[take])
            offset += len(batch)
        if offset != n_rows:
            raise ValueError(f"class {label} has {offset} rows in its parts, the manifest "
                             f"{n_rows}")
        sample_activations = np.concatenate(kept_rows)
    del kept_rows  # one copy of the sample, not two
    sample = _cluster(sample_activations, np.concatenate(kept_positions), label, config,
                      n_classes, modality, settings)
    with reading("activations", path):
        return extend_clustering(sample, sample_activations,
                                 ((batch.indices, batch.activations)
                                  for batch in _class_batches(path, label)), n_rows=n_rows,
                                 random_state=config.seed)


def detects_by_class(activations_path: PathLike, config: ScanConfig) -> bool:
    """Whether ``acgate detect`` judges these activations one class at a time.

    It does for a collected activation dataset (the whole dataset, split as ``config``
    segments) with an analysis judged from the clustering alone
    (:func:`acgate.core.by_class.by_class_analyses`, or ``auto``); any other input is read
    whole, as one activations file is.
    """
    from acgate.core.by_class import by_class_analyses
    from acgate.io.shards import is_activation_dataset

    if not is_activation_dataset(activations_path) or (
            config.analysis != "auto" and config.analysis not in by_class_analyses()):
        return False
    try:
        _collected_manifest(activations_path, config)
    except ValueError:
        return False  # read whole, as before (its reader names any problem)
    return True


@dataclass(frozen=True)
class DatasetDetection:
    """What :func:`detect_dataset_stage` produced.

    Attributes:
        result: The detection result (rows in the dataset's row order).
        metadata: The activations' metadata (modality, proxy, layer).
        sampled: The classes clustered from a seeded sample (above ``max_rows`` rows).
    """

    result: DetectionResult
    metadata: Mapping[str, Any]
    sampled: tuple[int, ...]


def detect_dataset_stage(activations_path: PathLike, config: ScanConfig, *,
                         max_rows: int | None = None) -> DatasetDetection:
    """Detect on an activation dataset one class at a time, never holding every activation.

    ``acgate detect`` of an activation dataset folder (the pipeline's collected activations,
    however many shards). Every row's id, label and prediction are held (~24 bytes a row); the
    classes are then clustered one at a time as the pipeline's ``cluster`` task clusters them
    (a class of more than ``max_rows`` rows from a seeded sample, its other rows assigned in a
    streamed pass), judged by an analysis that needs no retrain (``auto``: size + silhouette,
    as :func:`acgate.core.detect` without one) and, when poisoned, redrawn from the class's
    activations, or from its top principal coordinates in two streamed passes when it was too
    large to hold (:mod:`acgate.core.by_class`). The peak is one class: at most ``max_rows``
    activations, or a large class's per-row clustering and coordinates (~300 bytes a row).
    A dataset whose classes all hold at most ``max_rows`` rows gets exactly the flags of
    ``acgate detect`` on one activations file of the same rows.

    Args:
        activations_path: A collected activation dataset folder.
        config: The detector settings (``analysis`` one of
            :func:`acgate.core.by_class.by_class_analyses`, or ``auto``).
        max_rows: The largest class held whole; ``None``:
            :data:`acgate.core.sampled.MAX_CLUSTER_ROWS`.

    Returns:
        The :class:`DatasetDetection`.

    Raises:
        StageInputError: Bad activations (not a complete activation dataset, bad columns,
            activations that carry no information).
        ValueError: An analysis that needs every row or a retrain.
    """
    from acgate.core import validation
    from acgate.core.by_class import analyze_by_class, principal_coordinates
    from acgate.core.detect import resolve_n_clusters
    from acgate.core.sampled import MAX_CLUSTER_ROWS
    from acgate.io.shards import read_dataset_row_columns

    max_rows = MAX_CLUSTER_ROWS if max_rows is None else max_rows
    manifest = _collected_manifest(activations_path, config)
    with reading("activations", activations_path):
        columns = read_dataset_row_columns(activations_path)
        labels = validation.check_labels(columns.labels, len(columns.indices))
        validation.check_class_count(labels, name=f"{activations_path}: column 'label'")
        predictions = None if columns.predictions is None else validation.check_labels(
            columns.predictions, len(labels), name="predictions")
        segments = _segments_by(config, labels, predictions)
    config = modality_config(config, str(columns.metadata.get("modality", "image")))
    resolved, thresholds = _resolved_settings(config, config.analysis, None)
    n_classes = len(np.unique(labels))
    n_clusters = resolve_n_clusters(config.n_clusters, resolved, n_classes)
    held: dict[str, Any] = {"label": None, "rows": None, "varies": False}
    sampled: list[int] = []

    def clusterings() -> Iterator[Any]:
        for label in sorted(int(s) for s in manifest["segments"]):
            n_rows = int(manifest["segments"][str(label)])
            held.update(label=None, rows=None)  # the previous class's rows go
            if n_rows > max_rows:
                sampled.append(label)
                clustering = _sampled_clustering(activations_path, label, n_rows, max_rows,
                                                 config, n_classes, (n_clusters, thresholds.size))
                varies = clustering.reduced is not None and np.ptp(clustering.reduced, 0).any()
            else:
                rows, positions, modality = _segment_arrays(activations_path, label)
                clustering = _cluster(rows, positions, label, config, n_classes, modality,
                                      (n_clusters, thresholds.size))
                held.update(label=label, rows=rows)
                varies = len(rows) > 1 and np.ptp(rows, axis=0).any()
            held["varies"] = held["varies"] or bool(varies)
            yield clustering
            del clustering  # judged: not held while the next class is clustered

    def class_rows(clustering: Any) -> np.ndarray:
        if held["label"] == clustering.label:
            return held["rows"]
        with reading("activations", activations_path):
            return principal_coordinates(
                lambda: (batch.activations
                         for batch in _class_batches(activations_path, clustering.label)),
                config.redraw_components)

    result = analyze_by_class(
        clusterings(), labels, sample_ids=columns.indices, segments=segments,
        class_rows=class_rows, analysis=resolved, thresholds=thresholds,
        random_state=config.seed, redraw_components=config.redraw_components,
        params=_detector_params(config, resolved, thresholds, n_clusters))
    if not held["varies"]:
        raise StageInputError(
            f"input artifact 'activations' ({activations_path}): the activations carry no "
            "information (identical within every class), so no class can be judged. The "
            "model or layer is dead, untrained or the wrong one")
    return DatasetDetection(result=result, metadata=dict(columns.metadata),
                            sampled=tuple(sampled))


def write_clustering(clustering: Any, path: PathLike) -> Path:
    """Write a :class:`~acgate.core.ClassClustering` as Parquet (atomically).

    Columns: ``position`` (int64), ``cluster`` (int64) and, unless the class was skipped,
    ``reduced`` (list of floats at the reducer's precision). The label, silhouette, number of
    clusters, skip reason, warnings and seconds are JSON in the ``acgate.clustering`` entry.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from acgate.io.atomic import atomic_write_path

    columns: dict[str, Any] = {
        "position": pa.array(np.asarray(clustering.positions, dtype=np.int64)),
        "cluster": pa.array(np.asarray(clustering.clusters, dtype=np.int64)),
    }
    if clustering.reduced is not None:
        reduced = np.ascontiguousarray(clustering.reduced)
        width = reduced.shape[1] if reduced.ndim == 2 else 0
        columns["reduced"] = pa.FixedSizeListArray.from_arrays(
            pa.array(reduced.reshape(-1)), width) if width else pa.array(
            [[] for _ in range(len(reduced))], type=pa.list_(pa.float64()))
    candidates = None
    if clustering.candidates is not None:
        # Which candidates each row belongs to (a row can sit in a candidate and in a stable
        # sub-cluster inside it); the candidates' k and stability go to the metadata.
        # Built from arrays, not a Python list a row: a sampled class has millions of rows.
        rows = np.concatenate([np.asarray(c.members, dtype=np.int64)
                               for c in clustering.candidates] or [np.empty(0, np.int64)])
        owners = np.concatenate([np.full(len(c.members), index, dtype=np.int32)
                                 for index, c in enumerate(clustering.candidates)]
                                or [np.empty(0, np.int32)])
        order = np.lexsort((owners, rows))  # by row, then candidate: as appended before
        offsets = np.zeros(len(clustering.positions) + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=len(clustering.positions)), out=offsets[1:])
        columns["candidates"] = pa.ListArray.from_arrays(pa.array(offsets),
                                                         pa.array(owners[order]))
        candidates = [c.attributes() for c in clustering.candidates]
    meta = {
        "kind": CLUSTERING_KIND, "label": int(clustering.label),
        "n_clusters": int(clustering.n_clusters),
        "silhouette": clustering.silhouette, "skipped_reason": clustering.skipped_reason,
        "warnings": list(clustering.warnings), "seconds": float(clustering.seconds),
        "candidates": candidates,
    }
    table = pa.table(columns).replace_schema_metadata(
        {_CLUSTERING_META: json.dumps(meta, allow_nan=True)})
    destination = Path(path)
    with atomic_write_path(destination) as temp:
        pq.write_table(table, temp)
    return destination


def read_clustering(path: PathLike, *, artifact: str = "clusterings") -> Any:
    """Read a clustering written by :func:`write_clustering`.

    Raises:
        StageInputError: Missing file, not Parquet, no ``acgate.clustering`` entry, a missing
            column, or lengths that disagree (the message names the artifact and column).
    """
    from acgate.core import ClassClustering
    from acgate.io.schema import integer_column, open_parquet, require_columns

    with reading(artifact, path):
        parquet = open_parquet(path)
        schema = parquet.schema_arrow
        raw = (schema.metadata or {}).get(_CLUSTERING_META.encode())
        if raw is None:
            raise ValueError(f"{path} is not a clustering file (no {_CLUSTERING_META!r} "
                             "metadata entry)")
        meta = json.loads(raw)
        if meta.get("kind") != CLUSTERING_KIND:
            raise ValueError(f"{path}: clustering kind {meta.get('kind')!r}, expected "
                             f"{CLUSTERING_KIND!r}")
        require_columns(path, schema, _CLUSTERING_COLUMNS)
        table = parquet.read()
        positions = integer_column(path, table.column("position"), "position")
        clusters = integer_column(path, table.column("cluster"), "cluster", non_negative=False)
        reduced = None
        if meta["skipped_reason"] is None:
            require_columns(path, schema, ("reduced",))
            column = table.column("reduced").combine_chunks()
            flat = column.flatten().to_numpy(zero_copy_only=False)
            reduced = np.asarray(flat).reshape(len(column), -1)
            if not np.isfinite(reduced).all():
                raise ValueError(f"{path}: column 'reduced' has NaN or inf values")
        candidates = _read_candidates(path, schema, table, meta.get("candidates"))
    return ClassClustering(
        label=int(meta["label"]), positions=positions, clusters=clusters,
        n_clusters=int(meta["n_clusters"]), silhouette=meta["silhouette"], reduced=reduced,
        skipped_reason=meta["skipped_reason"], warnings=tuple(meta["warnings"]),
        seconds=float(meta["seconds"]), candidates=candidates,
    )


def _read_candidates(path: PathLike, schema: Any, table: Any,
                     described: Any) -> tuple[Any, ...] | None:
    """The candidate clusters of a clustering file (``None`` when it records none)."""
    from acgate.core.clustering import CandidateCluster
    from acgate.io.schema import require_columns

    if described is None:
        return None
    if not isinstance(described, list):
        raise ValueError(f"{path}: metadata 'candidates' must be a list, got "
                         f"{type(described).__name__}")
    require_columns(path, schema, ("candidates",))
    column = table.column("candidates").combine_chunks()
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    owners = np.repeat(np.arange(len(column)), lengths)
    indices = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(described)):
        raise ValueError(f"{path}: column 'candidates' names candidate "
                         f"{int(indices.max())}, but the metadata describes {len(described)}")
    return tuple(CandidateCluster.from_attributes(owners[indices == index], entry)
                 for index, entry in enumerate(described))


# ----------------------------------------------------------------------------------- analyze


def analyze_clusterings(table_arrays: _Arrays, clusterings: Sequence[Any], config: ScanConfig,
                        *, retrain_and_predict: Any = None) -> DetectionResult:
    """Run :func:`acgate.core.analyze` with the thresholds and params ``detect`` would use."""
    from acgate.core import analyze
    from acgate.core.detect import resolve_n_clusters

    resolved, thresholds = _resolved_settings(config, config.analysis, retrain_and_predict)
    params = _detector_params(config, resolved, thresholds, resolve_n_clusters(
        config.n_clusters, resolved, len(np.unique(table_arrays.labels))))
    ordered = sorted(clusterings, key=lambda c: c.label)
    return analyze(
        table_arrays.activations, table_arrays.labels, ordered,
        sample_ids=table_arrays.sample_ids, segments=table_arrays.segments, analysis=resolved,
        thresholds=thresholds, retrain_and_predict=retrain_and_predict,
        predictions=table_arrays.predictions, params=params, random_state=config.seed,
        redraw_components=config.redraw_components,
    )


def _detector_params(config: ScanConfig, analysis: str, thresholds: Any,
                     n_clusters: int | str) -> dict[str, Any]:
    """The parameters a result records, as :func:`acgate.core.detect` records them."""
    from acgate.core.detect import detector_params

    return detector_params(
        analysis, thresholds, reducer=config.reducer, n_components=config.n_components,
        n_clusters=n_clusters, segment_by=config.segment_by,
        min_class_size=config.min_class_size, random_state=config.seed,
        redraw_components=config.redraw_components)


@dataclass(frozen=True)
class AnalyzeOutcome:
    """What :func:`analyze_stage` produced.

    Attributes:
        result: The detection result.
        files: ``samples``, ``classes``, ``flagged``, ``report`` (JSON), ``scan`` and
            ``report.html`` paths (``report.html`` only with a report; ``run_scan`` reports the
            same names).
        gx_results: The Great Expectations results of the dataset, activations and classes
            suites (logged to MLflow).
        scan_info: The content of ``scan.json``.
    """

    result: DetectionResult
    files: Mapping[str, Path]
    gx_results: Mapping[str, Any]
    scan_info: Mapping[str, Any]


def analyze_stage(
    activations_path: PathLike,
    dataset_path: PathLike,
    clustering_paths: Sequence[PathLike],
    out_dir: PathLike,
    config: ScanConfig,
    *,
    dataset_uri: str | None = None,
    dataset_sha256: str | None = None,
    dataset: Any = None,
    report: bool = True,
    scan_info: Mapping[str, Any] | None = None,
    validated: Mapping[str, Any] | None = None,
    scan_folder: PathLike | None = None,
) -> AnalyzeOutcome:
    """Judge every class, validate, and write the result files, ``scan.json`` and the report.

    ``scan.json``'s ``"proxy"`` (and the report's "Proxy" section) is how the proxy trained,
    as the activations carry it from ``model.json`` (:func:`extract_stage`); absent for the
    user's own model.

    Args:
        activations_path: The activations Parquet file.
        dataset_path: The dataset (for the exclusionary-reclassification retrain and sprites).
        clustering_paths: One clustering file per class (from :func:`cluster_stage`).
        out_dir: Folder for ``samples.parquet``, ``classes.parquet``, ``flagged.parquet``,
            ``report.json``, ``scan.json``, ``report.html`` and ``plots/``.
        config: The run's config (same as the other stages').
        dataset_uri: The dataset's original URI (recorded; default ``dataset_path``).
        dataset_sha256: SHA-256 of the dataset's bytes (default: computed).
        dataset: The dataset already read from ``dataset_path``.
        report: Write the HTML report.
        scan_info: More entries for ``scan.json`` (e.g. timings); an activation dataset
            (the pipeline's sharded extraction) adds ``extraction_shards``.
        validated: The ``"dataset"`` and ``"activations"`` suites' results, when this process
            already ran them on these very files (``run_scan``); a suite not given is run
            here (a pipeline step checks its own input artifacts).
        scan_folder: The output folder as the user names it (``out_dir`` may be a staging
            folder), for the report's next command; ``None``: a placeholder there.

    Returns:
        The :class:`AnalyzeOutcome`.
    """
    from acgate.io.shards import is_activation_dataset, read_manifest
    from acgate.scan import make_retrain, validate_dataset_file

    table, arrays = _validated_arrays(activations_path, config)
    if is_activation_dataset(activations_path):  # the pipeline's: say how it was extracted
        scan_info = {**(scan_info or {}),
                     "extraction_shards": len(read_manifest(activations_path)["shards"])}
    modality = activations_modality(table)
    config = modality_config(config, modality)
    clusterings = [read_clustering(path) for path in clustering_paths]
    _check_clusterings(clusterings, arrays, clustering_paths)
    validated = dict(validated or {})
    if "dataset" not in validated:
        validated["dataset"] = validate_dataset_file(dataset_path, modality=modality,
                                                     max_decoded_bytes=config.max_decoded_bytes,
                                                     columns=config.columns)
    if dataset is None:
        dataset = read_stage_dataset(dataset_path, config, modality)
    if len(dataset) != len(arrays.labels):
        raise StageInputError(
            f"input artifact 'dataset' ({dataset_path}) has {len(dataset)} rows but "
            f"'activations' ({activations_path}) has {len(arrays.labels)}")
    if "activations" not in validated:
        validated["activations"] = validate_activations_table(arrays.sample_ids, arrays.labels,
                                                              arrays.activations, len(dataset))
    retrain = make_retrain(dataset, config) if config.analysis in ("auto", "exre") else None
    result = analyze_clusterings(arrays, clusterings, config, retrain_and_predict=retrain)
    text_info = None
    if modality == "text" and not config.model_path:
        from acgate.scan import text_scan_info, text_vocabulary

        text_info = text_scan_info(dataset, config, text_vocabulary(dataset, config.max_tokens))
    return _write_outcome(result, table, arrays, dataset, config, out_dir,
                          dataset_path=dataset_path, dataset_uri=dataset_uri,
                          dataset_sha256=dataset_sha256, validated=validated,
                          scan_info=scan_info, text_info=text_info, report=report,
                          scan_folder=scan_folder)


def _write_outcome(result: DetectionResult, table: Any, arrays: _Arrays, dataset: Any,
                   config: ScanConfig, out_dir: PathLike, *, dataset_path: PathLike,
                   dataset_uri: str | None, dataset_sha256: str | None,
                   validated: Mapping[str, Any], scan_info: Mapping[str, Any] | None,
                   text_info: Mapping[str, Any] | None, report: bool,
                   scan_folder: PathLike | None) -> AnalyzeOutcome:
    """A judged scan's files: the result tables, ``scan.json`` and the report (both analyses)."""
    from acgate.io.datasets import dataset_fingerprint
    from acgate.io.digest import file_sha256
    from acgate.io.results import write_result

    gx_results = {"dataset": validated["dataset"].to_dict(),
                  "activations": validated["activations"].to_dict(),
                  "classes": _validate_classes(result).to_dict()}
    folder = Path(out_dir)
    identity = {"fingerprint": dataset_fingerprint(dataset),
                "dataset_sha256": dataset_sha256 or file_sha256(dataset_path)}
    files = dict(write_result(result, folder, samples_metadata=identity, ids=dataset.ids,
                              id_column=dataset.column_names.id,
                              label_names=dataset.label_names))
    info = {"dataset": dataset_uri or str(dataset_path), **identity,
            "modality": activations_modality(table), "verdict": result.verdict,
            "config": config.to_dict()}
    if dataset.label_names is not None:
        # The original label of each class (class c is label_names[c]), as the outputs name it.
        info["label_names"] = list(dataset.label_names)
    proxy = table.metadata.get("proxy")
    if isinstance(proxy, Mapping):
        info["proxy"] = dict(proxy)  # an incremental scan's: the baseline's proxy
    info.update(scan_info or {})
    if text_info is not None:
        info["text"] = text_info
    files["scan"] = folder / "scan.json"
    _write_json(files["scan"], info)
    if report:
        files["report.html"] = _write_report(result, folder, arrays, dataset,
                                             dataset_uri or Path(dataset_path).name,
                                             info, gx_results, scan_folder)
    return AnalyzeOutcome(result=result, files=files, gx_results=gx_results, scan_info=info)


@dataclass(frozen=True)
class Baseline:
    """An accepted scan, as an incremental scan uses it.

    Attributes:
        folder: The scan's output folder, or a baseline folder (:func:`publish_baseline_stage`);
            either holds the proxy (``model.pt`` + ``model.json``).
        reference: The reference of its kept rows (:func:`acgate.core.incremental.build_reference`).
        info: Its ``scan.json``.
        spec: Its proxy's ``model.json`` (input shape, modality).
        source: Where it was read from, as the user named it (a path, a URI, ``runs:/`` or
            ``models:/``); ``""``: ``folder``.
        resolved: What ``source`` named when it was read (a ``models:/`` URI's
            ``runs:/<scan run>/baseline``); ``""``: ``source`` itself.
        model: ``(name, version)`` of the registered model version a ``models:/`` ``source``
            named when it was read (an alias moves later); ``None`` otherwise.
    """

    folder: Path
    reference: Any
    info: Mapping[str, Any]
    spec: Mapping[str, Any]
    source: str = ""
    resolved: str = ""
    model: tuple[str, str] | None = None

    @property
    def named(self) -> str:
        """The baseline as the user named it (its URI), else its resolved folder."""
        return self.source or str(self.folder.resolve())

    @property
    def record(self) -> dict[str, Any]:
        """What a scan judged against it records (``scan.json``'s ``"baseline"``)."""
        return {"folder": self.named, **({"resolved": self.resolved} if self.resolved else {}),
                **({"model": self.model[0], "model_version": self.model[1]}
                   if self.model else {}),
                "dataset": self.info.get("dataset"),
                "dataset_sha256": self.info.get("dataset_sha256")}


#: A baseline folder's reference rows: an activations file (schema ``activations/1``) of the
#: seeded per-class sample of the accepted scan's kept rows that an incremental scan compares
#: against (:func:`acgate.core.incremental.reference_rows`), so the folder stays small however
#: large the accepted data is.
REFERENCE_FILE = "reference.parquet"


def _accepted_scan_info(where: str, info: Mapping[str, Any]) -> None:
    """Refuse a scan that cannot be a baseline: a partition's scan, or not clean."""
    if info.get("mode") == "incremental" or "shift_reason" in info:
        raise ValueError(f"baseline {where!r} is the scan of a partition "
                         f"({'incremental' if info.get('mode') == 'incremental' else 'a fallback'}"
                         f"); give the full scan of the accepted data")
    if info.get("verdict") != "clean":
        raise ValueError(f"baseline {where!r} has verdict {info.get('verdict')!r}; an "
                         f"incremental scan needs an accepted (clean) baseline: scan the "
                         f"repaired data in full and use that scan")


def _scan_seed(info: Mapping[str, Any]) -> int:
    config = info.get("config") if isinstance(info.get("config"), Mapping) else {}
    return int(config.get("seed") or 0)


def read_baseline(baseline_dir: PathLike, *, source: str = "", resolved: str = "",
                  model: tuple[str, str] | None = None) -> Baseline:
    """An accepted baseline, read once (its reference built from its kept rows).

    ``baseline_dir`` is the output folder of a clean full scan (``acgate scan``: its
    ``activations.parquet`` and ``samples.parquet`` give the reference) or a baseline folder
    written by :func:`publish_baseline_stage` (the pipeline's; its ``reference.parquet`` holds
    just the reference's rows, checked against the digest its ``scan.json`` records). Both give
    the same reference for the same scan.

    Args:
        baseline_dir: The folder.
        source: How the user named the baseline (a URI fetched into ``baseline_dir``): quoted
            in errors and recorded; ``""``: the folder.
        resolved: What ``source`` named when it was fetched (:func:`resolve_baseline`), recorded
            when it differs; ``""``: ``source`` itself.
        model: ``(name, version)`` a ``models:/`` ``source`` named then, recorded.

    Raises:
        ValueError: The folder is not a complete full scan with its proxy, or its verdict is not
            ``clean`` (a poisoned baseline's proxy learned the trigger, so new poison with the
            same trigger would look legitimate against it).
    """
    from acgate.core.incremental import build_reference
    from acgate.io.activations import read_activations
    from acgate.io.digest import file_sha256
    from acgate.io.results import read_json_object, read_samples
    from acgate.scan import VOCABULARY_FILE

    folder = Path(baseline_dir)
    where = source or str(folder)
    if not (folder / "scan.json").is_file():
        raise ValueError(f"baseline {where!r} is not an acgate scan folder (no scan.json)")
    info = read_json_object(folder / "scan.json", "a scan.json")
    _accepted_scan_info(where, info)
    # Only a folder publish_baseline_stage wrote (it records its reference) is read packed.
    published = info.get("published_reference")
    packed = isinstance(published, Mapping)
    rows = (REFERENCE_FILE,) if packed else ("samples.parquet", "activations.parquet")
    needed = [*rows, MODEL_WEIGHTS_FILE, MODEL_SPEC_FILE]
    if info.get("modality") == "text":
        needed.append(VOCABULARY_FILE)  # without it the proxy would read other token ids
    missing = [name for name in needed if not (folder / name).is_file()]
    if not packed and (folder / REFERENCE_FILE).is_file() and missing:
        raise ValueError(f"baseline {where!r} holds a {REFERENCE_FILE} its scan.json does not "
                         f"record (no 'published_reference'): publish the baseline again")
    if missing:
        raise ValueError(f"baseline {where!r} is not a complete acgate scan folder with its "
                         f"proxy: missing {missing} (a scan with --model has no proxy to reuse)")
    with reading("baseline", where):
        spec = read_json_object(folder / MODEL_SPEC_FILE, "a model.json")
        if packed:  # every row is a kept row, at most the reference's share of each class
            digest = file_sha256(folder / REFERENCE_FILE)
            if digest != published.get("sha256"):
                raise ValueError(f"{REFERENCE_FILE} has SHA-256 {digest}, but scan.json records "
                                 f"{published.get('sha256')!r}: not this scan's reference")
            table = read_activations(folder / REFERENCE_FILE)
            keep = None
        else:
            table = read_activations(folder / "activations.parquet")
            samples = read_samples(folder / "samples.parquet")
            if len(samples) != len(table.labels):
                raise ValueError(f"baseline {where!r}: samples.parquet has {len(samples)} "
                                 f"rows, activations.parquet {len(table.labels)}")
            keep = ~samples["is_poison"].to_numpy(bool)
        reference = build_reference(table.activations, table.labels, keep=keep,
                                    predictions=table.predictions, random_state=_scan_seed(info))
    return Baseline(folder=folder, reference=reference, info=info, spec=spec, source=source,
                    resolved=resolved, model=model)


def publish_baseline_stage(scan_path: PathLike, samples_path: PathLike,
                           activations_path: PathLike, model_dir: PathLike,
                           out_dir: PathLike, *, tracking_uri: str | None = None,
                           scan_run_id: str | None = None) -> dict[str, Any]:
    """Write a clean full scan's baseline folder, for incremental scans of later partitions.

    The folder holds the proxy (``model.pt``, ``model.json``, a text proxy's vocabulary), the
    scan's ``scan.json`` and :data:`REFERENCE_FILE`: only the rows the incremental reference
    samples (at most :data:`acgate.core.incremental.REFERENCE_ROWS_PER_CLASS` kept rows a
    class), read one class's parts at a time from an activation dataset, so neither the folder
    nor this step's memory grows with the accepted data. :func:`read_baseline` gives the same
    reference from it as from the scan's whole activations.

    The folder is written through :func:`acgate.io.output.output_folder`: staged and committed
    at once (a failure leaves no folder, or the previous one whole), never into a folder
    holding files acgate did not write. ``scan.json`` records the reference file's SHA-256 and
    rows (``published_reference``), which :func:`read_baseline` checks.

    Args:
        scan_path: The scan's ``scan.json`` (the ``analyze`` step's ``scan``).
        samples_path: The scan's per-sample result (its ``samples``).
        activations_path: The activations the scan judged (an activation dataset folder or
            an activations file).
        model_dir: The proxy folder the activations came from (``train_proxy``'s ``model``).
        out_dir: The baseline folder to write (created; files written atomically).
        tracking_uri: With ``scan_run_id``: also log the folder as the artifacts ``baseline/``
            of the scan's MLflow run (:func:`acgate.mlflow.baseline.log_baseline`).
        scan_run_id: The scan's MLflow run; ``None``/``""``: not logged.

    Returns:
        What was written: ``{"rows", "reference_rows", "classes", "uri"}`` (``uri``:
        ``runs:/<scan run>/baseline`` when logged, else ``""``).

    Raises:
        ValueError: The scan is not a clean full scan, or the artifacts do not belong together.
    """
    from acgate.core.incremental import NEIGHBOURS, reference_rows
    from acgate.io.activations import ActivationTable, read_activations, write_activations
    from acgate.io.digest import file_sha256
    from acgate.io.output import output_folder
    from acgate.io.results import read_json_object, read_samples
    from acgate.io.shards import is_activation_dataset, read_activation_dataset, read_manifest

    with reading("scan", scan_path):
        info = read_json_object(Path(scan_path), "a scan.json")
    _accepted_scan_info(str(scan_path), info)
    with reading("samples", samples_path):
        samples = read_samples(samples_path)
    order = samples["index"].to_numpy(np.int64)
    labels = np.empty(len(order), np.int64)
    keep = np.zeros(len(order), bool)
    if len(order) and (order.min() < 0 or order.max() >= len(order)
                       or len(np.unique(order)) != len(order)):
        raise StageInputError(f"input artifact 'samples' ({samples_path}) does not number its "
                              f"rows 0..{len(order) - 1}")
    labels[order] = samples["label"].to_numpy(np.int64)
    keep[order] = ~samples["is_poison"].to_numpy(bool)
    chosen = reference_rows(labels, keep=keep, random_state=_scan_seed(info))
    if len(chosen) <= NEIGHBOURS:
        raise StageInputError(f"input artifact 'samples' ({samples_path}) has {len(chosen)} "
                              f"kept rows; an incremental baseline needs more than {NEIGHBOURS}")
    wanted = np.zeros(len(labels), bool)
    wanted[chosen] = True
    pieces = []
    with reading("activations", activations_path):
        if is_activation_dataset(activations_path):
            # One class's parts at a time, keeping only the reference's rows of it.
            segments = read_manifest(activations_path)["segments"]
            tables = (read_activation_dataset(activations_path, int(s)) for s in segments)
        else:
            tables = iter([read_activations(activations_path)])
        for table in tables:
            if len(table) and table.indices.max() >= len(labels):
                raise StageInputError(f"input artifact 'activations' ({activations_path}) has "
                                      f"row {int(table.indices.max())}; 'samples' has "
                                      f"{len(labels)} rows")
            if not np.array_equal(table.labels, labels[table.indices]):
                raise StageInputError(f"input artifact 'activations' ({activations_path}) does "
                                      f"not label its rows as 'samples' ({samples_path}) does")
            mine = wanted[table.indices]
            pieces.append(ActivationTable(
                indices=table.indices[mine], labels=table.labels[mine],
                predictions=None if table.predictions is None else table.predictions[mine],
                activations=table.activations[mine], metadata=table.metadata))
    indices = np.concatenate([p.indices for p in pieces])
    if not np.array_equal(np.sort(indices), np.sort(chosen)):
        raise StageInputError(f"input artifact 'activations' ({activations_path}) lacks rows of "
                              f"'samples' ({samples_path})")
    position = np.empty(len(labels), np.int64)
    position[indices] = np.arange(len(indices))
    at = position[chosen]  # the reference's order: by class, ascending rows
    predictions = (None if any(p.predictions is None for p in pieces) else
                   np.concatenate([p.predictions for p in pieces])[at])
    reference = ActivationTable(
        indices=indices[at], labels=np.concatenate([p.labels for p in pieces])[at],
        predictions=predictions,
        activations=np.concatenate([p.activations for p in pieces])[at],
        metadata=pieces[0].metadata if pieces else {})
    folder = Path(out_dir)
    inputs = (scan_path, samples_path, activations_path, model_dir)
    with output_folder(folder, command="publish-baseline", inputs=inputs,
                       name="baseline folder") as output:
        copy_proxy(model_dir, output.staging)
        write_activations(output.staging / REFERENCE_FILE, reference)
        recorded = {"sha256": file_sha256(output.staging / REFERENCE_FILE),
                    "rows": int(len(chosen))}
        _write_json(output.staging / "scan.json", {**info, "published_reference": recorded})
    uri = ""
    if tracking_uri and scan_run_id:
        from acgate.mlflow.baseline import log_baseline

        uri = log_baseline(scan_run_id, folder, tracking_uri=tracking_uri)
    return {"rows": int(len(labels)), "reference_rows": int(len(chosen)),
            "classes": sorted(int(c) for c in np.unique(reference.labels)), "uri": uri}


def incremental_scan_stage(dataset_uri: str, baseline_uri: str, work_dir: PathLike,
                           config: ScanConfig, *, dataset_sha256: str | None = None,
                           tracking_uri: str | None = None, fallback: bool = True
                           ) -> tuple[Any, Path]:
    """Stage a new partition and scan it against a baseline, as ``acgate scan --baseline`` does.

    :func:`acgate.scan.run_incremental_scan`: the baseline's proxy gives the partition's
    activations, judged against the baseline's reference; a partition that moved too far is
    scanned in full (``fallback``). The output folder holds the proxy that judged the rows.

    Args:
        dataset_uri: The partition (a path or a URI :mod:`pyarrow.fs` opens).
        baseline_uri: The accepted scan (:func:`baseline_folder`: a folder, a URI,
            ``runs:/<scan run>/baseline`` or ``models:/<name>@<alias>``).
        work_dir: A folder for the staged partition (``dataset.parquet``) and the scan
            (``scan/``).
        config: The run's settings (the detector's are used by a full fallback only).
        dataset_sha256: The partition's digest (``dataset_digest``); ``None``: not checked.
        tracking_uri: Log the scan as an MLflow run; ``None``/``""``: no tracking.
        fallback: Scan in full when the partition has shifted.

    Returns:
        The :class:`acgate.scan.ScanOutcome` and the staged partition's path.

    Raises:
        StageInputError: A partition that cannot be read or scanned.
        ValueError: A baseline that is not an accepted full scan (nothing is written).
        acgate.errors.InfrastructureError: The tracking store failed (also after the verdict).
    """
    from acgate.errors import InfrastructureError
    from acgate.scan import run_incremental_scan

    work = Path(work_dir)
    staged = stage_dataset(dataset_uri, work / "dataset.parquet", config.columns)
    check_dataset_digest(staged, dataset_sha256)
    outcome = run_incremental_scan(staged, work / "scan", baseline_uri, config,
                                   tracking_uri=tracking_uri or None, fallback=fallback,
                                   dataset_uri=dataset_uri)
    if outcome.tracking_error is not None:
        raise InfrastructureError(f"verdict {outcome.result.verdict}, but logging it failed: "
                                  f"{outcome.tracking_error}")
    return outcome, staged


def judged_baseline(outcome: Any) -> str:
    """The baseline an incremental scan (or its fallback) was judged against, pinned.

    A ``models:/`` URI's resolved ``runs:/<scan run>/baseline`` (the alias may move before a
    later step reads it), else the baseline as ``scan.json`` records it.

    Args:
        outcome: The :class:`acgate.scan.ScanOutcome` of :func:`incremental_scan_stage`.
    """
    recorded = json.loads(Path(outcome.files["scan"]).read_text(encoding="utf-8"))["baseline"]
    return str(recorded.get("resolved") or recorded["folder"])


def copy_proxy(model_dir: PathLike, out_dir: PathLike) -> list[Path]:
    """Copy a proxy folder's files (weights, spec, a text proxy's vocabulary) into ``out_dir``.

    Returns:
        The files written.
    """
    from acgate.scan import VOCABULARY_FILE

    model, folder = Path(model_dir), Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = [MODEL_WEIGHTS_FILE, MODEL_SPEC_FILE]
    if (model / VOCABULARY_FILE).is_file():
        names.append(VOCABULARY_FILE)
    with reading("model", model):
        return [copy_file(model / name, folder / name) for name in names]


def is_local_baseline(uri: str) -> bool:
    """Whether the baseline ``uri`` is a folder on this machine (a path or ``file://``)."""
    return ("://" not in uri.removeprefix("file://")
            and not uri.startswith(("runs:/", "models:/")))


def resolve_baseline(uri: str, *, tracking_uri: str | None = None
                     ) -> tuple[str, tuple[str, str] | None]:
    """Where the baseline ``uri`` is fetched from: ``uri``, or the baseline a ``models:/`` names.

    A registered version's baseline is the one its clearing scan run holds
    (:func:`acgate.mlflow.baseline.baseline_of_model`: ``runs:/<scan run>/baseline``).

    Args:
        uri: The baseline as the user named it.
        tracking_uri: The MLflow tracking URI (needed for ``models:/``).

    Returns:
        ``(where, model)``: the URI to fetch, and for a ``models:/`` URI the ``(name,
        version)`` it named when resolved (an alias moves later), else ``None``.

    Raises:
        ValueError: A ``models:/`` URI that names no promoted version, or without a tracking URI.
        acgate.errors.InfrastructureError: The tracking store cannot be reached.
    """
    if not uri.startswith("models:/"):
        return uri, None
    from acgate.mlflow.baseline import baseline_of_model

    resolved, name, version = baseline_of_model(uri, tracking_uri=tracking_uri)
    logger.info("baseline %s: %s version %s, cleared by the scan whose baseline is %s", uri,
                name, version, resolved)
    return resolved, (name, version)


@contextlib.contextmanager
def baseline_folder(uri: str, *, tracking_uri: str | None = None) -> Iterator[Path]:
    """The baseline named by ``uri`` as a local folder, for as long as the block runs.

    A local folder (a path or ``file://``) is used where it is. ``runs:/<run id>/<path>`` (the
    pipeline's published baseline, :func:`publish_baseline_stage`) is downloaded through
    ``tracking_uri``; any URI :mod:`pyarrow.fs` opens (``s3://``, ``gs://``, ``hdfs://``) is
    copied. Either copy goes to a temporary folder removed after the block.

    Raises:
        ValueError: A ``runs:/`` URI without a tracking URI, or a baseline that is not there.
        acgate.errors.InfrastructureError: The tracking store cannot be reached.
    """
    if is_local_baseline(uri):
        yield Path(uri.removeprefix("file://"))
        return
    with tempfile.TemporaryDirectory(prefix="acgate-baseline-") as work:
        if uri.startswith("runs:/"):
            from acgate.mlflow.baseline import download_baseline

            yield download_baseline(uri, work, tracking_uri=tracking_uri)
            return
        import pyarrow.fs as pafs

        local = Path(work) / "baseline"
        with reading("baseline", uri):
            filesystem, remote = pafs.FileSystem.from_uri(uri)
            if filesystem.get_file_info(remote).type != pafs.FileType.Directory:
                raise ValueError(f"baseline {uri!r} is not a folder")
            pafs.copy_files(remote, str(local), source_filesystem=filesystem)
        yield local


def check_partition(baseline: Baseline, dataset: Any, modality: str, config: ScanConfig) -> None:
    """Refuse a partition the baseline's proxy cannot read as it read the accepted data.

    Raises:
        ValueError: Another modality, another image shape, or another ``--layer``.
    """
    where = f"baseline {baseline.named!r}"
    if modality != baseline.info.get("modality", "image"):
        raise ValueError(f"the partition is {modality!r} data, {where} scanned "
                         f"{baseline.info.get('modality')!r} data")
    if modality == "image":
        shape = [int(v) for v in dataset.images.shape[1:]]
        if shape != list(baseline.spec.get("input_shape", [])):
            raise ValueError(f"the partition's images are {shape} (channels, height, width), "
                             f"{where}'s proxy reads {baseline.spec.get('input_shape')}")
    names = baseline.info.get("label_names")
    if names != (None if dataset.label_names is None else list(dataset.label_names)):
        raise ValueError(f"the partition's classes {dataset.label_names} are not {where}'s "
                         f"{names}: mapped labels must name the same classes in both (a "
                         f"partition of string labels needs every class of the baseline)")
    used = (baseline.info.get("config") or {}).get("layer")
    if config.layer != used:
        raise ValueError(f"--layer {config.layer!r} differs from {where}'s layer {used!r}: "
                         f"the reference holds that layer's activations")


def incremental_stage(activations_path: PathLike, baseline: Baseline,
                      dataset_path: PathLike, out_dir: PathLike, config: ScanConfig, *,
                      dataset: Any, dataset_sha256: str, validated: Mapping[str, Any],
                      report: bool = True, scan_info: Mapping[str, Any] | None = None,
                      scan_folder: PathLike | None = None,
                      stop_if_shifted: Callable[[str], None] | None = None,
                      dataset_uri: str | None = None) -> AnalyzeOutcome:
    """Judge a new partition's activations (from the baseline's proxy) against the baseline.

    Writes the same files as :func:`analyze_stage`; ``scan.json`` records ``"mode":
    "incremental"``, the baseline, and whether the partition moved too far for this mode
    (``shifted``, ``shift_reason``). ``stop_if_shifted`` is called with the reason before
    anything is written (the caller raises to scan in full instead). ``dataset_uri``: the
    partition as the user named it (recorded; default ``dataset_path``).
    """
    from acgate.core.incremental import judge_partition

    table, arrays = _validated_arrays(activations_path, config)
    result = judge_partition(baseline.reference, arrays.activations, arrays.labels,
                             predictions=arrays.predictions, sample_ids=arrays.sample_ids)
    shift_reason = result.info.extra.get("shift_reason")
    if shift_reason is not None and stop_if_shifted is not None:
        stop_if_shifted(shift_reason)
    mode = {"mode": "incremental", "baseline": baseline.record,
            "shifted": shift_reason is not None, "shift_reason": shift_reason}
    return _write_outcome(result, table, arrays, dataset, config, out_dir,
                          dataset_path=dataset_path, dataset_uri=dataset_uri,
                          dataset_sha256=dataset_sha256, validated=validated,
                          scan_info={**mode, **(scan_info or {})}, text_info=None,
                          report=report, scan_folder=scan_folder)


def _validate_classes(result: DetectionResult) -> Any:
    from acgate.gx import validate_classes_frame

    return validate_classes_frame(result.classes_frame())


def _write_report(result: DetectionResult, folder: Path, arrays: _Arrays, dataset: Any,
                  name: Any, info: Mapping[str, Any],
                  validations: Mapping[str, Mapping[str, Any]],
                  scan_folder: PathLike | None) -> Path:
    """The HTML report: images or texts as sprites, scan.json's facts, the GX results."""
    from acgate.report import write_report

    shown = ({"texts": dataset.texts} if hasattr(dataset, "texts")
             else {"images": dataset.images})
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    files = write_report(result, folder / "report.html", activations=arrays.activations,
                         title=f"acgate scan of {name}", proxy=info.get("proxy"),
                         scan_info=info, validations=validations, created=created,
                         scan_folder=scan_folder, **shown)
    return Path(files.html_path)


def track_scan(outcome: AnalyzeOutcome, folder: PathLike, config: ScanConfig, *,
               tracking_uri: str, experiment: str = "acgate",
               started_at: float | None = None, rescan_of: str | None = None) -> str:
    """Log an analysed scan as an MLflow run (the same run from the CLI and the pipeline).

    ``started_at`` (seconds since the epoch) is when the scan began: the run then spans it
    (``None``: the run starts when it is logged, as in the pipeline's analyze step).
    ``rescan_of``: the scan run whose repaired data this scan re-scans (the run becomes its
    child, :func:`acgate.mlflow.log_scan`).

    Returns:
        The run id.

    Raises:
        acgate.errors.InfrastructureError: The store cannot be used.
    """
    from acgate.io.results import proxy_metrics
    from acgate.mlflow import log_scan

    info = outcome.scan_info
    return log_scan(
        outcome.result, tracking_uri=tracking_uri, experiment=experiment,
        run_name=scan_run_name(str(info["dataset"])),
        artifacts_dir=Path(folder), dataset_uri=str(info["dataset"]),
        dataset_fingerprint=info["fingerprint"], dataset_sha256=info["dataset_sha256"],
        params={**_scan_only_params(config, outcome.result), **_label_names_param(info),
                **_baseline_params(info)},
        gx_results=outcome.gx_results,
        # An incremental scan trained no proxy: the baseline's numbers are not this run's.
        metrics=proxy_metrics(None if info.get("mode") == "incremental" else info.get("proxy")),
        started_at=started_at, rescan_of=rescan_of,
    )


def _scan_only_params(config: ScanConfig, result: DetectionResult) -> dict[str, Any]:
    """The scan's settings as ``scan.<name>`` params, each once.

    A detector setting the result already records under its own name (``reducer``,
    ``size_threshold``, ..., ``random_state``, logged as ``seed`` too) is not logged again as
    ``scan.<name>``: the MLflow UI listed every such setting twice.
    """
    recorded = result.info.params
    same = {"seed": "random_state"}
    return {f"scan.{name}": value for name, value in config.to_dict().items()
            if not (same.get(name, name) in recorded and recorded[same.get(name, name)] == value)}


#: Longest text MLflow keeps as a param value; a longer mapping is only in ``scan.json``.
_MAX_PARAM_CHARS = 6000


def _baseline_params(info: Mapping[str, Any]) -> dict[str, Any]:
    """``scan.mode`` and the baseline of a scan given one (incremental, or its full fallback)."""
    baseline = info.get("baseline")
    if not isinstance(baseline, Mapping):
        return {}
    params = {"scan.mode": info.get("mode", "full"), "scan.baseline": baseline.get("folder"),
              "scan.baseline_resolved": baseline.get("resolved"),
              "scan.baseline_model": baseline.get("model"),
              "scan.baseline_model_version": baseline.get("model_version"),
              "scan.baseline_dataset_sha256": baseline.get("dataset_sha256"),
              "scan.shift_reason": info.get("shift_reason")}
    return {name: value for name, value in params.items() if value is not None}


def _label_names_param(info: Mapping[str, Any]) -> dict[str, str]:
    """``label_names``: the original label of each class as JSON, when the labels were mapped.

    Left out when there is no mapping, or when it is longer than MLflow keeps (``scan.json``,
    an artifact of the run, always has it).
    """
    names = info.get("label_names")
    if names is None:
        return {}
    text = json.dumps(names, ensure_ascii=False)
    return {"label_names": text} if len(text) <= _MAX_PARAM_CHARS else {}


def scan_run_name(dataset_uri: str, when: datetime.datetime | None = None) -> str:
    """The MLflow run name of a scan: ``scan <dataset file name> <UTC time>``.

    Named after what was scanned and when, so the runs of a nightly scan list readably in the
    MLflow UI (MLflow's own names are random words).

    Args:
        dataset_uri: The dataset's path or URI.
        when: The time (default: now).
    """
    when = when or datetime.datetime.now(datetime.timezone.utc)
    name = dataset_uri.rstrip("/").rsplit("/", 1)[-1] or dataset_uri
    return f"scan {name} {when.astimezone(datetime.timezone.utc):%Y-%m-%d %H:%M:%SZ}"


def scan_metrics(outcome: Any) -> dict[str, float]:
    """A scan's numbers under the MLflow run's names (the analyze step's metrics).

    :func:`acgate.io.results.result_metrics` plus :func:`acgate.io.results.proxy_metrics`
    (``proxy_train_accuracy``, ``proxy_attack_success``), the metrics :func:`track_scan` logs:
    an incremental scan's proxy is the baseline's, so it has none of the proxy's.

    Args:
        outcome: An :class:`AnalyzeOutcome` or an :class:`acgate.scan.ScanOutcome`.
    """
    from acgate.io.results import proxy_metrics, result_metrics

    info = getattr(outcome, "scan_info", None)
    proxy, mode = ((info.get("proxy"), info.get("mode")) if info is not None
                   else (outcome.proxy, outcome.mode))
    return {**result_metrics(outcome.result),
            **proxy_metrics(None if mode == "incremental" else proxy)}


def _check_clusterings(clusterings: Sequence[Any], arrays: _Arrays,
                       paths: Sequence[PathLike]) -> None:
    """Every segment clustered exactly once, positions inside the activations."""
    expected = {int(s) for s in np.unique(arrays.segments)}
    seen: dict[int, PathLike] = {}
    for clustering, path in zip(clusterings, paths, strict=True):
        if clustering.label in seen:
            raise StageInputError(f"input artifact 'clusterings': class {clustering.label} "
                                  f"appears twice ({seen[clustering.label]} and {path})")
        seen[clustering.label] = path
        if len(clustering.positions) and int(clustering.positions.max()) >= len(arrays.labels):
            raise StageInputError(f"input artifact 'clusterings' ({path}): column 'position' "
                                  f"exceeds the {len(arrays.labels)} activation rows")
    missing = sorted(expected - set(seen))
    extra = sorted(set(seen) - expected)
    if missing or extra:
        raise StageInputError(f"input artifact 'clusterings' does not match the activations: "
                              f"classes missing {missing}, unknown {extra}")


# ------------------------------------------------------------------------------------ repair


@dataclass(frozen=True)
class RepairStageOutcome:
    """What the ``repair`` stage produced.

    Attributes:
        report: The repair report (:func:`acgate.repair.run_repair`'s ``report``).
        metrics: Its numbers, flattened (``before/clean_accuracy``, ...), for KFP metrics.
        run_id: The MLflow repair run (a child of the scan's run), or ``None`` untracked.
    """

    report: Mapping[str, Any]
    metrics: Mapping[str, float]
    run_id: str | None


def repair_stage(
    dataset_path: PathLike,
    samples_path: PathLike,
    model_dir: PathLike,
    cleaned_path: PathLike,
    repaired_model_path: PathLike,
    config: ScanConfig,
    *,
    strategy: str = "relabel",
    epochs: int | None = None,
    tracking_uri: str | None = None,
    scan_run_id: str | None = None,
) -> RepairStageOutcome:
    """Repair the dataset and the proxy, write both artifacts and log the repair to MLflow.

    Args:
        dataset_path: The scanned dataset (never modified).
        samples_path: The scan's per-sample result.
        model_dir: The proxy folder from :func:`train_proxy_stage`.
        cleaned_path: Where the cleaned dataset Parquet goes (atomically).
        repaired_model_path: Where the repaired proxy's state_dict goes (atomically).
        config: The pipeline's scan configuration (seed, epochs, proxy).
        strategy: ``"relabel"`` or ``"remove"``.
        epochs: Fixed fine-tuning epochs; ``None``: until convergence.
        tracking_uri: Log the repair as an MLflow run; ``None`` or ``""``: no tracking.
        scan_run_id: The scan's MLflow run, made the repair run's parent; ``None``/``""``: a
            top-level run.

    Returns:
        The report, its numbers and the MLflow run id.
    """
    from acgate.repair import run_repair

    with tempfile.TemporaryDirectory(prefix="acgate-repair-") as work:
        out_dir = Path(work) / "repair"
        outcome = run_repair(dataset_path, samples_path, Path(model_dir) / MODEL_WEIGHTS_FILE,
                             out_dir, strategy=strategy, seed=config.seed, epochs=epochs,
                             config=config)
        run_id = None
        if tracking_uri:
            from acgate.mlflow import log_repair

            run_id = log_repair(outcome.report, tracking_uri=tracking_uri,
                                scan_run_id=scan_run_id or None, artifacts_dir=out_dir)
        copy_file(outcome.cleaned_dataset_path, cleaned_path)
        copy_file(outcome.model_path, repaired_model_path)
    return RepairStageOutcome(report=outcome.report, metrics=_numbers(outcome.report),
                              run_id=run_id)


def _numbers(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every int / float in a nested report, keyed ``a/b/c`` (booleans left out)."""
    numbers: dict[str, float] = {}
    for key, value in report.items():
        if isinstance(value, Mapping):
            numbers.update(_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[f"{prefix}{key}"] = float(value)
    return numbers


# ------------------------------------------------------------------------- the run's outcome


def tag_verdict_stage(scan_run_id: str, *, tracking_uri: str | None, model_name: str | None,
                      model_version: str | None) -> dict[str, str]:
    """Tag the model version trained on the scanned data with the scan's verdict.

    The pipeline runs it after ``analyze`` on both verdicts (:func:`acgate.mlflow.tag_verdict`:
    ``acgate.scan.verdict``, ``acgate.scan.run_id``, ``acgate.scan.dataset_sha256``,
    ``acgate.scan.poisoned_classes``); it never moves an alias.

    Args:
        scan_run_id: The scan's MLflow run.
        tracking_uri: Tracking and registry URI; ``None``/``""`` with a named model refuses.
        model_name: The registered model; ``None``/``""``: nothing to tag.
        model_version: Its version.

    Returns:
        The tags written (``{}`` when no model was named).

    Raises:
        ValueError: A model named without a version, tracking URI or scan run, or what
            :func:`acgate.mlflow.tag_verdict` refuses.
        acgate.errors.InfrastructureError: The store is unreachable or fails.
    """
    if not model_name:
        logger.info("no model_name given: no model version to tag with the verdict")
        return {}
    for name, value in (("model_version", model_version), ("mlflow_tracking_uri", tracking_uri),
                        ("the scan's run id", scan_run_id)):
        if not value:
            raise ValueError(f"cannot tag model {model_name!r} with the scan's verdict: no "
                             f"{name} given")
    from acgate.mlflow import tag_verdict

    return tag_verdict(str(tracking_uri), model_name=model_name,
                       model_version=str(model_version), scan_run_id=scan_run_id)


def rescan_stage(repaired_path: PathLike, out_dir: PathLike, config: ScanConfig, *,
                 tracking_uri: str | None = None, scan_run_id: str | None = None,
                 baseline_uri: str | None = None, fallback: bool = True) -> Any:
    """Scan the repaired dataset again, as ``acgate scan`` does, linked to the first scan.

    :func:`acgate.scan.run_scan` with the pipeline's settings and seed: a repair that missed
    poison (or a backdoor with a second trigger) shows up before anyone trains on the repaired
    data. A repaired partition (the incremental pipeline's) is judged against the same
    baseline instead (:func:`acgate.scan.run_incremental_scan`, seconds, no training). Tracked,
    the run is a child of the first scan's run (``acgate.rescan_of``).

    Args:
        repaired_path: The repaired dataset Parquet file (the ``repair`` step's).
        out_dir: A new folder for the scan's files (as ``acgate scan --out``).
        config: The pipeline's scan configuration.
        tracking_uri: Log the rescan as an MLflow scan run; ``None``/``""``: no tracking.
        scan_run_id: The first scan's MLflow run (the parent); ``None``/``""``: top-level.
        baseline_uri: The baseline the first scan judged a partition against (as
            :func:`incremental_scan_stage`'s); ``None``/``""``: a full scan.
        fallback: With ``baseline_uri``: scan a repaired partition that moved too far in full.

    Returns:
        The :class:`acgate.scan.ScanOutcome`.

    Raises:
        StageInputError: The repaired dataset cannot be scanned (a full rescan).
        ValueError: With ``baseline_uri``: a baseline that cannot be used, or a repaired
            partition its proxy cannot read (each message names which).
        acgate.errors.InfrastructureError: The tracking store failed (also after the verdict).
    """
    from acgate.errors import InfrastructureError
    from acgate.scan import run_incremental_scan, run_scan

    if baseline_uri:  # its errors name the baseline or the dataset file themselves
        outcome = run_incremental_scan(repaired_path, out_dir, baseline_uri, config,
                                       tracking_uri=tracking_uri or None, fallback=fallback,
                                       rescan_of=scan_run_id or None)
    else:
        with reading("cleaned_dataset", repaired_path):
            outcome = run_scan(repaired_path, out_dir, config, tracking_uri=tracking_uri or None,
                               rescan_of=scan_run_id or None)
    if outcome.tracking_error is not None:
        raise InfrastructureError(f"rescan verdict {outcome.result.verdict}, but logging it "
                                  f"failed: {outcome.tracking_error}")
    return outcome


def verdict_message(verdict: str, classes_path: PathLike, *, n_flagged: int,
                    scan_run_id: str | None, repaired_uri: str | None = None,
                    rescan_verdict: str | None = None, rescan_run_id: str | None = None,
                    rescan_n_flagged: int | None = None, rescan_mode: str | None = None,
                    model_name: str | None = None, model_version: str | None = None,
                    partition: bool = False) -> str:
    """A one-paragraph account of a run whose data is not clean: what, where, what next.

    The next step depends on the rescan: repaired data found clean is what to retrain on;
    repaired data that is still flagged is not (review the flagged rows, repair again).

    Args:
        verdict: The scan's verdict (``"poisoned"``, ``"incomplete"``; ``"clean"`` too).
        classes_path: The scan's per-class result (the ``analyze`` step's ``classes``).
        n_flagged: Rows the scan flagged.
        scan_run_id: The scan's MLflow run (``None``/``""``: untracked).
        repaired_uri: Where the repaired dataset is.
        rescan_verdict: The rescan's verdict of the repaired data.
        rescan_run_id: The rescan's MLflow run.
        rescan_n_flagged: Rows the rescan flagged.
        rescan_mode: The rescan's mode: ``"full"`` for a repaired partition that moved too
            far from the baseline (scanned in full, as the partition alone).
        model_name: The registered model trained on the scanned data.
        model_version: Its version.
        partition: The scan judged a new partition (the incremental pipeline): the message
            says so, and what to do before appending it.

    Returns:
        E.g. ``data poisoned: 120 rows flagged in class 0 (scan run 3f2a...); repaired data at
        <uri>; rescan of the repaired data: clean (run 9c1e...); model 'digits' version 4
        tagged acgate.scan.verdict=poisoned, not promoted; retrain on the repaired data, then
        rerun``.
    """
    from acgate.io.results import read_classes

    with reading("classes", classes_path):
        table = read_classes(classes_path)

    def listed(kind: str) -> str:
        labels = sorted(int(c) for c in table["label"][table["verdict"] == kind])
        return (f"class{'es' if len(labels) != 1 else ''} "
                f"{', '.join(map(str, labels)) or 'none'}")

    run = f"scan run {scan_run_id}" if scan_run_id else "scan not tracked"
    data = "new partition" if partition else "data"
    if verdict == "clean":
        return f"{data} clean: no row flagged ({run})"
    # What the rescan found, as both accounts give it: "poisoned, 12 rows flagged (run ...)".
    rescanned = (f"{rescan_verdict}"
                 + (f", {rescan_n_flagged} rows flagged"
                    if rescan_verdict != "clean" and rescan_n_flagged is not None else "")
                 + (f" (run {rescan_run_id})" if rescan_run_id else ""))
    if partition:
        found = (f"{n_flagged} rows flagged in {listed('poisoned')}" if verdict == "poisoned"
                 else f"{listed('skipped')} could not be judged against the baseline")
        if not rescan_verdict:
            return (f"new partition {verdict}: {found} ({run}); repaired partition at "
                    f"{repaired_uri or '(none)'}, not rescanned; nothing promoted, the "
                    f"accepted data unchanged; do not append the partition as it came: review "
                    f"the flagged rows, then scan the repaired partition against the baseline "
                    f"again before appending it")
        how = ("scanned in full: it moved too far from the baseline" if rescan_mode == "full"
               else "against the baseline")
        then = ("append the repaired partition, not the one that came" if rescan_verdict ==
                "clean" else "append neither: review the flagged rows (the scans report them), "
                "repair again and rescan")
        return (f"new partition {verdict}: {found} ({run}); repaired partition at "
                f"{repaired_uri or '(none)'}; rescan of the repaired partition {how}: "
                f"{rescanned}; nothing promoted, the accepted data unchanged; {then}")
    what = (f"data poisoned: {n_flagged} rows flagged in {listed('poisoned')}"
            if verdict == "poisoned" else
            f"scan {verdict}: {listed('skipped')} could not be judged (too few rows), so the "
            "data is not known to be clean")
    rescan = (f"rescan of the repaired data: {rescanned}" if rescan_verdict
              else "the repaired data was not rescanned")
    model = (f"model {model_name!r} version {model_version} tagged "
             f"acgate.scan.verdict={verdict}, not promoted" if model_name else
             "model not promoted")
    if rescan_verdict == "clean":
        then = "retrain on the repaired data, then rerun the pipeline on it"
    else:
        then = ("do not train on the repaired data either: review the flagged rows (the scan "
                "reports), repair again, then rerun the pipeline on the result")
    return f"{what} ({run}); repaired data at {repaired_uri or '(none)'}; {rescan}; {model}; {then}"


def verdict_stage(verdict: str, classes_path: PathLike, *, fail_on_poisoned: bool = True,
                  **details: Any) -> str:
    """The pipeline's last step when the data is not clean: fail the run, saying what to do.

    Args:
        verdict: The scan's verdict.
        classes_path: The scan's per-class result.
        fail_on_poisoned: Raise unless the verdict is ``"clean"`` (the run turns red);
            ``False``: log the message as a warning and return it (the run ends green; the
            verdict is still the run's output and on the model version).
        **details: :func:`verdict_message`'s keywords.

    Returns:
        The message (clean data, or ``fail_on_poisoned=False``).

    Raises:
        acgate.errors.PoisonedDataError: Data not clean and ``fail_on_poisoned``.
    """
    from acgate.errors import PoisonedDataError

    message = verdict_message(verdict, classes_path, **details)
    if verdict != "clean" and fail_on_poisoned:
        raise PoisonedDataError(message)
    (logger.info if verdict == "clean" else logger.warning)("%s", message)
    return message


# ------------------------------------------------------------------------------------ helpers


def copy_file(source: PathLike, destination: PathLike) -> Path:
    """Copy a file atomically (temp file in the destination folder, then rename)."""
    from acgate.io.atomic import atomic_write_path

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(destination) as temp:
        shutil.copyfile(source, temp)
    return destination


def _write_json(path: Path, value: Any) -> None:
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, sort_keys=True)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- dataset_digest

#: Bytes read at a time when hashing a remote dataset file.
_DIGEST_CHUNK = 1 << 20


def dataset_digest_stage(dataset_uri: str) -> str:
    """SHA-256 (hex) of the bytes of the dataset file at ``dataset_uri``.

    The first step of the pipeline: its result is an input of every step that reads the data,
    so the KFP cache key of those steps changes whenever the bytes behind an unchanged URI do
    (and stays the same, keeping the cache, when they do not). The same figure as
    :func:`acgate.io.file_sha256` (``sha256sum``) of the local file.

    Args:
        dataset_uri: A local path, ``file://`` URI or any URI :mod:`pyarrow.fs` opens
            (``s3://``, ``gs://``, ``hdfs://``), as :func:`stage_dataset` takes.

    Returns:
        64 lowercase hex characters.

    Raises:
        StageInputError: The file is missing or cannot be read (names ``dataset_uri``).
    """
    import hashlib

    from acgate.io.digest import file_sha256

    with reading("dataset_uri", dataset_uri):
        try:
            if "://" in dataset_uri and not dataset_uri.startswith("file://"):
                import pyarrow.fs as pafs

                filesystem, remote = pafs.FileSystem.from_uri(dataset_uri)
                digest = hashlib.sha256()
                with filesystem.open_input_stream(remote) as stream:
                    while chunk := stream.read(_DIGEST_CHUNK):
                        digest.update(chunk)
                return digest.hexdigest()
            return file_sha256(dataset_uri.removeprefix("file://"))
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise ValueError(f"cannot read the dataset: {error}") from error


def check_dataset_digest(dataset_path: PathLike, sha256: str | None, *,
                         artifact: str = "dataset") -> None:
    """Check that a dataset artifact holds the bytes whose digest the pipeline computed.

    The staged copy is byte-for-byte the file at ``dataset_uri``, so its SHA-256 equals the
    digest of :func:`dataset_digest_stage` unless the data changed between the two steps.

    Args:
        dataset_path: The local dataset file (a pipeline artifact).
        sha256: The expected digest (hex); ``None`` or ``""``: nothing to check.
        artifact: The artifact's name in the pipeline (quoted in the error).

    Raises:
        StageInputError: The file's digest differs (the data changed during the run), or the
            expected digest is not 64 hex characters.
    """
    from acgate.io.digest import file_sha256

    if not sha256:
        return
    expected = sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise StageInputError(f"dataset_sha256 {sha256!r} is not a SHA-256 (64 hex characters)")
    with reading(artifact, dataset_path):
        actual = file_sha256(dataset_path)
    if actual != expected:
        raise StageInputError(
            f"input artifact {artifact!r} ({dataset_path}) has SHA-256 {actual}, but the run's "
            f"dataset digest is {expected}: the data behind dataset_uri changed during the run; "
            "rerun the pipeline")


def log_metrics(artifact: Any, numbers: Mapping[str, Any]) -> None:
    """Log the numbers (booleans and non-numbers left out) on a KFP ``Metrics`` artifact.

    Also writes them as JSON at the artifact's path (:func:`write_metrics_file`).
    """
    for name, value in numbers.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            artifact.log_metric(name, float(value))
    write_metrics_file(artifact.path, artifact.metadata)


def write_metrics_file(path: PathLike, metrics: Mapping[str, float]) -> Path:
    """Write a KFP ``Metrics`` artifact's numbers as a JSON object at its path (atomically).

    KFP keeps logged metrics in the artifact's metadata and writes no file at its path; kfp's
    local task cache treats an output artifact without a file as lost and never reuses the task
    (so the local run could not show the cluster's caching). The file also gives the artifact
    content to download.

    Args:
        path: The artifact's local path.
        metrics: Metric name -> value, as logged with ``log_metric``.

    Returns:
        ``path``.
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _write_json(destination, {str(name): float(value) for name, value in metrics.items()})
    return destination
