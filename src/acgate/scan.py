"""``acgate scan``: the settings (:class:`ScanConfig`) and the proxy's building blocks.

:func:`run_scan` is the sequential composition of the stage functions of :mod:`acgate.stages`,
exactly those the Kubeflow components wrap (train-proxy -> extract-activations -> cluster per
class -> analyze -> MLflow), on the same files. This module holds what the stages share:
dataset validation, the proxy's construction and training, the extraction to Parquet and the
exclusionary-reclassification retrain.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from acgate.core.config import DetectorConfig, setting
from acgate.core.detect import detect
from acgate.core.exre import ONE_SOURCE_SURE_MIN_CLASS_ROWS
from acgate.core.result import DetectionResult
from acgate.core.validation import check_choice, check_positive_int
from acgate.io.datasets import DEFAULT_COLUMNS, DEFAULT_MAX_DECODED_BYTES, Columns
from acgate.logs import PROGRESS_LOGGER
from acgate.text import DEFAULT_MAX_LEN_CAP

logger = logging.getLogger(__name__)

ProxyChoice = Literal["auto", "cnn", "mlp", "textcnn"]
#: Below this many samples the proxy trains for ``SMALL_DATA_EPOCHS`` epochs, above for
#: ``LARGE_DATA_EPOCHS`` (digits: 30 epochs reach train accuracy 1.0; MNIST: 2 epochs, 0.985).
SMALL_DATA_ROWS = 10_000
SMALL_DATA_EPOCHS = 30
LARGE_DATA_EPOCHS = 2
#: Text proxy (Kim's CNN): enough epochs for this many optimizer steps, within
#: ``[TEXT_MIN_EPOCHS, TEXT_MAX_EPOCHS]`` (Rotten Tomatoes, 5,134 rows: 6 epochs, train accuracy
#: 0.998; a 1,581-row subset needs more passes to fit: 20). Measured: bench/RESULTS.md.
TEXT_TRAIN_STEPS = 480
TEXT_MIN_EPOCHS = 6
TEXT_MAX_EPOCHS = 30
#: Kim (2014)'s random word vectors: embeddings drawn from U(-a, a). torch's default N(0, 1)
#: learns about 3x slower at the same learning rate (RT: train accuracy 0.88 after 10 epochs).
TEXT_EMBEDDING_INIT = 0.25
#: Candidate cut of a text scan when ``size_threshold`` is ``None`` (the paper's 0.35, not the
#: 0.45 images use under exclusionary reclassification): clean Rotten Tomatoes classes split
#: 36-49% / 64-51%, and a retrain misjudges a left-out half of a clean class, because a
#: sentiment model generalises to unseen reviews far less well than a digit model.
TEXT_SIZE_THRESHOLD = 0.35
#: The text proxy's vocabulary, saved beside ``model.pt`` (also read beside a user's model).
VOCABULARY_FILE = "vocab.json"
#: Clean source rows the proxy's attack success is measured on, at most, per (source, target)
#: pair (seeded choice): a share to within +-0.03 (95%) for a few batches of forward passes.
ATTACK_ROWS_PER_PAIR = 1000
#: Below this attack success the scan warns that the proxy did not learn the recorded trigger.
#: Activation Clustering sees poison only through the activations a *learned* trigger causes;
#: when the trigger sends fewer than half of the triggered clean rows of its source classes to
#: the target, the rows' own content outweighs it, the proxy fit the poison rows as exceptions
#: rather than by the trigger, and their activations need not separate: a clean verdict then
#: says little. Measured on digits (seed 0): BadNets at 10% / 33% 0.89 / 0.98; SIG at 10% 0.08
#: (train accuracy 0.91: the proxy never fit the poison); a proxy trained on clean digits 0.01.
WEAK_ATTACK_SUCCESS = 0.5
#: Classes judged with fewer rows than this get the scan's small-class warning: the core's
#: small-class regime (the one-source rule without its sureness cuts, no margins around
#: candidates), where the attack matrix measured its limits. bench/RESULTS.md "attack_matrix"
#: and "digits_separation": on scikit-learn's digits (~180 8x8 images a class) all-to-one poison
#: at 0.3-3% of the data was missed (mean F1 0.00-0.28 over 5 seeds; at 1% the proxy's
#: activations do not even gather it), and natural groups of 1s raised false alarms.
SMALL_CLASS_ROWS = ONE_SOURCE_SURE_MIN_CLASS_ROWS


def _gigabytes(text: str) -> int:
    """``--max-decoded-gb``: a positive number of GiB, as bytes."""
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text!r}")
    return int(value * 1024**3)


#: Where a scan trains and extracts (``ScanConfig.device``; :func:`acgate.torch._arrays.
#: resolve_device` turns a name into a torch device).
DEVICES = ("auto", "cpu", "cuda")


#: The settings that name the dataset's columns (:attr:`ScanConfig.columns`): every command
#: that reads a dataset file takes them (``acgate scan``, ``acgate repair``).
COLUMN_SETTINGS = ("label_column", "image_column", "text_column", "id_column")


@dataclass(frozen=True)
class ScanConfig(DetectorConfig):
    """Every setting of a scan: the detector's and the proxy's.

    The detector's come from :class:`acgate.core.config.DetectorConfig`. Recorded in MLflow
    (``scan.<name>``) and ``scan.json``; each field's help text, stage and CLI flag are declared
    with it (:func:`acgate.core.config.setting`).
    """

    proxy: ProxyChoice = setting("auto", "proxy architecture (auto: CNN for images, Kim's "
                                 "text CNN for text)", stage="proxy",
                                 choices=("auto", "cnn", "mlp", "textcnn"))
    epochs: int | None = setting(None, "proxy epochs (default: images 30 below 10k rows, else "
                                 "2; text enough for 480 optimizer steps, 6 to 30)",
                                 stage="proxy")
    exre_epochs: int | None = setting(None, "epochs of the exclusionary-reclassification "
                                      "retrain (default: the proxy's)", stage="analyze")
    exre_max_rows: int | None = setting(None, "most rows each exclusionary-reclassification "
                                        "retrain trains on: above it, a seeded sample of the "
                                        "rows it keeps, each class its share and at least "
                                        "1,000 (default: every row)", stage="analyze")
    batch_size: int = setting(64, "training batch size", stage="proxy")
    lr: float = setting(1e-3, "Adam learning rate", stage="proxy")
    hidden: int = setting(128, "width of the proxy's last hidden layer", stage="proxy")
    model_path: str | None = setting(None, "your model file (TorchScript or state_dict) "
                                     "instead of training a proxy", stage="local",
                                     flag="--model")
    model_module: str | None = setting(None, "package.module:Class building the model for a "
                                       "state_dict file", stage="local")
    layer: str | None = setting(None, "module whose activations to use (default: input of the "
                                "final Linear)", stage="local")
    progress: bool = setting(False, "show the training progress bars and the stage lines (the "
                             "lines are on by default on a terminal)", stage="local")
    device: str = setting("auto", "torch device for training and extraction (auto: CUDA when "
                          "available, else the CPU, which is deterministic for a seed)",
                          stage="local", choices=DEVICES)
    max_decoded_bytes: int | None = setting(
        DEFAULT_MAX_DECODED_BYTES, "budget of the decoded images plus the proxy's estimated "
        "training memory, checked from the image headers before decoding (flag in GiB; default 8)",
        stage="proxy", flag="--max-decoded-gb", parse=_gigabytes)
    max_tokens: int = setting(DEFAULT_MAX_LEN_CAP, "longest text the text proxy reads, in "
                              "tokens; longer texts are cut with a warning", stage="proxy")
    label_column: str = setting(DEFAULT_COLUMNS.label, "the dataset's label column: integers, "
                                "or strings (any other values) mapped to classes 0..k-1 in "
                                "sorted order", stage="proxy")
    image_column: str = setting(DEFAULT_COLUMNS.image, "the dataset's image column",
                                stage="proxy")
    text_column: str = setting(DEFAULT_COLUMNS.text, "the dataset's text column", stage="proxy")
    id_column: str | None = setting(DEFAULT_COLUMNS.id, "a column of unique, non-null row ids "
                                    "carried to every per-row output (default: the row number)",
                                    stage="proxy")

    def __post_init__(self) -> None:  # noqa: D105
        check_choice(self.proxy, ("auto", "cnn", "mlp", "textcnn"), name="proxy")
        check_choice(self.device, DEVICES, name="device")
        if self.epochs is not None:
            check_positive_int(self.epochs, name="epochs")
        if self.exre_epochs is not None:
            check_positive_int(self.exre_epochs, name="exre_epochs")
        if self.exre_max_rows is not None:
            check_positive_int(self.exre_max_rows, name="exre_max_rows")
        check_positive_int(self.batch_size, name="batch_size")
        check_positive_int(self.hidden, name="hidden")
        check_positive_int(self.max_tokens, name="max_tokens")
        if self.max_decoded_bytes is not None:
            check_positive_int(self.max_decoded_bytes, name="max_decoded_bytes")
        if self.columns.id is not None:
            from acgate.io.results import check_id_column_name

            check_id_column_name(self.columns.id)

    @property
    def columns(self) -> Columns:
        """The dataset's column names (``label_column``, ...), checked (distinct, non-empty)."""
        return Columns(label=self.label_column, image=self.image_column, text=self.text_column,
                       id=self.id_column)

    def resolved_epochs(self, n_samples: int) -> int:
        """Epochs for a dataset of ``n_samples``."""
        if self.epochs is not None:
            return self.epochs
        return SMALL_DATA_EPOCHS if n_samples < SMALL_DATA_ROWS else LARGE_DATA_EPOCHS

    def resolved_text_epochs(self, n_samples: int) -> int:
        """Epochs of the text proxy for a dataset of ``n_samples`` rows."""
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = max(1, -(-n_samples // self.batch_size))
        wanted = -(-TEXT_TRAIN_STEPS // steps_per_epoch)
        return int(min(TEXT_MAX_EPOCHS, max(TEXT_MIN_EPOCHS, wanted)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return asdict(self)


@dataclass(frozen=True)
class ScanOutcome:
    """What :func:`run_scan` produced.

    Attributes:
        result: The detection result.
        out_dir: The output folder.
        files: Output files by name.
        run_id: The MLflow run id, or ``None`` when tracking was off or failed.
        timings: Wall seconds per stage.
        dataset_sha256: SHA-256 of the dataset file's bytes (what the gate compares with the
            model version's training-data digest).
        tracking_error: Why logging the run failed after the verdict was reached (an
            infrastructure failure), or ``None``.
        proxy: How the proxy trained (``scan.json``'s ``"proxy"``: ``train_accuracy``,
            ``final_loss``, ``epochs`` and, when the dataset records its attack,
            ``attack_success``; see :func:`proxy_attack_success`), or ``None`` for the user's
            own model.
        mode: ``"full"`` (a proxy trained on this data) or ``"incremental"`` (judged against a
            baseline scan, :func:`run_incremental_scan`).
        shift_reason: Why the partition moved too far from the baseline for an incremental
            judgement (the scan then fell back to a full one, unless it was told not to),
            else ``None``.
        label_names: The original label of each class when the dataset's labels were mapped
            to classes (strings, ...; class ``c`` is ``label_names[c]``), else ``None``.
    """

    result: DetectionResult
    out_dir: Path
    files: Mapping[str, Path]
    run_id: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    dataset_sha256: str | None = None
    tracking_error: str | None = None
    proxy: Mapping[str, Any] | None = None
    mode: str = "full"
    shift_reason: str | None = None
    label_names: tuple[Any, ...] | None = None

    def _repr_html_(self) -> str:
        """The scan's HTML report inline in a notebook (a summary table without a report).

        The report goes in an ``iframe`` (``srcdoc``) so that its styles and its
        Content-Security-Policy stay its own.
        """
        import html

        report = self.files.get("report.html")
        if report is not None and Path(report).is_file():
            page = html.escape(Path(report).read_text(encoding="utf-8"), quote=True)
            return (f'<iframe srcdoc="{page}" style="width: 100%; height: 900px; border: 1px '
                    'solid #ddd" sandbox title="acgate report"></iframe>')
        rows = "".join(
            f"<tr><td>{html.escape(str(c.label))}</td><td>{html.escape(c.verdict)}</td>"
            f"<td>{int(self.result.is_poison[self.result.segments == c.label].sum())}</td>"
            f"<td>{c.n_samples}</td></tr>" for c in self.result.classes)
        return (f"<p><strong>acgate scan: {html.escape(self.result.verdict.upper())}</strong> "
                f"({int(self.result.is_poison.sum())} of {self.result.n_samples} rows flagged; "
                f"outputs in {html.escape(str(self.out_dir))})</p><table><tr><th>class</th>"
                f"<th>verdict</th><th>flagged</th><th>rows</th></tr>{rows}</table>")


# ----------------------------------------------------------------------------- stages


def validate_dataset_file(path: str | Path, *, modality: str = "image",
                          max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
                          columns: Columns = DEFAULT_COLUMNS) -> Any:
    """Run the dataset expectation suite on the raw file.

    Args:
        path: The dataset file.
        modality: ``"image"`` or ``"text"``.
        max_decoded_bytes: The image memory budget (see
            :func:`acgate.io.datasets.read_image_dataset`).
        columns: The file's names of the label, image, text and id columns.

    Raises:
        ValueError: The file has no rows, lacks one of the columns (named with its option,
            e.g. ``--label-column``), or an expectation failed (the message names the file and
            the failing expectation).
    """
    from acgate.gx import ExpectationFailed, validate_dataset_frame
    from acgate.io.datasets import require_dataset_columns
    from acgate.io.inspect import first_decode_error, shape_column, validation_frame
    from acgate.io.schema import open_parquet

    require_dataset_columns(path, open_parquet(path).schema_arrow.names, columns,
                            ("label", modality, "id"))
    frame = validation_frame(path, modality, max_decoded_bytes=max_decoded_bytes,
                             columns=columns)
    if len(frame) == 0:
        raise ValueError(f"{path}: the dataset has no rows")
    if modality == "image" and frame[shape_column(columns)].isna().any():
        # The decoder says why far better than a null-count expectation would.
        reason = first_decode_error(path, columns.image)
        if reason is not None:
            raise ValueError(reason)
    try:
        validated = validate_dataset_frame(frame, modality=modality, columns=columns)
    except ExpectationFailed as error:
        raise ValueError(f"{path}: {error}") from error
    check_dataset_labels(path, columns)  # schema version, label range, class sizes, ids
    return validated


def check_dataset_labels(path: str | Path, columns: Columns = DEFAULT_COLUMNS) -> None:
    """Check a dataset file's schema version, label and id columns without decoding any image.

    Cheap enough to run before a dataset is copied or a model is trained: reads two columns.

    Raises:
        ValueError: Unreadable file, unknown or newer schema, no label column, no rows,
            labels null / negative / above the supported range, fewer than two classes, a
            class of one sample (the message names the file and the label column), or ids
            null or repeated (naming the id column and the value).
        TypeError: Labels of an unsupported type.
    """
    from acgate.core.validation import MAX_LABEL
    from acgate.io.datasets import COLUMN_OPTIONS, require_dataset_columns
    from acgate.io.schema import id_column, label_column, open_parquet, read_parquet

    require_dataset_columns(path, open_parquet(path).schema_arrow.names, columns,
                            ("label", "id"))
    wanted = (columns.label,) if columns.id is None else (columns.label, columns.id)
    table, _ = read_parquet(path, "dataset", columns=wanted)
    labels, names = label_column(path, table.column(columns.label), columns.label,
                                 max_value=MAX_LABEL, option=COLUMN_OPTIONS["label"])
    if len(labels) == 0:
        raise ValueError(f"{path}: the dataset has no rows")
    _check_classes(labels, names, path, columns)
    if columns.id is not None:
        id_column(path, table.column(columns.id), columns.id, option=COLUMN_OPTIONS["id"])


def _check_classes(labels: np.ndarray, names: Any, path: str | Path, columns: Columns) -> None:
    """At least two classes, none of one sample (quoting the original labels when mapped)."""
    from acgate.core.validation import check_class_count

    where = f"{path}: column {columns.label!r}"
    try:
        check_class_count(labels, name=where)
    except ValueError as error:
        if names is None:
            raise
        counts = np.bincount(labels, minlength=len(names))
        small = [names[c] for c in np.flatnonzero(counts < 2)]
        raise ValueError(f"{error} (original label(s) {small!r})" if small
                         else str(error)) from None


def check_scannable(dataset: Any, path: str | Path) -> None:
    """Refuse a dataset that Activation Clustering cannot judge, before any training.

    Raises:
        ValueError: No rows, fewer than two classes (each class is judged against the
            others) or a class of one sample, naming the file and the label column.
    """
    if len(dataset) == 0:
        raise ValueError(f"{path}: the dataset has no rows")
    _check_classes(dataset.labels, dataset.label_names, path, dataset.column_names)


def _is_text(dataset: Any) -> bool:
    from acgate.io.datasets import TextDataset

    return isinstance(dataset, TextDataset)


def text_vocabulary(dataset: Any, max_tokens: int = DEFAULT_MAX_LEN_CAP) -> Any:
    """The vocabulary of a text dataset, built from its own texts (deterministic).

    Every stage rebuilds the same vocabulary from the same texts and ``max_tokens``, so the
    proxy, its extraction and the exclusionary-reclassification retrain agree without passing
    it around. Texts longer than ``max_tokens`` are cut when encoded, with a warning.
    """
    from acgate.text import build_vocabulary

    return build_vocabulary(dataset.texts, max_len_cap=max_tokens)


def model_inputs(dataset: Any, vocabulary: Any = None, *,
                 max_tokens: int = DEFAULT_MAX_LEN_CAP) -> np.ndarray:
    """What a model is fed: the images, or a text dataset's token ids ``N x L`` (int64).

    Args:
        dataset: An image or text dataset.
        vocabulary: A text dataset's :class:`acgate.text.Vocabulary` (default: built from its
            texts by :func:`text_vocabulary`). Ignored for images.
        max_tokens: The cap of that default vocabulary.
    """
    if not _is_text(dataset):
        return dataset.images
    if vocabulary is None:
        vocabulary = text_vocabulary(dataset, max_tokens)
    return vocabulary.encode(dataset.texts)


def _text_proxy_factory(dataset: Any, config: ScanConfig, n_classes: int) -> Any:
    from acgate.torch.models import build_proxy

    name = config.proxy if config.proxy != "auto" else "textcnn"
    if name != "textcnn":
        raise ValueError(f"proxy {name!r} takes images; a text dataset needs proxy 'textcnn' "
                         "(or 'auto')")
    vocabulary = text_vocabulary(dataset, config.max_tokens)

    def factory() -> Any:
        import torch

        model = build_proxy("textcnn", (vocabulary.max_len,), n_classes,
                            vocab_size=vocabulary.size, hidden=config.hidden)
        with torch.no_grad():  # seeded by seeded_model, like the rest of the weights
            model.embedding.weight.uniform_(-TEXT_EMBEDDING_INIT, TEXT_EMBEDDING_INIT)
            model.embedding.weight[model.embedding.padding_idx].zero_()
        return model

    return factory


def _proxy_factory(dataset: Any, config: ScanConfig, n_classes: int) -> Any:
    from acgate.torch.models import build_proxy

    if _is_text(dataset):
        return _text_proxy_factory(dataset, config, n_classes)
    if config.proxy == "textcnn":
        raise ValueError("proxy 'textcnn' takes text; an image dataset needs 'auto', 'cnn' or "
                         "'mlp'")
    shape = dataset.images.shape[1:]
    name = config.proxy if config.proxy != "auto" else "cnn"
    return lambda: build_proxy(name, shape, n_classes, hidden=config.hidden)


def n_classes_of(labels: np.ndarray) -> int:
    """Number of output classes a proxy needs for these labels."""
    return int(labels.max()) + 1 if len(labels) else 0


def train_proxy(dataset: Any, config: ScanConfig) -> tuple[Any, Any]:
    """Train the seeded proxy model on the (untrusted) dataset.

    Returns:
        ``(model, TrainStats)``.
    """
    from acgate.torch._arrays import resolve_device
    from acgate.torch.train import seeded_model, train_model

    factory = _proxy_factory(dataset, config, n_classes_of(dataset.labels))
    model = seeded_model(factory, config.seed).to(resolve_device(config.device))
    epochs = (config.resolved_text_epochs(len(dataset)) if _is_text(dataset)
              else config.resolved_epochs(len(dataset)))
    stats = train_model(
        model, model_inputs(dataset, max_tokens=config.max_tokens), dataset.labels,
        epochs=epochs,
        batch_size=config.batch_size, lr=config.lr, seed=config.seed, progress=config.progress,
    )
    logger.info("proxy trained: %s", stats)
    return model, stats


def proxy_attack_success(model: Any, dataset: Any, *, seed: int = 0, vocabulary: Any = None,
                         max_tokens: int = DEFAULT_MAX_LEN_CAP,
                         rows_per_pair: int = ATTACK_ROWS_PER_PAIR) -> dict[str, Any] | None:
    """How often the trained proxy follows the trigger the dataset records (its attack success).

    For each recorded ``(source, target)`` pair, up to ``rows_per_pair`` rows of the source
    class that are not poison (``is_poison`` false; a seeded choice) get the recorded trigger
    (:meth:`acgate.io.poison.RecordedAttack.apply`: every image trigger kind, or the text
    signature at its recorded position) and the proxy classifies them. The proxy fit these rows
    as their own class without the trigger, so a prediction of the target is the trigger's
    doing: a share near 1 means the proxy learned the backdoor, one below
    :data:`WEAK_ATTACK_SUCCESS` that it did not, and a clean verdict is then weak evidence.
    A triggered text longer than the proxy's sequence length is cut there, as every input is.

    Args:
        model: The trained proxy (``N x n_classes`` logits).
        dataset: The image or text dataset it was trained on.
        seed: Seed of the choice of rows (and of the random text position).
        vocabulary: A text dataset's vocabulary (default: built from its texts, as
            :func:`train_proxy` does). Ignored for images.
        max_tokens: The cap of that default vocabulary.
        rows_per_pair: Most clean source rows triggered per pair.

    Returns:
        ``None`` when the dataset records no attack (``metadata["poison"]``, written by
        :mod:`acgate.io.poison`) or no clean source row is left; else ``{"attack_success"
        (pooled over the pairs), "attack_success_rows" (rows triggered), "attack_success_pairs":
        [{"source", "target", "n", "attack_success_rate"}]}``.
    """
    from acgate.io.poison import recorded_attack
    from acgate.text import TextTruncationWarning
    from acgate.torch.evaluate import attack_success_by_pair

    check_positive_int(rows_per_pair, name="rows_per_pair")
    text = _is_text(dataset)
    attack = recorded_attack(dataset.metadata)
    if attack is None or attack.modality != ("text" if text else "image"):
        return None
    labels = np.asarray(dataset.labels)
    poison = np.asarray(dataset.columns.get("is_poison", np.zeros(len(labels))), dtype=bool)
    if text and vocabulary is None:
        vocabulary = text_vocabulary(dataset, max_tokens)
    rng = np.random.default_rng(seed)

    def triggered() -> Any:
        for source, target in attack.pairs:
            rows = np.flatnonzero((labels == source) & ~poison)
            if len(rows) > rows_per_pair:
                rows = np.sort(rng.choice(rows, rows_per_pair, replace=False))
            if text:
                with warnings.catch_warnings():
                    # A triggered copy of one of the longest texts is cut at the proxy's
                    # length, as any input is; not a problem of the user's data to warn about.
                    warnings.simplefilter("ignore", TextTruncationWarning)
                    inputs = vocabulary.encode(attack.apply([dataset.texts[i] for i in rows],
                                                            rng=rng))
            else:
                inputs = attack.apply(dataset.images[rows], rng=rng)
            yield source, target, inputs

    measured = attack_success_by_pair(model, triggered())
    if measured["attack_success_rate"] is None:
        return None
    return {"attack_success": float(measured["attack_success_rate"]),
            "attack_success_rows": int(measured["n_triggered"]),
            "attack_success_pairs": measured["per_pair"]}


def weak_proxy_warning(proxy: Mapping[str, Any] | None) -> str | None:
    """The warning a scan gives when its proxy did not learn the recorded trigger.

    Args:
        proxy: The proxy's training record (``scan.json``'s ``"proxy"``), or ``None``.

    Returns:
        The sentence when the attack success is known and below :data:`WEAK_ATTACK_SUCCESS`,
        else ``None``.
    """
    success = (proxy or {}).get("attack_success")
    if success is None or success >= WEAK_ATTACK_SUCCESS:
        return None
    return (f"the proxy learned the recorded trigger on only {success:.0%} of "
            f"{proxy.get('attack_success_rows', 'the')} triggered rows; a clean verdict here is "
            "weak evidence")


def small_class_warning(result: DetectionResult) -> str | None:
    """The warning a scan gives when it judged classes of fewer than :data:`SMALL_CLASS_ROWS`.

    The verdict and exit code stay as they are; the sentence says what a verdict on classes
    this small is worth, as measured (see :data:`SMALL_CLASS_ROWS`). An incremental scan, which
    judges new rows against a baseline instead, gets none.

    Args:
        result: The scan's detection result.

    Returns:
        The sentence, or ``None`` when every judged class has at least that many rows.
    """
    if result.info.params.get("analysis") == "incremental":
        return None
    small = sorted((report.label, report.n_samples) for report in result.classes
                   if report.verdict != "skipped" and report.n_samples < SMALL_CLASS_ROWS)
    if not small:
        return None
    labels = ", ".join(str(label) for label, _ in small)
    fewest = min(n for _, n in small)
    return (f"class{'es' if len(small) > 1 else ''} {labels} "
            f"{'have' if len(small) > 1 else 'has'} fewer than {SMALL_CLASS_ROWS:,} rows "
            f"(fewest: {fewest:,}); on classes this small (scikit-learn's digits, ~180 rows a "
            "class) acgate's benchmark missed poison spread from many source classes at 0.3-3% "
            "of the data and flagged natural groups on some clean runs: a clean verdict here is "
            "weak evidence against such poison, and a flagged class deserves its report card "
            "(bench/RESULTS.md, \"attack_matrix\", \"digits_separation\")")


def load_user_vocabulary(config: ScanConfig) -> Any:
    """The vocabulary of the user's text model: ``vocab.json`` beside the model file.

    Raises:
        ValueError: When there is none (the message names the expected path).
    """
    from acgate.text import load_vocabulary

    path = Path(str(config.model_path)).parent / VOCABULARY_FILE
    if not path.is_file():
        raise ValueError(
            f"a text model needs its vocabulary: {path} does not exist. Save it beside the "
            "model with acgate.text.Vocabulary.save (as `acgate scan` does), or bring your "
            "own model's embeddings to `acgate detect` (docs/embeddings.md)")
    return load_vocabulary(path)


def text_scan_info(dataset: Any, config: ScanConfig, vocabulary: Any) -> dict[str, Any]:
    """What ``scan.json`` records about a text scan: the proxy's shape and its vocabulary."""
    return {"proxy": "textcnn" if not config.model_path else None,
            "vocab_size": vocabulary.size, "max_len": vocabulary.max_len,
            "hidden": config.hidden, "vocabulary_file": VOCABULARY_FILE,
            "epochs": config.resolved_text_epochs(len(dataset)),
            "embedding_init": TEXT_EMBEDDING_INIT}


def load_user_model(config: ScanConfig) -> Any:
    """Load the user's model (``weights_only=True`` for state dicts)."""
    from acgate.torch._arrays import resolve_device
    from acgate.torch.byo import load_model

    model = load_model(config.model_path, module=config.model_module)
    return model.to(resolve_device(config.device))


def extract_to_parquet(model: Any, dataset: Any, path: str | Path, config: ScanConfig, *,
                       vocabulary: Any = None, metadata: Mapping[str, Any] | None = None,
                       first_row: int = 0) -> Any:
    """Stream the last-hidden-layer activations of every sample to an activations Parquet file.

    Args:
        model: The trained model.
        dataset: The image or text dataset.
        path: The activations Parquet file to write.
        config: Scan settings (``layer``).
        vocabulary: For text: the vocabulary the model was trained with (default: the one
            built from the dataset's texts, as :func:`train_proxy` does).
        metadata: More entries for the file's metadata (e.g. the modality).
        first_row: The dataset row of ``dataset``'s first row (a shard's): the ``index`` of
            each row is ``first_row`` plus its position.

    Returns:
        The :class:`acgate.io.activations.ActivationTable` read back from the file.
    """
    from acgate.io.activations import ActivationWriter, read_activations
    from acgate.torch.extract import iter_activations

    labels = dataset.labels
    writer = None
    start = 0
    try:
        for activations, predictions in iter_activations(model,
                                                         model_inputs(
                                                             dataset, vocabulary,
                                                             max_tokens=config.max_tokens),
                                                         layer=config.layer):
            if writer is None:
                writer = ActivationWriter(path, activations.shape[1],
                                          metadata={"layer": config.layer or "last-hidden",
                                                    **dict(metadata or {})})
                writer.open()
            stop = start + len(activations)
            writer.write_batch(np.arange(first_row + start, first_row + stop),
                               labels[start:stop], predictions, activations)
            start = stop
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise ValueError("the dataset has no rows; nothing to extract")
    writer.close()
    return read_activations(path)


def make_retrain(dataset: Any, config: ScanConfig) -> Any:
    """The ``retrain_and_predict`` callable exclusionary reclassification needs."""
    from acgate.torch.exre import make_retrain_and_predict

    factory = _proxy_factory(dataset, config, n_classes_of(dataset.labels))
    epochs = config.exre_epochs or (config.resolved_text_epochs(len(dataset))
                                    if _is_text(dataset) else config.resolved_epochs(len(dataset)))
    return make_retrain_and_predict(
        model_inputs(dataset, max_tokens=config.max_tokens), dataset.labels,
        model_factory=factory, epochs=epochs,
        batch_size=config.batch_size, lr=config.lr, seed=config.seed,
        progress=config.progress, device=config.device, max_rows=config.exre_max_rows,
    )


def detect_table(table: Any, config: ScanConfig, *, retrain_and_predict: Any = None
                 ) -> DetectionResult:
    """Run the core detector on an activations table."""
    return detect(
        table.activations, table.labels, predictions=table.predictions,
        sample_ids=table.indices, retrain_and_predict=retrain_and_predict,
        **config.detect_kwargs(),
    )


def run_scan(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: ScanConfig | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str = "acgate",
    modality: str | None = None,
    report: bool = True,
    overwrite: bool = False,
    scan_info: Mapping[str, Any] | None = None,
    rescan_of: str | None = None,
    dataset_uri: str | None = None,
) -> ScanOutcome:
    """Scan a dataset: validate, train the proxy, extract, detect, report, track.

    The output folder is checked before any work (see :func:`acgate.io.output.output_folder`:
    never the dataset's own folder, the working folder, or a folder of someone else's files),
    locked against a second writer until the MLflow run has logged it, and written
    atomically: it holds either the previous complete result or the new complete one. The
    tracking store is checked with a real API call before training, so an outage costs seconds;
    a store that fails after the verdict was reached leaves the outputs written and the reason
    in :attr:`ScanOutcome.tracking_error`.

    Args:
        dataset_path: The dataset Parquet file (a label column + an image or a text column,
            named by ``config.label_column``, ``image_column``, ``text_column``; row ids from
            ``config.id_column`` reach every per-row output).
        out_dir: Output folder: ``activations.parquet``, ``samples.parquet``,
            ``classes.parquet``, ``flagged.parquet``, ``report.json``, ``report.html``, plots.
        config: Scan settings (default :class:`ScanConfig`).
        tracking_uri: MLflow tracking URI; ``None`` turns tracking off.
        experiment: MLflow experiment name.
        modality: ``"image"`` or ``"text"``; ``None`` picks from the columns (a file with both
            an ``image`` and a ``text`` column needs it). Text: Kim's CNN over a vocabulary
            built from the dataset's own texts (saved as ``vocab.json`` beside ``model.pt``);
            with ``config.model_path``, ``vocab.json`` must sit beside the model file.
        report: Write the HTML report.
        overwrite: Accept an output folder with files acgate did not write (only acgate's
            outputs are replaced there).
        scan_info: More entries for ``scan.json``.
        rescan_of: The MLflow scan run whose repaired data ``dataset_path`` is: the new run is
            logged as its child, tagged ``acgate.rescan_of`` (the pipeline's ``rescan`` step).
        dataset_uri: Where the data came from, recorded and reported instead of
            ``dataset_path`` (a pipeline step reads a staged copy); ``None``: ``dataset_path``.

    Returns:
        The :class:`ScanOutcome`.

    Raises:
        ValueError: Bad input or a refused output folder (nothing is written).
        acgate.errors.InfrastructureError: The tracking store cannot be used (before training).
    """
    from acgate.io.output import output_folder

    started_at = time.time()  # the MLflow run spans the scan, not only its logging
    config = config or ScanConfig()
    dataset_path = Path(dataset_path)
    out_dir = Path(out_dir)
    inputs = (dataset_path, config.model_path)
    _check_before_work(out_dir, inputs, config, tracking_uri)
    timings = _Laps()
    modality, gx_dataset, dataset, config, dataset_sha256 = _read_validated(
        dataset_path, modality, config, timings)

    # The user's model is loaded (and refused when unsafe) before the output folder is touched.
    user_model = load_user_model(config) if config.model_path else None
    with output_folder(out_dir, command="scan", inputs=inputs, overwrite=overwrite) as output:
        analyzed = _scan_stages(dataset_path, dataset, output.staging, config, user_model,
                                timings, report=report, dataset_sha256=dataset_sha256,
                                gx_dataset=gx_dataset, out_dir=out_dir,
                                scan_info={"mode": "full", **(scan_info or {})},
                                dataset_uri=dataset_uri)
        output.commit()
        files = {name: out_dir / Path(path).name for name, path in analyzed.files.items()}
        for name in ("activations.parquet", "model.pt", "model.json", VOCABULARY_FILE):
            if (out_dir / name).exists():
                files[name] = out_dir / name

        # Still under the folder's lock: the run logs this scan's files, not a later writer's.
        run_id, tracking_error = _track(analyzed, out_dir, config, tracking_uri, experiment,
                                        started_at, timings, rescan_of=rescan_of)
    return ScanOutcome(result=analyzed.result, out_dir=out_dir, files=files, run_id=run_id,
                       timings=dict(timings), dataset_sha256=dataset_sha256,
                       tracking_error=tracking_error, proxy=analyzed.scan_info.get("proxy"),
                       shift_reason=(scan_info or {}).get("shift_reason"),
                       label_names=dataset.label_names)


def _check_before_work(out_dir: Path, inputs: tuple[Any, ...], config: ScanConfig,
                       tracking_uri: str | None) -> None:
    """What a scan refuses before reading the data: the output folder, the device, the store."""
    from acgate.io.output import check_output_folder
    from acgate.torch._arrays import resolve_device

    check_output_folder(out_dir, inputs=inputs)  # before anything is read or trained
    resolve_device(config.device)  # --device cuda without CUDA: refused before the data is read
    if tracking_uri is not None:
        from acgate.mlflow import check_tracking_store

        check_tracking_store(tracking_uri)


class _Shifted(Exception):
    """The partition moved too far from the baseline (its staged outputs are dropped)."""


def run_incremental_scan(
    dataset_path: str | Path,
    out_dir: str | Path,
    baseline: str | Path,
    config: ScanConfig | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str = "acgate",
    modality: str | None = None,
    report: bool = True,
    overwrite: bool = False,
    fallback: bool = True,
    dataset_uri: str | None = None,
    rescan_of: str | None = None,
) -> ScanOutcome:
    """Scan a new partition against the last accepted scan, without training a proxy.

    The baseline scan's proxy gives the partition's activations; each class of the partition is
    judged against the baseline's own activations of its kept rows
    (:mod:`acgate.core.incremental`). The output folder gets the same files as
    :func:`run_scan` (``scan.json``: ``"mode": "incremental"`` and the baseline). When the
    partition has moved too far from the baseline for that judgement and ``fallback`` is on,
    the partition is scanned in full instead (``mode == "full"``, the reason in
    :attr:`ScanOutcome.shift_reason` and ``scan.json``).

    Args:
        dataset_path: The new partition (a dataset Parquet file).
        out_dir: Output folder, as for :func:`run_scan`.
        baseline: The accepted scan: its output folder (verdict ``clean``, with its proxy:
            ``model.pt``, ``model.json``, ``activations.parquet``, ``samples.parquet``), a
            baseline folder the pipeline published (:func:`acgate.stages.publish_baseline_stage`),
            either as a path or a URI :mod:`pyarrow.fs` opens (``s3://``, ``gs://``), or
            ``runs:/<scan run id>/baseline`` (the pipeline's clean full scan in MLflow, read
            through ``tracking_uri``), or ``models:/<name>@<alias>`` (``/<version>``): the
            baseline of the scan that cleared that registered version for the promotion gate,
            so a nightly incremental scan follows the promoted model (``scan.json`` records
            the ``runs:/`` URI it resolved to and the model version the alias named then).
        config: Scan settings (the detector's are used by a full fallback only).
        tracking_uri: MLflow tracking URI; ``None`` turns tracking off.
        experiment: MLflow experiment name.
        modality: ``"image"`` or ``"text"``; ``None`` picks from the columns.
        report: Write the HTML report.
        overwrite: As for :func:`run_scan`.
        fallback: Scan in full when the partition has shifted (else the incremental verdict
            stands, with ``shifted`` recorded).
        dataset_uri: Where the partition came from, recorded instead of ``dataset_path`` (the
            pipeline's staged copy); ``None``: ``dataset_path``.
        rescan_of: The MLflow scan run whose repaired partition ``dataset_path`` is: the new
            run is its child, tagged ``acgate.rescan_of`` (the incremental pipeline's
            ``rescan`` step), as :func:`run_scan`'s.

    Returns:
        The :class:`ScanOutcome`.

    Raises:
        ValueError: Bad input, a baseline that is not an accepted full scan with its proxy, a
            partition its proxy cannot read (another modality, image shape or ``--layer``), or
            a refused output folder (nothing is written).
        acgate.errors.InfrastructureError: The tracking store cannot be used (before any work).
    """
    from acgate.stages import baseline_folder, is_local_baseline, resolve_baseline

    config = config or ScanConfig()
    if config.model_path:
        raise ValueError(f"--baseline reuses the baseline's proxy; it cannot be combined with "
                         f"--model {config.model_path!r}")
    source = str(baseline)
    local = is_local_baseline(source)
    if local:  # recorded as the folder it is, wherever the command ran
        source = str(Path(source.removeprefix("file://")).resolve())
    inputs = (Path(dataset_path), *((Path(source),) if local else ()))
    _check_before_work(Path(out_dir), inputs, config, tracking_uri)
    # models:/: its scan run's baseline, and the version the alias named
    resolved, model = resolve_baseline(source, tracking_uri=tracking_uri)
    with baseline_folder(resolved, tracking_uri=tracking_uri) as folder:
        return _incremental_scan(Path(dataset_path), Path(out_dir), folder, source, config,
                                 resolved="" if resolved == source else resolved,
                                 model=model,
                                 tracking_uri=tracking_uri, experiment=experiment,
                                 modality=modality, report=report, overwrite=overwrite,
                                 fallback=fallback, dataset_uri=dataset_uri,
                                 rescan_of=rescan_of)


def _incremental_scan(dataset_path: Path, out_dir: Path, baseline: Path, source: str,
                      config: ScanConfig, *, tracking_uri: str | None, experiment: str,
                      modality: str | None, report: bool, overwrite: bool,
                      fallback: bool, dataset_uri: str | None, resolved: str = "",
                      model: tuple[str, str] | None = None,
                      rescan_of: str | None = None) -> ScanOutcome:
    """:func:`run_incremental_scan` on a local baseline folder (``source``: as named)."""
    from acgate.io.output import output_folder
    from acgate.stages import (
        check_partition,
        copy_proxy,
        extract_stage,
        incremental_stage,
        read_baseline,
    )

    started_at = time.time()
    inputs = (dataset_path, baseline)
    # No accepted scan: refused before any work.
    accepted = read_baseline(baseline, source=source, resolved=resolved, model=model)
    timings = _Laps()
    modality, gx_dataset, dataset, config, dataset_sha256 = _read_validated(
        dataset_path, modality, config, timings)
    check_partition(accepted, dataset, modality, config)

    def stop_if_shifted(reason: str) -> None:
        if fallback:
            raise _Shifted(reason)

    try:
        with output_folder(out_dir, command="scan", inputs=inputs,
                           overwrite=overwrite) as output:
            timings.start("extracting activations",
                          f"{len(dataset):,} rows with the baseline's proxy")
            activations = output.staging / "activations.parquet"
            _, gx_activations = extract_stage(dataset_path, baseline, activations, config,
                                              dataset=dataset)
            timings.lap("extract")
            timings.start("analysing", f"against the baseline {source}")
            analyzed = incremental_stage(
                activations, accepted, dataset_path, output.staging, config, dataset=dataset,
                dataset_sha256=dataset_sha256, report=report, scan_folder=out_dir,
                validated={"dataset": gx_dataset, "activations": gx_activations},
                scan_info={"timings": dict(timings)}, stop_if_shifted=stop_if_shifted,
                dataset_uri=dataset_uri)
            timings.lap("analyze_report")
            # The proxy that judged these rows (the baseline's): acgate repair reads it here.
            copy_proxy(baseline, output.staging)
            output.commit()
            files = {name: out_dir / Path(path).name for name, path in analyzed.files.items()}
            files["activations.parquet"] = out_dir / "activations.parquet"
            run_id, tracking_error = _track(analyzed, out_dir, config, tracking_uri,
                                            experiment, started_at, timings, rescan_of=rescan_of)
    except _Shifted as shifted:
        logger.warning("the partition moved too far from the baseline (%s): scanning it in "
                       "full", shifted)
        return run_scan(dataset_path, out_dir, config, tracking_uri=tracking_uri,
                        experiment=experiment, modality=modality, report=report,
                        overwrite=overwrite, dataset_uri=dataset_uri, rescan_of=rescan_of,
                        scan_info={"shift_reason": str(shifted),
                                   "baseline": accepted.record})
    return ScanOutcome(result=analyzed.result, out_dir=out_dir, files=files, run_id=run_id,
                       timings=dict(timings), dataset_sha256=dataset_sha256,
                       tracking_error=tracking_error, proxy=analyzed.scan_info.get("proxy"),
                       mode="incremental", shift_reason=analyzed.scan_info["shift_reason"],
                       label_names=dataset.label_names)


def _read_validated(dataset_path: Path, modality: str | None, config: ScanConfig,
                    timings: _Laps) -> tuple[str, Any, Any, ScanConfig, str]:
    """Validate and read the dataset by its columns: modality, suite, data, config, digest."""
    from acgate.io.datasets import read_dataset
    from acgate.io.digest import file_sha256
    from acgate.stages import dataset_modality, modality_config

    timings.start("reading and validating", str(dataset_path))
    modality = dataset_modality(dataset_path, modality, config.columns)
    # The suite also checks the label column (rows, classes, class sizes, range) and the ids.
    gx_dataset = validate_dataset_file(dataset_path, modality=modality,
                                       max_decoded_bytes=config.max_decoded_bytes,
                                       columns=config.columns)
    dataset = read_dataset(dataset_path, modality=modality,
                           max_decoded_bytes=config.max_decoded_bytes, columns=config.columns)
    config = modality_config(config, modality)
    sha256 = file_sha256(dataset_path)
    timings.lap("read_validate")
    return modality, gx_dataset, dataset, config, sha256


def _track(analyzed: Any, out_dir: Path, config: ScanConfig, tracking_uri: str | None,
           experiment: str, started_at: float, timings: _Laps, *,
           rescan_of: str | None = None) -> tuple[str | None, str | None]:
    """Log the scan to MLflow when tracking is on: the run id, or the outage's text."""
    from acgate.errors import InfrastructureError
    from acgate.stages import track_scan

    if tracking_uri is None:
        return None, None
    timings.start("logging to MLflow", tracking_uri)
    try:
        run_id = track_scan(analyzed, out_dir, config, tracking_uri=tracking_uri,
                            experiment=experiment, started_at=started_at, rescan_of=rescan_of)
    except InfrastructureError as error:
        # The verdict stands and is on disk; the caller reports the outage beside it.
        logger.error("scan verdict %s written to %s, but tracking failed: %s",
                     analyzed.result.verdict, out_dir, error)
        return None, str(error)
    finally:
        timings.lap("mlflow")
    return run_id, None


def _analysis_outlook(config: ScanConfig, train_seconds: float | None, n_rows: int) -> str:
    """What the analysis stage will do, and about how long, for its progress line."""
    if config.analysis not in ("auto", "exre"):
        return f"{config.analysis} on the clusterings"
    what = "retraining the proxy without the candidates, then without the class tails"
    if config.model_path or not train_seconds:
        return what
    # Each retrain runs --exre-epochs (default: the proxy's epochs) on about the same rows, at
    # most --exre-max-rows of them.
    share = config.exre_epochs / config.epochs if config.exre_epochs and config.epochs else 1.0
    if config.exre_max_rows is not None:
        share *= min(1.0, config.exre_max_rows / max(n_rows, 1))
    return f"{what} (about {2 * share * train_seconds:.0f} s from the proxy's training time)"


#: The scan's stages as its progress lines number them.
SCAN_STAGES = ("reading and validating", "training the proxy", "extracting activations",
               "clustering", "analysing", "logging to MLflow")
_progress = logging.getLogger(PROGRESS_LOGGER)


class _Laps(dict):  # type: ignore[type-arg]
    """Wall seconds per stage, measured lap by lap, each stage announced on the progress log."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = time.perf_counter()

    def start(self, stage: str, detail: str = "") -> None:
        """Announce a stage of :data:`SCAN_STAGES` (with what it works on)."""
        number = SCAN_STAGES.index(stage) + 1
        _progress.info("[%d/%d] %s%s", number, len(SCAN_STAGES), stage,
                       f": {detail}" if detail else "")

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = now - self._clock
        self._clock = now
        _progress.info("      %s done in %.1f s", name.replace("_", " "), self[name])


def _scan_stages(dataset_path: Path, dataset: Any, staging: Path, config: ScanConfig,
                 user_model: Any, timings: _Laps, *, report: bool,
                 dataset_sha256: str, gx_dataset: Any, out_dir: Path,
                 scan_info: Mapping[str, Any], dataset_uri: str | None = None) -> Any:
    """The pipeline's stages, in order, in one process: train, extract, cluster, analyze.

    Exactly the functions the Kubeflow components wrap (:mod:`acgate.stages`), so both paths
    give the same result; here the activations are one file, and the pipeline's collected
    activation dataset differs only for a class above 200k rows, which its cluster step
    clusters from a sample.
    """
    import tempfile

    from acgate.stages import analyze_stage, cluster_stage, extract_stage, train_proxy_stage

    vocabulary = None
    n_rows = len(dataset)
    if user_model is None:
        epochs = (config.resolved_text_epochs(n_rows) if hasattr(dataset, "texts")
                  else config.resolved_epochs(n_rows))
        timings.start("training the proxy", f"{n_rows:,} rows, {epochs} epochs")
        train_proxy_stage(dataset_path, staging, config, dataset=dataset)
    else:
        timings.start("training the proxy", f"skipped: the given model {config.model_path}")
        if hasattr(dataset, "texts"):
            vocabulary = load_user_vocabulary(config)
    timings.lap("train_proxy")
    timings.start("extracting activations", f"{n_rows:,} rows")
    activations = staging / "activations.parquet"
    segments, gx_activations = extract_stage(
        dataset_path, None if user_model else staging, activations, config, dataset=dataset,
        model=user_model, vocabulary=vocabulary)
    timings.lap("extract")
    with tempfile.TemporaryDirectory(prefix="acgate-clusterings-") as work:
        paths = [Path(work) / f"class-{label}.parquet" for label in segments]
        timings.start("clustering", f"{len(segments)} classes")
        for label, path in zip(segments, paths, strict=True):
            cluster_stage(activations, label, path, config)
        timings.lap("cluster")
        timings.start("analysing", _analysis_outlook(config, timings.get("train_proxy"), n_rows))
        analyzed = analyze_stage(activations, dataset_path, paths, staging, config,
                                 dataset_sha256=dataset_sha256, dataset=dataset,
                                 report=report, dataset_uri=dataset_uri,
                                 scan_info={**scan_info, "timings": dict(timings)},
                                 scan_folder=out_dir,
                                 validated={"dataset": gx_dataset,
                                            "activations": gx_activations})
    timings.update({f"detect_{k}": v for k, v in analyzed.result.info.timings.items()})
    timings.lap("analyze_report")
    return analyzed
