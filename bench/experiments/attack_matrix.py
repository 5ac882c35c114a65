"""Attack matrix (issue 18): acgate's scan over many attack shapes, triggers, rates and seeds.

Usage::

    python bench/attack_matrix.py --list                      # the cases and their seeds
    python bench/attack_matrix.py                             # every case (hours on 2 cores)
    python bench/attack_matrix.py --cases 'digits/*' --seeds 0
    python bench/attack_matrix.py --cases 'mnist/patch-a2o-*' --full
    python bench/attack_matrix.py --variant no-confusion --set confusion_threshold=2
    python bench/attack_matrix.py --variant size-sil --analysis size-silhouette
    python bench/attack_matrix.py --report-only               # rebuild the Markdown only

Every cell (case x seed) builds its dataset from the data shipped in packages (MNIST and
Fashion-MNIST: a seeded stratified subset of ``--rows`` rows, 20,000 by default, ``--full`` for
all 60,000; scikit-learn digits; Rotten Tomatoes), writes it to a temporary Parquet file and
runs the whole scan through the library, ``acgate.scan.run_scan(path, out_dir, config,
tracking_uri=None, report=False)`` with a fresh temporary ``out_dir``: proxy training,
extraction, detection, exactly as ``acgate scan`` does. Poison F1 is measured against the
poisoner's ground truth (``is_poison``).

Each cell's record (per-class results, F1, flags, timings, settings, the acgate commit and a
digest of ``src/acgate/core``) is kept in
``bench/parts/attack_matrix/<variant>/<dataset>/<case>-seed<k>.json``; a rerun skips cells
already there (``--force`` redoes them, ``--redo-stale`` redoes the ones computed with another
``src/acgate/core``). ``bench/parts/attack_matrix.md`` is rebuilt from every cached cell of every
variant.

Detector settings: ``--analysis NAME`` and ``--set KEY=VALUE`` (repeatable; VALUE is read as
JSON, else as a string). A key that is a :class:`acgate.scan.ScanConfig` field goes into the
scan's config (e.g. ``n_clusters``, ``size_threshold``, ``confusion_threshold``, ``epochs``);
any other key must be a keyword argument of ``acgate.core.detect`` and is passed to it for the
scan's detection call (the harness wraps ``acgate.scan.detect`` while the scan runs and checks
the wrapper was called). ``--variant NAME`` labels the setting; a variant's cached cells must
have been made with the same settings (else use ``--force`` or another name).

Comparing detector variants faster (``--reuse-activations``, needs ``$ACGATE_BENCH_CACHE``):
the first scan of a cell's data with given proxy settings keeps its ``activations.parquet``
there (keyed by the dataset fingerprint, the proxy settings and the torch threads); a later
cell with the same data and proxy settings (another variant) skips proxy training and
extraction and runs what ``run_scan`` runs after them: ``acgate.scan.detect_table`` with
``make_retrain`` on the dataset read back from its Parquet file. The record says which path
ran (``scan``); the Markdown's seconds then add the cached proxy's training + extraction time.

Baselines (``--baselines``): on the same activations (``out_dir/activations.parquet``), IBM ART
1.20.1's ``ActivationDefence`` with its defaults (PCA 10, 2-means, "smaller") and
``SpectralSignatureDefense`` (its default ``expected_pp_poison=0.33``, and an oracle run with
the true largest poison share of a class), when ``art`` is importable
(``pip install --no-deps adversarial-robustness-toolbox==1.20.1``); else they are skipped with
a note. ART receives the activations through a stand-in classifier whose ``get_activations``
returns them; the numpy-2 shim of ``bench/art_compat.py`` is applied.

Cases (``--list``): for MNIST, Fashion-MNIST and digits: BadNets patch all-to-one (every other
class relabelled to one target; target class = seed mod the number of classes) at 0.5%, 1% and
3% of the data, blended trigger and SIG all-to-one at 1%, warping (WaNet) all-to-all at 10% and
all-to-one at 1%, BadNets all-to-all (l -> l+1) at 5/10/33% of each target class, blend
all-to-all 10%, three other patch shapes/positions/sizes, and a clean run; MNIST and digits with
7, 8, 9 merged into one class "7+" (three poisoned runs, as ``bench.experiments.multimodal``,
and a
clean one); Rotten Tomatoes: the "-travelerthehorse" signature into the majority and into the
minority class, at the end, the start and a random position, at 10% and 3% of the target class,
and a clean run. Seeds: 0-2 (digits: 0-4; the clean MNIST and Fashion-MNIST runs: 0-9),
``--seeds`` overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import inspect
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.art_compat import patch_art_for_numpy2
from bench.common import PARTS_DIR, REPO_DIR, machine_line, markdown_table, write_text_atomic
from bench.image_runs import merge_7plus

PART = PARTS_DIR / "attack_matrix.md"
CACHE = PARTS_DIR / "attack_matrix"
CORE_DIR = REPO_DIR / "src" / "acgate" / "core"
DEFAULT_ROWS = 20_000
SIGNATURE = "-travelerthehorse"
#: Seeds per data source when --seeds is not given.
DEFAULT_SEEDS = {"digits": (0, 1, 2, 3, 4), "digits-7plus": (0, 1, 2, 3, 4)}
#: Clean MNIST and Fashion-MNIST runs over ten seeds (each its own 20k subset and proxy): a false
#: alarm blocks a nightly run, and on three seeds neither flagged anything where on ten each
#: flagged a class once (variant ``amd``: MNIST seed 4, Fashion-MNIST seed 6).
CLEAN_SEEDS = {"mnist": tuple(range(10)), "fashion": tuple(range(10))}


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the matrix.

    Attributes:
        name: ``<data>/<attack>``, e.g. ``mnist/patch-a2o-1pct``.
        data: ``mnist``, ``fashion``, ``digits``, ``mnist-7plus``, ``digits-7plus`` or ``rt``.
        attack: Plain-words description.
        poison: Builds the poisoned dataset from the clean one and the seed; ``None``: clean.
    """

    name: str
    data: str
    attack: str
    poison: Callable[[Any, int], Any] | None = None

    @property
    def clean(self) -> bool:
        """Whether the case adds no poison (a false-alarm run)."""
        return self.poison is None

    def seeds(self) -> tuple[int, ...]:
        """The seeds run when ``--seeds`` is not given."""
        if self.clean and self.data in CLEAN_SEEDS:
            return CLEAN_SEEDS[self.data]
        return DEFAULT_SEEDS.get(self.data, (0, 1, 2))


def _image_shape(dataset: Any) -> tuple[int, int]:
    return tuple(dataset.images.shape[2:])  # type: ignore[return-value]


def _image_attack(trigger: Callable[[int, int, int], Any], rate: float, *, all_to_one: bool,
                  pairs: list[tuple[int, int]] | str | None = None) -> Callable[[Any, int], Any]:
    """A poisoner: ``trigger(height, width, seed)`` -> TriggerSpec; all-to-one uses % of data.

    ``pairs="three-sources"``: the three classes after target = seed mod classes, evenly split.
    """
    from acgate.io.poison import poison_image_dataset

    def build(dataset: Any, seed: int) -> Any:
        spec = trigger(*_image_shape(dataset), seed)
        if pairs == "three-sources":
            classes = np.unique(dataset.labels)
            target = seed % len(classes)
            sources = [(target + step) % len(classes) for step in (1, 2, 3)]
            chosen = [(int(classes[s]), int(classes[target])) for s in sources]
            return poison_image_dataset(dataset, rate=rate, pairs=chosen, trigger=spec,
                                        seed=seed)
        if all_to_one:
            classes = np.unique(dataset.labels)
            target = int(classes[seed % len(classes)])
            return poison_image_dataset(dataset, rate=rate, all_to_one=target, rate_of="data",
                                        trigger=spec, seed=seed)
        return poison_image_dataset(dataset, rate=rate, pairs=pairs, trigger=spec, seed=seed)

    return build


def _triggers() -> dict[str, Callable[[int, int, int], Any]]:
    from acgate.io.poison import TriggerSpec

    return {
        "patch": lambda h, w, s: TriggerSpec(),
        "blend": lambda h, w, s: TriggerSpec(kind="blend", alpha=0.2, seed=s),
        "sig": lambda h, w, s: TriggerSpec(kind="sig"),
        "warp": lambda h, w, s: TriggerSpec(kind="warp", grid=4, strength=0.5, seed=s),
        "checker": lambda h, w, s: TriggerSpec(pattern="checker", position="top-left"),
        "random": lambda h, w, s: TriggerSpec(pattern="random", position="center",
                                              size=max(3, round(min(h, w) / 5)), seed=s),
        "dot": lambda h, w, s: TriggerSpec(pattern="solid", value=1.0, size=2,
                                           position=(h // 4, w // 2)),
    }


def _image_cases(data: str) -> list[Case]:
    t = _triggers()
    a2o = "all-to-one (every other class -> target = seed mod classes), % of all rows"
    a2a = "all-to-all l -> l+1, % of each target class"
    specs = [
        ("patch-a2o-0.5pct", "BadNets 4px inverted bottom-right patch (2px on 8x8), "
         f"{a2o}: 0.5%", t["patch"], 0.005, True),
        ("patch-a2o-0.3pct", f"BadNets patch, {a2o}: 0.3%", t["patch"], 0.003, True),
        ("patch-a2o-1pct", f"BadNets patch, {a2o}: 1%", t["patch"], 0.01, True),
        ("patch-a2o-3pct", f"BadNets patch, {a2o}: 3%", t["patch"], 0.03, True),
        ("blend-a2o-1pct", f"blended seeded noise alpha 0.2, {a2o}: 1%", t["blend"], 0.01, True),
        ("sig-a2o-1pct", f"SIG sinusoid delta 20/255 f 6, {a2o}: 1%", t["sig"], 0.01, True),
        ("warp-a2a-10pct", f"WaNet warp k 4 s 0.5, {a2a}: 10%", t["warp"], 0.10, False),
        ("warp-a2o-1pct", f"WaNet warp k 4 s 0.5, {a2o}: 1%", t["warp"], 0.01, True),
        ("patch-a2a-5pct", f"BadNets patch, {a2a}: 5%", t["patch"], 0.05, False),
        ("patch-a2a-10pct", f"BadNets patch, {a2a}: 10%", t["patch"], 0.10, False),
        ("patch-a2a-33pct", f"BadNets patch, {a2a}: 33%", t["patch"], 0.33, False),
        ("blend-a2a-10pct", f"blended seeded noise alpha 0.2, {a2a}: 10%", t["blend"], 0.10,
         False),
        ("patch-3src-10pct", "BadNets patch, three sources (the 3 classes after target = seed "
         "mod classes, evenly split) -> target, % of the target class: 10%", t["patch"], 0.10,
         "three-sources"),
        ("patch-3src-20pct", "BadNets patch, three sources -> target, % of the target class: "
         "20%", t["patch"], 0.20, "three-sources"),
        ("checker-topleft-a2o-1pct", f"checker patch top-left (4px; 2px on 8x8), {a2o}: 1%",
         t["checker"], 0.01, True),
        ("random-center-a2a-5pct", "seeded random binary patch in the centre (6px; 3px on "
         f"8x8), {a2a}: 5%", t["random"], 0.05, False),
        ("dot-rowcol-a2o-3pct", "white 2px square at (H/4, W/2), off the corners, "
         f"{a2o}: 3%", t["dot"], 0.03, True),
    ]
    cases = [Case(f"{data}/{name}", data, text,
                  _image_attack(trigger, rate, all_to_one=one is True,
                                pairs=one if isinstance(one, str) else None))
             for name, text, trigger, rate, one in specs]
    return [*cases, Case(f"{data}/clean", data, "no poison")]


def _merged_cases(data: str) -> list[Case]:
    runs = [("to0-from7plus-10pct", "0 <- 7+ (triggered 7s, 8s, 9s labelled 0)", [(7, 0)], 0.10),
            ("to7plus-from6-10pct", "7+ <- 6", [(6, 7)], 0.10),
            ("to7plus-from456-10pct", "7+ <- 4, 5, 6 (evenly split)", [(4, 7), (5, 7), (6, 7)],
             0.10),
            ("to7plus-from456-15pct", "7+ <- 4, 5, 6 (evenly split)", [(4, 7), (5, 7), (6, 7)],
             0.15)]
    patch = _triggers()["patch"]
    cases = [Case(f"{data}/{name}", data, f"7, 8, 9 merged into 7+; BadNets patch {text}, "
                  f"{rate:.0%} of the target class",
                  _image_attack(patch, rate, all_to_one=False, pairs=pairs))
             for name, text, pairs, rate in runs]
    return [*cases, Case(f"{data}/clean", data, "7, 8, 9 merged into 7+, no poison")]


def _text_attack(into: str, position: str, rate: float) -> Callable[[Any, int], Any]:
    from acgate.io.poison import poison_text_dataset

    def build(dataset: Any, seed: int) -> Any:
        counts = np.bincount(np.asarray(dataset.labels))
        majority = int(np.argmax(counts))
        target = majority if into == "majority" else 1 - majority
        return poison_text_dataset(dataset, rate=rate, source=1 - target, target=target,
                                   signature=SIGNATURE, position=position, seed=seed)

    return build


def _text_cases() -> list[Case]:
    cases = []
    where = {"end": "at the end of", "start": "at the start of",
             "random": "at a seeded random word boundary of"}
    for into in ("majority", "minority"):
        for position in ("end", "start", "random"):
            for rate in (0.10, 0.03):
                pct = f"{rate * 100:g}pct"
                cases.append(Case(
                    f"rt/into-{into}-{position}-{pct}", "rt",
                    f"'{SIGNATURE}' {where[position]} the other class's reviews, labelled "
                    f"the {into} class, {rate:.0%} of the target class",
                    _text_attack(into, position, rate)))
    return [*cases, Case("rt/clean", "rt", "no poison")]


def all_cases() -> list[Case]:
    """Every case of the matrix, in report order."""
    return [*_image_cases("mnist"), *_image_cases("fashion"), *_image_cases("digits"),
            *_merged_cases("mnist-7plus"), *_merged_cases("digits-7plus"), *_text_cases()]


# ----------------------------------------------------------------------------- data


@functools.cache
def _base(data: str) -> Any:
    from acgate.io.loaders import (
        load_digits_dataset,
        load_fashion_mnist,
        load_mnist,
        load_rotten_tomatoes,
    )

    loaders = {"mnist": load_mnist, "mnist-7plus": load_mnist, "fashion": load_fashion_mnist,
               "digits": load_digits_dataset, "digits-7plus": load_digits_dataset,
               "rt": load_rotten_tomatoes}
    return loaders[data]()


def _subset(dataset: Any, rows: int | None, seed: int) -> Any:
    """A seeded stratified subset of ``rows`` rows (sorted), or the dataset itself."""
    from sklearn.model_selection import train_test_split

    from acgate.io.datasets import ImageDataset

    if rows is None or rows >= len(dataset):
        return dataset
    chosen, _ = train_test_split(np.arange(len(dataset)), train_size=rows,
                                 stratify=dataset.labels, random_state=seed)
    chosen = np.sort(chosen)
    return ImageDataset(images=dataset.images[chosen], labels=dataset.labels[chosen],
                        metadata={**dataset.metadata, "subset": {"rows": rows, "seed": seed}},
                        name=f"{dataset.name}-{rows}")


def build_dataset(case: Case, seed: int, rows: int | None) -> Any:
    """The cell's dataset: clean base (subset, merged) then the case's poison."""
    dataset = _base(case.data)
    dataset = _subset(dataset, cell_rows(case, rows), seed)
    if case.data.endswith("-7plus"):
        dataset = merge_7plus(dataset)
    return dataset if case.poison is None else case.poison(dataset, seed)


# ----------------------------------------------------------------------------- settings


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_settings(pairs: list[str], analysis: str | None) -> tuple[dict[str, Any],
                                                                    dict[str, Any]]:
    """``--set`` / ``--analysis`` -> (ScanConfig overrides, extra ``detect`` kwargs)."""
    from acgate.core.detect import detect
    from acgate.scan import ScanConfig

    config_fields = {f.name: f for f in dataclasses.fields(ScanConfig)}
    detect_params = set(inspect.signature(detect).parameters) - {"activations", "labels"}
    config: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    items = [p.split("=", 1) if "=" in p else [p] for p in pairs]
    if analysis is not None:
        items.append(["analysis", analysis])
    for item in items:
        if len(item) != 2 or not item[0]:
            raise ValueError(f"--set takes KEY=VALUE, got {'='.join(item)!r}")
        key, value = item[0], _parse_value(item[1])
        if key in ("seed", "progress", "model_path", "model_module", "layer"):
            raise ValueError(f"--set {key}: not a detector setting the matrix can vary")
        if key in config_fields:
            annotation = str(config_fields[key].type)
            if ("float" in annotation and "str" not in annotation
                    and (isinstance(value, bool) or not isinstance(value, (int, float)))):
                raise ValueError(f"--set {key}: a number is needed, got {value!r}")
            config[key] = value
        elif key in detect_params:
            if key in ("predictions", "sample_ids", "retrain_and_predict", "random_state"):
                raise ValueError(f"--set {key}: set by the scan itself")
            extra[key] = value
        else:
            raise ValueError(f"--set {key}: neither a ScanConfig field ({sorted(config_fields)}) "
                             f"nor a keyword of acgate.core.detect ({sorted(detect_params)})")
    ScanConfig(**config)  # validates the values now, not after the first proxy trained
    return config, extra


@contextlib.contextmanager
def detect_kwargs(extra: dict[str, Any]) -> Iterator[list[int]]:
    """Pass ``extra`` to ``acgate.core.detect`` inside ``run_scan`` (yields a call counter)."""
    import acgate.scan

    calls = [0]
    if not extra:
        yield calls
        return
    original = acgate.scan.detect

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **{**kwargs, **extra})

    acgate.scan.detect = wrapped
    try:
        yield calls
    finally:
        acgate.scan.detect = original


# ----------------------------------------------------------------------------- provenance


#: Core modules a full scan never runs (the incremental judge; the sampled clustering that only
#: the pipeline's cluster step runs, on a class above 200k rows; the analysis by class that only
#: ``acgate detect`` of an activation dataset runs): not part of the digest.
NOT_THE_DETECTOR = ("incremental.py", "sampled.py", "by_class.py")


def core_digest() -> str:
    """SHA-256 (16 hex) over ``src/acgate/core/**/*.py``: marks cells of another detector."""
    digest = hashlib.sha256()
    for path in sorted(CORE_DIR.rglob("*.py")):
        if path.name in NOT_THE_DETECTOR:
            continue
        digest.update(str(path.relative_to(CORE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git_commit() -> str:
    """``git describe --always --dirty`` of the repository, or ``unknown``."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_line(threads: int) -> str:
    """The machine line with the acgate commit and the core digest after acgate's version."""
    return machine_line(threads, acgate_detail=f"{git_commit()}, core {core_digest()}")


# ----------------------------------------------------------------------------- one cell


def _prf(flags: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision, recall and F1 by the library's convention (``precision_recall_f1``)."""
    from acgate.core.metrics import precision_recall_f1

    return precision_recall_f1(flags, truth)


def cell_rows(case: Case, rows: int | None) -> int | None:
    """The subset size a cell of ``case`` uses (``None``: the whole data)."""
    return rows if case.data in ("mnist", "fashion", "mnist-7plus") else None


class _ActivationsAsClassifier:
    """What ART's poison defences read from a classifier, serving given activations."""

    layer_names = ["last hidden layer"]

    def __init__(self, activations: np.ndarray, nb_classes: int) -> None:
        self._activations = activations
        self.nb_classes = nb_classes

    def get_activations(self, x: np.ndarray, layer: Any = None, batch_size: int = 128,
                        framework: bool = False) -> np.ndarray:
        return self._activations[np.asarray(x, dtype=np.int64)]


def art_available() -> str | None:
    """ART's version, or ``None`` when it is not importable."""
    try:
        import art
    except ImportError:
        return None
    return str(art.__version__)


def baselines(activations: np.ndarray, labels: np.ndarray, truth: np.ndarray,
              seed: int) -> dict[str, Any]:
    """ART ActivationDefence (defaults) and SpectralSignatureDefense on the activations."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    patch_art_for_numpy2()
    labels = np.asarray(labels, dtype=np.int64)
    classifier = _ActivationsAsClassifier(np.asarray(activations, np.float32),
                                          int(labels.max()) + 1)
    positions = np.arange(len(labels))
    shares = [truth[labels == c].mean() for c in np.unique(labels)]
    oracle = float(max(shares)) if truth.any() else 0.0
    runs: dict[str, Callable[[], np.ndarray]] = {}

    def activation_defence() -> np.ndarray:
        defence = ActivationDefence(classifier, positions, labels)
        defence.activations_by_class = defence._segment_by_class(activations, labels)
        _, is_clean = defence.detect_poison()
        return np.asarray(is_clean) == 0

    def spectral(expected: float) -> Callable[[], np.ndarray]:
        def call() -> np.ndarray:
            defence = SpectralSignatureDefense(classifier, positions, labels,
                                               expected_pp_poison=expected)
            _, is_clean = defence.detect_poison()
            return np.asarray(is_clean) == 0
        return call

    runs["ART ActivationDefence (PCA 10, 2-means, smaller)"] = activation_defence
    runs["ART spectral signature (expected 0.33)"] = spectral(0.33)
    if oracle > 0:  # expected_pp_poison = the true largest poison share of a class
        runs["ART spectral signature (oracle share)"] = spectral(oracle)
    out: dict[str, Any] = {}
    for name, call in runs.items():
        np.random.seed(seed)  # ART seeds nothing itself
        clock = time.perf_counter()
        try:
            flags = call()
        except Exception as error:  # noqa: BLE001 - recorded in the table
            out[name] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
            continue
        out[name] = {**_prf(flags, truth), "seconds": time.perf_counter() - clock,
                     "classes": sorted(int(c) for c in np.unique(labels[flags]))}
        if "oracle" in name:
            out[name]["expected_pp_poison"] = oracle
    return out


#: ScanConfig fields that decide the proxy and its activations (the reuse key).
PROXY_FIELDS = ("proxy", "epochs", "batch_size", "lr", "hidden", "seed", "max_tokens")


def _reuse_path(dataset: Any, config: Any, threads: int) -> Path | None:
    """``$ACGATE_BENCH_CACHE/attack_matrix/<key>.parquet`` for ``--reuse-activations``."""
    folder = os.environ.get("ACGATE_BENCH_CACHE")
    if not folder:
        return None
    from acgate.io.datasets import dataset_fingerprint

    proxy = {name: getattr(config, name) for name in PROXY_FIELDS}
    key = hashlib.sha256(f"{dataset_fingerprint(dataset)}/{json.dumps(proxy, sort_keys=True)}"
                         f"/torch-threads={threads}".encode()).hexdigest()[:24]
    return Path(folder) / "attack_matrix" / f"{key}.parquet"


def _detect_on_cached(path: Path, activations: Path, config: Any) -> tuple[Any, dict[str, float]]:
    """What ``run_scan`` does after extraction, on cached activations of the same proxy.

    The dataset is read back from the Parquet file (8-bit PNG images, as ``run_scan`` sees
    them) for the exclusionary-reclassification retrain; text scans get the text candidate cut.
    """
    from acgate.io.activations import read_activations
    from acgate.io.datasets import TextDataset, read_dataset
    from acgate.scan import TEXT_SIZE_THRESHOLD, detect_table, make_retrain

    clock = time.perf_counter()
    dataset = read_dataset(path, max_decoded_bytes=config.max_decoded_bytes)
    if isinstance(dataset, TextDataset) and config.size_threshold is None:
        config = dataclasses.replace(config, size_threshold=TEXT_SIZE_THRESHOLD)
    table = read_activations(activations)
    timings = {"read_validate": time.perf_counter() - clock}
    clock = time.perf_counter()
    retrain = (make_retrain(dataset, config) if config.analysis in ("auto", "exre") else None)
    result = detect_table(table, config, retrain_and_predict=retrain)
    timings["detect"] = time.perf_counter() - clock
    return result, timings


def run_cell(case: Case, seed: int, *, rows: int | None, config: dict[str, Any],
             extra: dict[str, Any], with_baselines: bool, reuse: bool = False,
             threads: int = 1) -> dict[str, Any]:
    """Build the cell's data, scan it with ``run_scan``, score it; returns the JSON record.

    With ``reuse`` and ``$ACGATE_BENCH_CACHE``, the activations of the first scan of the same
    data and proxy settings are kept there and later cells detect on them (no proxy training).
    """
    import shutil

    from acgate.io.activations import read_activations
    from acgate.io.datasets import TextDataset, write_image_dataset, write_text_dataset
    from acgate.scan import ScanConfig, run_scan

    clock = time.perf_counter()
    dataset = build_dataset(case, seed, rows)
    build_seconds = time.perf_counter() - clock
    is_text = isinstance(dataset, TextDataset)
    truth_all = (np.asarray(dataset.columns["is_poison"], bool) if "is_poison" in dataset.columns
                 else np.zeros(len(dataset), bool))
    source_all = (np.asarray(dataset.columns["source_label"], np.int64)
                  if "source_label" in dataset.columns else np.asarray(dataset.labels))
    scan_config = ScanConfig(seed=seed, **config)
    with tempfile.TemporaryDirectory(prefix="acgate-matrix-") as tmp:
        path = Path(tmp) / "data.parquet"
        clock = time.perf_counter()
        (write_text_dataset if is_text else write_image_dataset)(dataset, path)
        write_seconds = time.perf_counter() - clock
        reuse_path = _reuse_path(dataset, scan_config, threads) if reuse else None
        proxy_cached = None
        clock = time.perf_counter()
        with detect_kwargs(extra) as calls:
            if reuse_path is not None and reuse_path.is_file():
                proxy_cached = json.loads(reuse_path.with_suffix(".json").read_text())
                result, timings = _detect_on_cached(path, reuse_path, scan_config)
                activations_file = reuse_path
            else:
                outcome = run_scan(path, Path(tmp) / "out", scan_config, tracking_uri=None,
                                   report=False)
                result, timings = outcome.result, dict(outcome.timings)
                activations_file = Path(tmp) / "out" / "activations.parquet"
                if reuse_path is not None:  # sidecar first: a reader never misses it
                    write_json(reuse_path.with_suffix(".json"),
                               {k: timings.get(k, 0.0) for k in ("train_proxy", "extract")})
                    temp = reuse_path.with_name(f".{reuse_path.name}.{os.getpid()}")
                    shutil.copyfile(activations_file, temp)
                    os.replace(temp, reuse_path)
        scan_seconds = time.perf_counter() - clock
        if extra and calls[0] == 0:
            raise RuntimeError("the scan no longer calls acgate.scan.detect: the --set detect "
                               f"keywords {sorted(extra)} were not applied")
        table = read_activations(activations_file)
        ids = np.asarray(result.sample_ids)
        truth = truth_all[ids]
        flags = np.asarray(result.is_poison, bool)
        labels = np.asarray(result.labels)
        order = np.argsort(np.asarray(table.indices))
        position = order[np.searchsorted(np.asarray(table.indices)[order], ids)]
        predictions = (None if table.predictions is None
                       else np.asarray(table.predictions)[position])
        overall = _prf(flags, truth)
        hit = flags & truth
        source_ok = int((np.asarray(result.suspected_source)[hit] == source_all[ids][hit]).sum())
        per_class = []
        for report in result.classes:
            rows_c = np.asarray(result.segments) == report.label
            per_class.append({**report.to_dict(), **{f"poison_{k}": v for k, v in
                                                     _prf(flags[rows_c], truth[rows_c]).items()}})
        record = {
            "case": case.name, "data": case.data, "attack": case.attack, "seed": seed,
            "rows": int(len(dataset)), "n_poison": int(truth_all.sum()),
            "poison": dataset.metadata.get("poison"),
            "overall": overall,
            "source_accuracy": source_ok / int(hit.sum()) if hit.any() else None,
            "classes_flagged": sorted(int(c) for c in result.poisoned_classes),
            "verdict": result.verdict,
            "per_class": per_class,
            "proxy": {
                "train_accuracy_clean": (None if predictions is None else
                                         float((predictions == labels)[~truth].mean())),
                "poison_fit": (None if predictions is None or not truth.any() else
                               float((predictions == labels)[truth].mean())),
            },
            "seconds": {"build": build_seconds, "write": write_seconds, "scan": scan_seconds,
                        **{k: float(v) for k, v in timings.items()}},
            "scan": ("run_scan" if proxy_cached is None else
                     "detect_table on cached activations (--reuse-activations)"),
        }
        if proxy_cached is not None:  # what the skipped proxy training + extraction took
            record["seconds"]["proxy_cached"] = float(sum(proxy_cached.values()))
        if with_baselines:
            version = art_available()
            record["baselines"] = (
                {"note": "art not installed"} if version is None else
                {"art": version, **baselines(np.asarray(table.activations)[position], labels,
                                             truth, seed)})
    return record


# ----------------------------------------------------------------------------- cache


def cell_name(case: Case, rows: int | None) -> str:
    """The case name, with ``@<rows>`` / ``@full`` when a subset size is not the default."""
    if case.data not in ("mnist", "fashion", "mnist-7plus") or rows == DEFAULT_ROWS:
        return case.name
    return f"{case.name}@{'full' if rows is None else rows}"


def cell_path(variant: str, case: Case, seed: int, rows: int | None) -> Path:
    """``bench/parts/attack_matrix/<variant>/<cell name>-seed<k>.json``."""
    return CACHE / variant / f"{cell_name(case, rows)}-seed{seed}.json"


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write one record atomically (numpy values as plain numbers and lists)."""
    write_text_atomic(path, json.dumps(record, indent=1, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def load_cells() -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """Every cached record: variant -> (case, seed) -> record."""
    cells: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    if not CACHE.is_dir():
        return cells
    for path in sorted(CACHE.rglob("*.json")):
        if path.name.startswith("."):
            continue
        record = json.loads(path.read_text())
        key = (record.get("cell", record["case"]), record["seed"])
        cells.setdefault(record["variant"], {})[key] = record
    return cells


# ----------------------------------------------------------------------------- markdown


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _flags_text(record: dict[str, Any]) -> str:
    if "error" in record:
        return "crash"
    flagged = record["classes_flagged"]
    return f"{flagged}" if flagged else "[]"


def _variant_section(variant: str, cells: dict[tuple[str, int], dict[str, Any]],
                     cases: list[Case], digest: str) -> str:
    poisoned_rows, clean_rows, base_names = [], [], []
    for record in cells.values():
        for name in record.get("baselines", {}):
            if name not in ("art", "note") and name not in base_names:
                base_names.append(name)
    stale = False
    clean_names = {c.name for c in cases if c.clean}
    present = {c for c, _ in cells}
    order = [n for c in cases for n in sorted(present) if n.split("@")[0] == c.name]
    order += sorted(present - set(order))
    for name in order:
        records = sorted((r for (c, _), r in cells.items() if c == name), key=lambda r: r["seed"])
        if not records:
            continue
        marks = []
        for r in records:
            mark = "" if r.get("core_digest") == digest else "†"
            stale = stale or bool(mark)
            marks.append(mark)
        ok = [r for r in records if "error" not in r]
        seconds = [r["seconds"]["scan"] + r["seconds"].get("proxy_cached", 0.0) for r in ok]
        time_cell = f"{statistics.mean(seconds):.0f}" if seconds else "-"
        first = ok[0] if ok else {**records[0], "rows": "-", "n_poison": "-"}
        if name.split("@")[0] in clean_names:
            per_seed = "; ".join(
                f"s{r['seed']}{m}: {_flags_text(r)}"
                + (f" ({r['overall']['n_flagged']} rows)" if "error" not in r
                   and r["overall"]["n_flagged"] else "")
                for r, m in zip(records, marks, strict=True))
            n_any = sum(1 for r in ok if r["classes_flagged"])
            clean_rows.append([name, first["rows"], per_seed, f"{n_any} of {len(records)}",
                               time_cell])
            continue
        f1s = [r["overall"]["f1"] for r in ok]
        f1_cell = " / ".join(
            ("crash" if "error" in r else f"{r['overall']['f1']:.3f}") + m
            for r, m in zip(records, marks, strict=True))
        fits = [r["proxy"]["poison_fit"] for r in ok if r["proxy"]["poison_fit"] is not None]
        row = [name, first["attack"], first["rows"], first["n_poison"], f1_cell,
               _f(statistics.mean(f1s)) if f1s else "-", _f(min(f1s)) if f1s else "-",
               (f"{statistics.mean(r['overall']['precision'] for r in ok):.2f} / "
                f"{statistics.mean(r['overall']['recall'] for r in ok):.2f}") if ok else "-",
               "; ".join(f"s{r['seed']}: {_flags_text(r)}" for r in records),
               _f(statistics.mean(fits), 2) if fits else "-", time_cell]
        for base in base_names:
            values = [r["baselines"][base]["f1"] for r in ok
                      if "f1" in r.get("baselines", {}).get(base, {})]
            row.append(_f(statistics.mean(values)) if values else "-")
        poisoned_rows.append(row)
    header = ["case", "attack", "rows", "poison rows", "F1 per seed", "mean F1", "min F1",
              "P / R (mean)", "classes flagged per seed", "poison fit", "s / seed",
              *[f"{b} F1" for b in base_names]]
    settings = next(iter(cells.values())).get("settings", {})
    producers = sorted({(r.get("command", "?"), r.get("machine", "?")) for r in cells.values()})
    text = [f"### variant `{variant}`\n",
            f"settings: ScanConfig overrides `{json.dumps(settings.get('config', {}))}`, "
            f"extra detect keywords `{json.dumps(settings.get('detect', {}))}`\n",
            "cells made by:\n", *[f"- `{c}`  \n  {m}" for c, m in producers], ""]
    if stale:
        text.append("† computed with another `src/acgate/core` than the current one "
                    f"(core {digest}); `--redo-stale` reruns them.\n")
    notes = sorted({r["baselines"]["note"] for r in cells.values()
                    if isinstance(r.get("baselines"), dict) and "note" in r["baselines"]})
    if notes:
        text.append(f"Baselines skipped: {'; '.join(notes)}.\n")
    errors = sorted({f"{r['case']} seed {r['seed']}: {r['error']}" for r in cells.values()
                     if "error" in r})
    if poisoned_rows:
        text.append(markdown_table(header, poisoned_rows))
    if clean_rows:
        text.append("Clean runs (no poison: every flagged class is a false alarm):\n")
        text.append(markdown_table(["case", "rows", "classes flagged per seed",
                                    "seeds with a flag", "s / seed"], clean_rows))
    if errors:
        text.append("`crash` = the cell raised:\n\n" + "\n".join(f"- {e}" for e in errors)
                    + "\n")
    return "\n".join(text)


def _comparison(all_cells: dict[str, dict[tuple[str, int], dict[str, Any]]],
                cases: list[Case]) -> str:
    variants = sorted(all_cells)
    rows = []
    names = sorted({c for cells in all_cells.values() for c, _ in cells})
    ordered = [(case, n) for case in cases for n in names if n.split("@")[0] == case.name]
    for case, name in ordered:
        row, seen = [name], False
        for variant in variants:
            records = [r for (c, _), r in all_cells[variant].items()
                       if c == name and "error" not in r]
            if not records:
                row.append("-")
                continue
            seen = True
            if case.clean:
                row.append(f"{sum(1 for r in records if r['classes_flagged'])} of "
                           f"{len(records)} seeds flag")
            else:
                f1s = [r["overall"]["f1"] for r in records]
                row.append(f"{statistics.mean(f1s):.3f} / {min(f1s):.3f} ({len(f1s)})")
        if seen:
            rows.append(row)
    return ("### variants side by side (mean / min F1 (seeds); clean runs: seeds with a "
            "flag)\n\n" + markdown_table(["case", *variants], rows))


def write_markdown(command: str, machine: str, cases: list[Case],
                   skipped: list[str] | None = None) -> None:
    """Rebuild ``bench/parts/attack_matrix.md`` from every cached cell of every variant."""
    all_cells = load_cells()
    digest = core_digest()
    intro = (
        "## attack_matrix (issue 18: attack shapes, triggers and rates; `run_scan` end to "
        "end)\n\n"
        "Every cell: the data built from the shipped packages (MNIST / Fashion-MNIST: a "
        "seeded stratified subset, see `rows`; digits and Rotten Tomatoes whole), poisoned "
        "with `acgate.io.poison`, written to Parquet and scanned by `acgate.scan.run_scan` "
        "(default proxy: 30 epochs below 10k rows, else 2; text: Kim's CNN), F1 of the flags "
        "against the poisoner's ground truth. All-to-one: every other class relabelled to "
        "target = seed mod the number of classes, the rate a share of all rows; all-to-all: "
        "l -> l+1, the rate a share of each target class. Poison fit: share of poison rows "
        "the proxy itself predicts as their (poisoned) label; near 0 means the proxy did not "
        "learn the trigger, so no activation-based detector can be expected to see it. "
        "Seconds: the `run_scan` call (proxy, extraction, detection incl. the exclusionary "
        "retrain; with `--reuse-activations`, detection plus the cached proxy's training and "
        "extraction time). † = made with another `src/acgate/core`.\n\n"
        f"Last command: `{command}`  \n{machine}\n")
    sections = [intro]
    if skipped:
        sections.append("Not run by the last command (data not available here): "
                        + "; ".join(skipped) + "\n")
    if len(all_cells) > 1:
        sections.append(_comparison(all_cells, cases))
    for variant in sorted(all_cells):
        sections.append(_variant_section(variant, all_cells[variant], cases, digest))
    if not all_cells:
        sections.append("No cell has run yet.\n")
    write_text_atomic(PART, "\n".join(sections))


# ----------------------------------------------------------------------------- main


def _selected(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    if not patterns:
        return cases
    chosen = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--cases {patterns} matches no case; see --list")
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Run the selected cells (cached ones are skipped) and rebuild the Markdown part."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", action="append", default=None,
                        help="glob over case names (repeatable; default: all), e.g. 'digits/*'")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds (default: 0,1,2; digits 0-4)")
    parser.add_argument("--dataset", action="append", default=None,
                        choices=("mnist", "fashion", "digits", "mnist-7plus", "digits-7plus",
                                 "rt"), help="only cases on this data (repeatable)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"MNIST / Fashion-MNIST subset size (default {DEFAULT_ROWS})")
    parser.add_argument("--full", action="store_true", help="all 60,000 MNIST-scale rows")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--variant", default="default", help="label of the detector setting")
    parser.add_argument("--analysis", default=None, help="ScanConfig.analysis for this variant")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a ScanConfig field or an acgate.core.detect keyword (repeatable)")
    parser.add_argument("--baselines", action="store_true",
                        help="also ART ActivationDefence / SpectralSignatureDefense (needs art)")
    parser.add_argument("--reuse-activations", action="store_true",
                        help="keep each scan's activations in $ACGATE_BENCH_CACHE and detect on "
                             "them when the data and proxy settings recur (variants)")
    parser.add_argument("--force", action="store_true", help="redo cached cells")
    parser.add_argument("--redo-stale", action="store_true",
                        help="redo cached cells made with another src/acgate/core")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild bench/parts/attack_matrix.md from the cache only")
    args = parser.parse_args(argv)
    cases = all_cases()
    chosen = _selected(cases, args.cases)
    if args.dataset:
        chosen = [c for c in chosen if c.data in args.dataset]
    seeds_given = (None if args.seeds is None
                   else tuple(int(s) for s in args.seeds.split(",") if s.strip()))
    if args.list:
        for case in chosen:
            print(f"{case.name:40s} seeds {list(seeds_given or case.seeds())}  {case.attack}")
        print(f"{len(chosen)} cases, {sum(len(seeds_given or c.seeds()) for c in chosen)} cells")
        return 0
    if not args.variant or any(ch in args.variant for ch in "/\\") or args.variant[0] == ".":
        raise SystemExit(f"--variant must be a plain name, got {args.variant!r}")
    if not args.full and args.rows < 1000:
        raise SystemExit(f"--rows must be at least 1000, got {args.rows}")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    command = "python bench/attack_matrix.py " + shlex.join(sys.argv[1:] if argv is None
                                                             else argv)
    machine = provenance_line(args.threads)
    if args.report_only:
        write_markdown(command.strip(), machine, cases)
        print(f"wrote {PART}")
        return 0
    config, extra = split_settings(args.set, args.analysis)
    if args.reuse_activations and not os.environ.get("ACGATE_BENCH_CACHE"):
        raise SystemExit("--reuse-activations needs ACGATE_BENCH_CACHE (a folder) to be set")
    settings = {"config": config, "detect": extra}
    rows = None if args.full else args.rows
    digest = core_digest()
    skipped: list[str] = []
    for case in chosen:
        for seed in seeds_given or case.seeds():
            path = cell_path(args.variant, case, seed, rows)
            if path.is_file() and not args.force:
                cached = json.loads(path.read_text())
                if json.loads(json.dumps(cached.get("settings"))) != json.loads(
                        json.dumps(settings)):
                    raise SystemExit(
                        f"{path}: variant {args.variant!r} was made with settings "
                        f"{cached.get('settings')}, not {settings}; use --force or another "
                        "--variant")
                fresh = cached.get("core_digest") == digest or not args.redo_stale
                same_rows = cached.get("subset_rows") == cell_rows(case, rows)
                if "error" not in cached and fresh and same_rows:
                    print(f"{case.name} seed {seed}: cached", flush=True)
                    continue
            print(f"{case.name} seed {seed}: running", flush=True)
            clock = time.perf_counter()
            try:
                record = run_cell(case, seed, rows=rows, config=config, extra=extra,
                                  with_baselines=args.baselines, reuse=args.reuse_activations,
                                  threads=args.threads)
            except (FileNotFoundError, RuntimeError) as error:
                if "dataset-fashion-mnist" in str(error) or "pip download" in str(error):
                    reason = str(error).splitlines()[0]
                    print(f"{case.name} seed {seed}: data not available, skipped: {reason}",
                          flush=True)
                    note = f"{case.data} ({reason[:200]})"
                    if note not in skipped:
                        skipped.append(note)
                    continue
                record = {"case": case.name, "data": case.data, "attack": case.attack,
                          "seed": seed, "error": f"{type(error).__name__}: {error}"[:500]}
            except (ValueError, TypeError) as error:
                record = {"case": case.name, "data": case.data, "attack": case.attack,
                          "seed": seed, "error": f"{type(error).__name__}: {error}"[:500]}
            record.update({"cell": cell_name(case, rows), "variant": args.variant,
                           "settings": settings,
                           "subset_rows": cell_rows(case, rows),
                           "core_digest": digest, "command": command.strip(),
                           "machine": machine,
                           "wall_seconds": time.perf_counter() - clock})
            write_json(path, record)
            if "error" in record:
                print(f"{case.name} seed {seed}: {record['error']}", flush=True)
            elif case.clean:
                print(f"{case.name} seed {seed}: clean run, flagged {record['classes_flagged']} "
                      f"({record['overall']['n_flagged']} rows), {record['wall_seconds']:.0f} s",
                      flush=True)
            else:
                print(f"{case.name} seed {seed}: F1 {record['overall']['f1']:.3f}, flagged "
                      f"{record['classes_flagged']}, poison fit "
                      f"{_f(record['proxy']['poison_fit'], 2)}, "
                      f"{record['wall_seconds']:.0f} s", flush=True)
            write_markdown(command.strip(), machine, cases, skipped)
    write_markdown(command.strip(), machine, cases, skipped)
    print(f"wrote {PART}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
