"""Benchmarks of acgate's Activation Clustering; writes ``bench/RESULTS.md``.

Each experiment is a function that returns a Markdown section; the section is written to
``bench/parts/<name>.md`` and ``bench/RESULTS.md`` is reassembled from every part present, so
experiments can run separately (``--only NAME``), in the background, or on another machine.

Usage::

    python bench/run.py --quick                 # smoke run, < 3 minutes on 2 cores
    python bench/run.py                         # full run
    python bench/run.py --only reducers         # one experiment
    python bench/run.py --only mnist --threads 16
    python bench/run.py --assemble              # rebuild RESULTS.md from bench/parts/

``--quick`` writes ``bench/parts/quick/`` and ``bench/RESULTS-quick.md`` instead, so a smoke
run never overwrites the reference numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PARTS_DIR = BENCH_DIR / "parts"
RESULTS_PATH = BENCH_DIR / "RESULTS.md"
EXPERIMENT_ORDER = ("reducers", "size_threshold", "candidates", "source_share", "digits_quality",
                    "mnist", "scale", "art", "repair_mnist", "multimodal", "art_scale",
                    "beyond_mnist")
#: Parts written by their own scripts (bench/text_rotten_tomatoes.py, bench/beyond_paper.py),
#: assembled after the experiments above.
SCRIPT_PARTS = {"text": "bench/text_rotten_tomatoes.py", "beyond": "bench/beyond_paper.py",
                "detector_variants": "bench/detector_variants.py",
                "attack_matrix": "bench/attack_matrix.py"}
DIGITS_RATES = (0.10, 0.15, 0.33, None)  # None: the unpoisoned (clean) run

COMMAND = ""  # the exact command line, set in main()
QUICK = False
THREADS = 2
NOTE = ""  # free text added under the machine line (e.g. which machine ran it)
#: Proxy epochs in quick mode (a smoke run; full mode uses the ScanConfig default, 30).
QUICK_EPOCHS = 5


# ----------------------------------------------------------------------------- helpers


def machine_line() -> str:
    """Cores, torch threads, versions and date, for the line above each table."""
    import sklearn
    import torch

    import acgate

    return (f"machine: {platform.node()} ({platform.machine()}), {os.cpu_count()} cores, "
            f"torch threads {torch.get_num_threads()}, python {platform.python_version()}, "
            f"torch {torch.__version__}, numpy {np.__version__}, scikit-learn "
            f"{sklearn.__version__}, acgate {acgate.__version__}; date "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")


def table_header() -> str:
    """The command + machine block that precedes every table."""
    note = f"  \nnote: {NOTE}" if NOTE else ""
    return f"command: `{COMMAND}`  \n{machine_line()}{note}\n"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats get 3 decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rate_name(rate: float | None) -> str:
    """``10%`` or ``clean``."""
    return "clean" if rate is None else f"{rate:.0%}"


def parts_dir() -> Path:
    """``bench/parts`` (full runs) or ``bench/parts/quick`` (smoke runs)."""
    return PARTS_DIR / "quick" if QUICK else PARTS_DIR


def results_path() -> Path:
    """``bench/RESULTS.md`` (full runs) or ``bench/RESULTS-quick.md`` (smoke runs)."""
    return BENCH_DIR / "RESULTS-quick.md" if QUICK else RESULTS_PATH


def cached_runs(cache_dir: Path, env: str, names: list[str],
                one_run: Callable[[str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run the runs named in ``$env`` (comma-separated; default: all ``names``), keep each
    one's record as ``cache_dir/<run>.json``, and return every record cached there.

    Long experiments split their runs over processes this way and rebuild their section from
    whatever runs are present.
    """
    selected = [r for r in os.environ.get(env, ",".join(names)).split(",") if r]
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise ValueError(f"{env}: unknown run(s) {unknown}; known: {names}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in selected:
        record = one_run(name)
        temp = cache_dir / f".{name}.json.tmp"
        temp.write_text(json.dumps(record, indent=1, default=float))
        os.replace(temp, cache_dir / f"{name}.json")
    return {path.stem: json.loads(path.read_text()) for path in cache_dir.glob("*.json")}


def write_part(name: str, text: str) -> None:
    """Write one experiment's section atomically and reassemble the results file."""
    folder = parts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{name}.md.tmp"
    temp.write_text(text)
    os.replace(temp, folder / f"{name}.md")
    assemble()


def assemble() -> None:
    """Rebuild the results file from the preamble and every part present."""
    sections = [PREAMBLE if not QUICK else QUICK_PREAMBLE + PREAMBLE]
    for name in EXPERIMENT_ORDER:
        part = parts_dir() / f"{name}.md"
        if part.is_file():
            sections.append(part.read_text())
        else:
            sections.append(f"## {name}\n\nNot run yet (`python bench/run.py --only {name}`).\n")
    for name, script in SCRIPT_PARTS.items():
        part = PARTS_DIR / f"{name}.md"
        if not QUICK:
            sections.append(part.read_text() if part.is_file()
                            else f"## {name}\n\nNot run yet (`python {script}`).\n")
    if NOT_DONE:
        sections.append(NOT_DONE)
    temp = results_path().with_suffix(".md.tmp")
    temp.write_text("\n".join(sections))
    os.replace(temp, results_path())


PREAMBLE = """# acgate benchmark results

Generated by `bench/run.py` (each section by the command written above its table; rerun
`python bench/run.py` for everything, `--quick` for a smoke subset). Poison F1 etc. are
computed with `acgate.core.flag_metrics` against the poisoner's ground truth (`is_poison`).

**Timing caveat:** wall times are noisy; use them as orders of magnitude. The `--quick` run
was measured on the project's 2-core machine while other jobs (parallel test suites) shared
its cores (easily 2x noise). The reference tables ran on the device machine's 16 CPU cores
(a VM, GPU unused); two runs there differed by up to 50% per stage (digits proxy 7.1 vs
10.9 s). Quality numbers (F1, flags) were identical across those two runs.

Where the numbers come from: every table carries its own command and machine line. The
2026-11-24 tables (reducers, size_threshold) ran on the lent device machine's 16 CPU cores (GPU
unused, torch 2.11 there vs 2.13 in the project venv) with the core of that day (2-means
candidates); scale, art_scale and repair_mnist are local runs of 2026-11-25, also before the
stable candidates (scale and art_scale time `detect(size-silhouette)`, which still uses
2-means; repair_mnist's flags came from the 2-means candidates). Every other table (candidates,
source_share, digits_quality, beyond, text, mnist, multimodal, art, beyond_mnist) was rerun on
2026-12-02 with the current defaults on the project's 2-core machine, one torch thread, usually
with a second benchmark on the other core; the MNIST-scale experiments share each proxy
through `ACGATE_BENCH_CACHE` (same data, seed and settings give the same activations).
`--quick` runs locally and writes `RESULTS-quick.md` instead.

### Findings (2026-12-02; tables have the numbers)

- **Candidates** (section `candidates`, the table that chose the default): exclusionary
  reclassification now judges *stable* clusters (k = 2..4, kept when the k + 1 clustering keeps
  their boundary) plus stable sub-clusters inside them, with a natural-confusion test and source
  share 0.5. Against the previous default (the 2-means small cluster): MNIST BadNets 5% F1
  0.818 -> 0.995, 2% 0.000 -> 0.566; 7+ runs 0.758 / 0.000 / 0.000 -> 0.798 / 0.866 / 0.431;
  Fashion-MNIST clean flags [4, 7] -> none; digits 10% mean F1 (5 seeds) 0.659 -> 0.815, 15%
  0.806 -> 0.888, 33% 0.931 -> 0.897, blend 0.892 -> 0.951; clean digits 3 flags in 5 seeds
  either way. 0.47 instead of 0.5 flags class 7 of the unpoisoned 7+ data.
- **MNIST target met** (section `mnist`): F1 0.996 / 0.998 / 0.999 at 10 / 15 / 33% BadNets
  (every class >= 0.987; paper: ~100%), 0 classes flagged on unpoisoned MNIST. Raw-pixel
  baseline (FastICA 10 + 2-means, smaller cluster): F1 0.53 / 0.47 / 0.98 (paper 0.16 at 10%,
  0.86 at 33%).
- **Beyond the paper on MNIST** (section `beyond_mnist`, every analyzer on the same
  activations): BadNets 5% F1 0.995 (target >= 0.95 met; the paper's size + silhouette rule
  0.674), blended trigger at 10% F1 0.997 / 0.995 (alpha 0.1 / 0.2, target >= 0.9 met), no class
  flagged on unpoisoned MNIST or Fashion-MNIST (target met; size + silhouette flags Fashion
  class 7). 2%: F1 0.566 (4 classes found, precision 0.97); 1%: F1 0.000, and class 1 is flagged
  on the wrong rows. Robust covariance flags all 10 classes of every run and "smaller cluster"
  (ART's rule) too: neither is a detector on its own; spectral and distance find nothing at
  1-5%.
- **Multimodal "7+" MISSED** (section `multimodal`, target F1 >= 0.95): 0 <- 7+ F1 0.798, 7+ <- 6
  0.866, 7+ <- 4,5,6 0.431 (previous default 0.758 / 0.000 / 0.000); the unpoisoned merged data
  flags nothing. With three sources the poison inside 7+ splits by source and only part of it
  forms a candidate that goes >= 70% to one class.
- **Digits target (F1 >= 0.9) met on seed 0 only** (section `digits_quality`: 0.947 / 0.903 /
  0.939 at 10 / 15 / 33%); over seeds 1-4 F1 ranges 0.686-0.942, and the unpoisoned run flags
  one class on seeds 1, 3 and 4 (classes 1, 7, 4). With ~180 images a class a writing style and
  the poison share a cluster at every k, and a writing style whose left-out rows go >= 50% to
  one neighbour looks like poison to exclusionary reclassification. Source share (section
  `source_share`): 0.6 clears seeds 3-4 but loses a poisoned class at 15% (min F1 0.672).
- **Beyond the paper on digits** (section `beyond`): blended trigger at 15%, alpha 0.1-0.2, 5
  seeds: F1 0.880-0.995, >= 0.9 in 13 of 15 runs (target met on
  seed 0: 0.939 / 0.991 / 0.942); two clean classes merged under one label (0 + 1) flagged on 4 of 5
  seeds (seed 0 clean).
- **ART 1.20.1 side by side on MNIST** (section `art`, same data and proxy, median
  of 3): acgate's defaults F1 0.996, no clean class flagged (58 s: the retrain is the cost);
  acgate `size-silhouette` F1 0.996, none flagged, 1.7 s. ART as a user calls it (its forward
  pass takes the logits) F1 0.57 in 14.4 s and flags all 10 classes of the unpoisoned run; its
  paper configuration (FastICA + relative size) 0.60; ART's defaults fed the 128-d layer F1
  0.996 in 0.46 s but again all 10 clean classes flagged: its "smaller" rule has no test.
- **Text (Rotten Tomatoes, section `text`)**: "-travelerthehorse" signature at 10%: F1 0.998 /
  0.996 / 1.000 (seeds 0-2), no flags in the unpoisoned runs (paper: 100% / 100%); two-class
  data keeps the 2-means candidate (run with source share 0.47, which cannot change a two-class
  verdict: l/p < 1 already sends more than half of a cluster to the other class).
- **Scale** (section `scale`, 2026-11-25): `acgate detect` streamed from Parquet 3.4 / 4.5 / 10.6
  s at 60k / 200k / 1M rows, peak RSS 423 / 624 / 1121 MiB (target <= 1.5 GB met). ART's bare
  analysis on given activations is faster than `detect(size-silhouette)` (section `art_scale`:
  0.08x at 60k, 0.44x at 1M; the issue's speed targets MISSED there).
- **Repair on MNIST at 33%** (section `repair_mnist`, 2026-11-25, flags from the 2-means
  candidates, F1 0.999): clean error 0.013 / attack success 0.978 before; `relabel` 0.010 /
  0.001 after 18 epochs (paper: 14); `remove` 0.011 / 0.027.
- **PCA over ICA, size cut 0.45** (sections `reducers`, `size_threshold`, 2026-11-24): whitened
  ICA crashed or collapsed at 33% and flags more clean classes; 0.35 loses the 33% case (F1
  0.86-0.87 vs 0.98).

Digits: scikit-learn's 1,797 8x8 digits, BadNets all-to-all (l -> l+1, inverted 2x2 corner),
`rate` = poison share of each target class; proxy = the default small CNN, 30 epochs.
"""

QUICK_PREAMBLE = f"""> SMOKE RUN (`--quick`): seed 0 only, 10% + clean only,
> proxy {QUICK_EPOCHS} epochs instead of 30, no MNIST, scale at 60k only,
> exre retrains shared between tables (so digits `analyze` times are near 0).
> Not the reference numbers: those are in RESULTS.md.

"""

NOT_DONE = ""


# ----------------------------------------------------------------------------- digits runs

_DIGITS_CACHE: dict[tuple[float | None, int], dict[str, Any]] = {}


def memoised_retrain(retrain: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Cache a ``retrain_and_predict`` callable by (train mask, query) content."""
    cache: dict[str, np.ndarray] = {}

    def wrapped(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        key = hashlib.sha256(np.asarray(train_mask, dtype=bool).tobytes()
                             + np.asarray(query_positions, dtype=np.int64).tobytes()).hexdigest()
        if key not in cache:
            cache[key] = retrain(train_mask, query_positions)
        return cache[key]

    return wrapped


def _activation_cache(dataset: Any, seed: int) -> Path | None:
    """``$ACGATE_BENCH_CACHE/<fingerprint>.npz`` when that variable names a folder, else None.

    Experiments that train the same default proxy on the same data (beyond_mnist, candidates,
    multimodal, mnist) then train it once; the cached file holds the activations, the
    predictions and the measured training / extraction seconds.
    """
    folder = os.environ.get("ACGATE_BENCH_CACHE")
    if not folder:
        return None
    from acgate.io.datasets import dataset_fingerprint

    key = hashlib.sha256(f"{dataset_fingerprint(dataset)}/seed={seed}/torch-threads="
                         f"{THREADS}".encode()).hexdigest()[:24]
    return Path(folder) / f"{key}.npz"


def image_run(dataset: Any, seed: int = 0, *, cache: bool = True) -> dict[str, Any]:
    """Train the default proxy on ``dataset`` and bundle what ``detect_on`` / ``scores`` need.

    Ground truth comes from the poisoner's columns (``is_poison``, ``source_label``) when
    present, else the dataset counts as clean. ``timings`` has "train proxy" and "extract".
    With ``$ACGATE_BENCH_CACHE`` set and ``cache``, the activations come from (or go to) that
    cache (then ``model`` is ``None``).
    """
    from acgate.scan import ScanConfig, make_retrain, train_proxy
    from acgate.torch.extract import extract_activations

    if "is_poison" in dataset.columns:
        truth = np.asarray(dataset.columns["is_poison"], dtype=bool)
        source = np.asarray(dataset.columns["source_label"], dtype=np.int64)
    else:
        truth = np.zeros(len(dataset), dtype=bool)
        source = np.asarray(dataset.labels)
    config = ScanConfig(seed=seed)
    cache = _activation_cache(dataset, seed) if cache else None
    model = None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        activations, predictions = stored["activations"], stored["predictions"]
        timings = {"train proxy": float(stored["train_seconds"]),
                   "extract": float(stored["extract_seconds"])}
    else:
        clock = time.perf_counter()
        model, _ = train_proxy(dataset, config)
        timings = {"train proxy": time.perf_counter() - clock}
        clock = time.perf_counter()
        activations, predictions = extract_activations(model, dataset.images)
        timings["extract"] = time.perf_counter() - clock
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            temp = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")
            np.savez(temp, activations=activations, predictions=predictions,
                     train_seconds=timings["train proxy"], extract_seconds=timings["extract"])
            os.replace(temp, cache)
    return {"dataset": dataset, "truth": truth, "source": source, "activations": activations,
            "predictions": predictions, "config": config, "timings": timings, "model": model,
            "retrain": memoised_retrain(make_retrain(dataset, config))}


def digits_run(rate: float | None, seed: int) -> dict[str, Any]:
    """Poisoned digits + trained proxy + activations + retrain callable (cached per run)."""
    key = (rate, seed)
    if key in _DIGITS_CACHE:
        return _DIGITS_CACHE[key]
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.poison import poison_image_dataset
    from acgate.scan import ScanConfig, make_retrain, train_proxy
    from acgate.torch.extract import extract_activations

    timings = {}
    clock = time.perf_counter()
    dataset = load_digits_dataset()
    if rate is not None:
        dataset = poison_image_dataset(dataset, rate=rate, seed=seed)
        truth = np.asarray(dataset.columns["is_poison"], dtype=bool)
        source = np.asarray(dataset.columns["source_label"], dtype=np.int64)
    else:
        truth = np.zeros(len(dataset), dtype=bool)
        source = np.asarray(dataset.labels)
    timings["load_poison"] = time.perf_counter() - clock
    config = ScanConfig(seed=seed, epochs=QUICK_EPOCHS if QUICK else None)
    clock = time.perf_counter()
    model, _ = train_proxy(dataset, config)
    timings["train_proxy"] = time.perf_counter() - clock
    clock = time.perf_counter()
    activations, predictions = extract_activations(model, dataset.images)
    timings["extract"] = time.perf_counter() - clock
    run = {"dataset": dataset, "truth": truth, "source": source, "activations": activations,
           "predictions": predictions, "timings": timings, "config": config,
           "retrain": memoised_retrain(make_retrain(dataset, config))}
    _DIGITS_CACHE[key] = run
    return run


def detect_on(run: dict[str, Any], **kwargs: Any) -> tuple[Any, float]:
    """Run ``acgate.core.detect`` on a cached run; returns (result, wall seconds)."""
    from acgate.core.detect import detect

    if kwargs.get("analysis") in ("exre", "auto"):
        kwargs.setdefault("retrain_and_predict", run["retrain"])
    kwargs.setdefault("random_state", run["config"].seed)
    # The proxy's predictions, as a scan passes them (the natural-confusion test uses them).
    kwargs.setdefault("predictions", run.get("predictions"))
    start = time.perf_counter()
    result = detect(run["activations"], run["dataset"].labels, **kwargs)
    return result, time.perf_counter() - start


def scores(result: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-class flag metrics, classes flagged, source accuracy."""
    from acgate.core import flag_metrics

    metrics = flag_metrics(result, run["truth"])
    hit = np.asarray(result.is_poison) & run["truth"]
    n_hit = int(hit.sum())
    source_ok = int((np.asarray(result.suspected_source)[hit] == run["source"][hit]).sum())
    return {**metrics["overall"], "per_class": metrics["per_class"],
            "classes": tuple(result.poisoned_classes),
            "source_accuracy": source_ok / n_hit if n_hit else float("nan")}


CRASHES: list[str] = []


def crash_notes() -> str:
    """Markdown list of the detector errors a table hit (then cleared)."""
    if not CRASHES:
        return ""
    text = "\n`crash` = `detect` raised:\n\n" + "\n".join(f"- {c}" for c in CRASHES) + "\n"
    CRASHES.clear()
    return text


def seeds() -> tuple[int, ...]:
    """Seeds of the digits experiments (one in quick mode)."""
    return (0,) if QUICK else (0, 1, 2, 3, 4)


def rates() -> tuple[float | None, ...]:
    """Rates of the digits experiments (10% and clean in quick mode)."""
    return (0.10, None) if QUICK else DIGITS_RATES


def quality_cell(result: Any, run: dict[str, Any], rate: float | None) -> str:
    """``F1`` for a poisoned run, ``n flagged (classes)`` for the clean run."""
    s = scores(result, run)
    if rate is None:
        return f"{len(s['classes'])} {list(s['classes'])}"
    return f"{s['f1']:.3f}"


# ----------------------------------------------------------------------------- experiments


def exp_reducers() -> str:
    """F1 / clean-run flags for reducer pca | ica | none x analysis size-silhouette | exre."""
    header = ["reducer", "analysis", "seed"] + [rate_name(r) for r in rates()]
    rows = []
    for reducer in ("pca", "ica", "none"):
        for analysis in ("size-silhouette", "exre"):
            for seed in seeds():
                row: list[Any] = [reducer, analysis, seed]
                for rate in rates():
                    run = digits_run(rate, seed)
                    try:
                        result, _ = detect_on(run, reducer=reducer, analysis=analysis)
                    except (ValueError, FloatingPointError) as error:
                        CRASHES.append(f"reducer={reducer}, analysis={analysis}, seed={seed}, "
                                       f"rate={rate_name(rate)}: {type(error).__name__}: "
                                       f"{error}")
                        row.append("crash")
                        continue
                    row.append(quality_cell(result, run, rate))
                rows.append(row)
    return ("## reducers (digits)\n\nPoison F1 per rate; the `clean` column is the number of "
            "classes flagged in an unpoisoned run (and which). Size threshold: each analysis's "
            "default (0.35 size-silhouette, 0.45 exre).\n\n" + table_header() + "\n"
            + markdown_table(header, rows) + crash_notes())


def exp_size_threshold() -> str:
    """exre with size_threshold 0.35 | 0.45 | 0.5 (reducer pca)."""
    header = ["size_threshold", "seed"] + [rate_name(r) for r in rates()]
    rows = []
    for threshold in (0.35, 0.45, 0.5):
        for seed in seeds():
            row: list[Any] = [threshold, seed]
            for rate in rates():
                run = digits_run(rate, seed)
                result, _ = detect_on(run, analysis="exre", size_threshold=threshold)
                row.append(quality_cell(result, run, rate))
            rows.append(row)
    return ("## size_threshold (digits, exre, pca)\n\nPoison F1 per rate; `clean` = classes "
            "flagged in the unpoisoned run.\n\n" + table_header() + "\n"
            + markdown_table(header, rows))


#: (source share, sub-cluster source share) pairs swept by ``source_share``.
SOURCE_SHARES = ((0.40, 0.7), (0.47, 0.7), (0.50, 0.6), (0.50, 0.7), (0.50, 0.8), (0.60, 0.7),
                 (0.50, 1.0))


def exp_source_share() -> str:
    """The source-share thresholds of exclusionary reclassification, stable candidates."""
    header = (["source share", "sub-cluster share"]
              + [f"{rate_name(r)} F1 (mean / min)" for r in rates() if r is not None]
              + ["clean: classes flagged per seed"])
    rows = []
    for share, nested in SOURCE_SHARES:
        row: list[Any] = [share, nested]
        for rate in rates():
            cells = []
            for seed in seeds():
                run = digits_run(rate, seed)
                result, _ = detect_on(run, analysis="exre", source_share_threshold=share,
                                      nested_source_share_threshold=nested)
                cells.append(scores(result, run)["f1"] if rate is not None
                             else list(result.poisoned_classes))
            row.append(f"{np.mean(cells):.3f} / {min(cells):.3f}" if rate is not None
                       else " ".join(str(c) for c in cells))
        rows.append(row)
    return ("## source_share (digits, exre, stable candidates: the source-share thresholds)\n\n"
            "Exclusionary reclassification judges a left-out candidate poison when l/p < 1 and "
            "the most common other class holds at least `source share` of it (a stable "
            "sub-cluster found inside a candidate at a larger k: `sub-cluster share`; 1.0 "
            "turns sub-clusters off). Natural-confusion test at its default (on digits the proxy "
            "fits its training set, so it rarely fires). Cells: poison F1 over the seeds "
            f"{list(seeds())}; clean: the classes flagged in each seed's unpoisoned run. The "
            "default (0.5, 0.7) flags the same clean digits classes as 0.47 at a lower F1 "
            "(0.6 flags fewer and loses a poisoned class at 15%; 0.4 adds two clean flags); it is "
            "the default because on the MNIST-scale runs 0.47 flags class 7 of the unpoisoned "
            "7+ data and 0.5 flags nothing (`candidates`).\n\n"
            + table_header() + "\n" + markdown_table(header, rows))


def exp_digits_quality() -> str:
    """The default scan configuration on digits: quality and time per stage."""
    overall_rows, class_rows, time_rows = [], [], []
    for seed in seeds():
        for rate in rates():
            run = digits_run(rate, seed)
            from acgate.scan import make_retrain

            # A fresh (not memoised) retrain, so the analyze time is honest (quick: reuse).
            fresh = run["retrain"] if QUICK else make_retrain(run["dataset"], run["config"])
            result, seconds = detect_on(run, analysis="auto", retrain_and_predict=fresh)
            s = scores(result, run)
            overall_rows.append([rate_name(rate), seed, s["precision"], s["recall"], s["f1"],
                                 s["source_accuracy"], f"{len(s['classes'])} "
                                 f"{list(s['classes'])}"])
            class_rows.append([rate_name(rate), seed]
                              + [f"{c['f1']:.2f}" for c in s["per_class"]])
            t = run["timings"]
            analyze = result.info.timings.get("analyze", float("nan"))
            time_rows.append([rate_name(rate), seed, t["train_proxy"], t["extract"],
                              seconds - analyze, analyze])
    targets = [r for r in overall_rows if r[0] != "clean"]
    worst = min(r[4] for r in targets) if targets else float("nan")
    verdict = ("met" if worst >= 0.9 else "**MISSED**")
    text = ("## digits_quality (default scan: analysis auto = exre on stable candidates, pca, "
            "size 0.45)\n\n"
            f"Target from the issue: digits F1 >= 0.9 -> {verdict} (lowest F1 over the rates "
            f"and seeds run: {worst:.3f}). Source accuracy = share of correctly flagged poison "
            "whose suspected source equals the true source class.\n\n" + table_header() + "\n"
            + markdown_table(["rate", "seed", "precision", "recall", "F1", "source acc.",
                              "classes flagged"], overall_rows)
            + "\nPer-class F1 (classes 0-9):\n\n" + table_header() + "\n"
            + markdown_table(["rate", "seed"] + [str(c) for c in range(10)], class_rows)
            + "\nWall seconds per stage:\n\n"
            + table_header() + "\n"
            + markdown_table(["rate", "seed", "train proxy", "extract", "cluster",
                              "analyze (incl. exre retrain)"], time_rows))
    return text


MNIST_RATES = (0.10, 0.15, 0.33, None)  # None: the unpoisoned run


def raw_pixel_baseline(dataset: Any, truth: np.ndarray) -> dict[str, Any]:
    """The paper's baseline: FastICA 10 + 2-means on the flattened images, smaller cluster."""
    from acgate.core import flag_metrics
    from acgate.core.detect import detect

    flat = np.asarray(dataset.images, dtype=np.float32).reshape(len(dataset), -1)
    start = time.perf_counter()
    result = detect(flat, dataset.labels, reducer="ica", n_components=10, n_clusters=2,
                    analysis="size", size_threshold=0.5, random_state=0)
    metrics = flag_metrics(result, truth)
    per_class_accuracy = [c["accuracy"] for c in metrics["per_class"]]
    return {**metrics["overall"], "seconds": time.perf_counter() - start,
            "mean_class_accuracy": float(np.mean(per_class_accuracy))}


def exp_mnist() -> str:
    """Real MNIST, BadNets 10 / 15 / 33% all-to-all, default scan; an unpoisoned run; the
    raw-pixel baseline; per-class size ratios, silhouettes and ExRe scores (paper Table 3)."""
    import torch

    from acgate.io.loaders import load_mnist
    from acgate.io.poison import poison_image_dataset
    from acgate.torch.evaluate import clean_accuracy

    torch.set_num_threads(THREADS)
    rows_overall, rows_class, rows_time, rows_table3, rows_raw = [], [], [], [], []
    clean_verdicts = ""
    test = load_mnist(split="test")
    for rate in MNIST_RATES:
        clock = time.perf_counter()
        dataset = load_mnist()
        if rate is not None:
            dataset = poison_image_dataset(dataset, rate=rate, seed=0)
        load_seconds = time.perf_counter() - clock
        run = image_run(dataset, cache=False)  # the model itself is needed for test accuracy
        truth = run["truth"]
        timings = {"load": load_seconds, **run["timings"]}
        test_acc = clean_accuracy(run["model"], test.images, test.labels)
        result, seconds = detect_on(run, analysis="auto")
        analyze = result.info.timings.get("analyze", float("nan"))
        timings["cluster"] = seconds - analyze
        timings["analyze (incl. exre retrain)"] = analyze
        s = scores(result, run)
        rows_overall.append([rate_name(rate), len(dataset), test_acc, s["precision"],
                             s["recall"], s["f1"], s["source_accuracy"],
                             f"{len(s['classes'])} {list(s['classes'])}"])
        rows_class.append([rate_name(rate), "F1"] + [f"{c['f1']:.3f}" for c in s["per_class"]])
        rows_class.append([rate_name(rate), "accuracy"]
                          + [f"{c['accuracy']:.4f}" for c in s["per_class"]])
        rows_time.append([rate_name(rate)] + [timings[k] for k in (
            "load", "train proxy", "extract", "cluster", "analyze (incl. exre retrain)")])
        for report in result.classes:
            rows_table3.append([
                rate_name(rate), report.label,
                "-" if report.size_ratio is None else f"{report.size_ratio:.3f}",
                "-" if report.silhouette is None else f"{report.silhouette:.3f}",
                "-" if report.exre_score is None else f"{report.exre_score:.2f}",
                "-" if report.suspected_source is None else report.suspected_source,
                report.verdict])
        if rate is not None:
            raw = raw_pixel_baseline(dataset, truth)
            rows_raw.append([rate_name(rate), raw["mean_class_accuracy"], raw["precision"],
                             raw["recall"], raw["f1"], raw["seconds"], s["f1"]])
        if rate is None:
            clean_verdicts = "\n".join(f"- class {c.label}: {c.verdict} — {c.reason}"
                                       for c in result.classes)
        print(f"mnist {rate_name(rate)}: F1 {s['f1']:.3f}, flagged {s['classes']}", flush=True)
    poisoned = [r for r in rows_overall if r[0] != rate_name(None)]
    clean_row = [r for r in rows_overall if r[0] == rate_name(None)][0]
    n_clean_flagged = int(clean_row[7].split()[0])
    lowest = min(r[5] for r in poisoned)
    met = lowest >= 0.99 and n_clean_flagged == 0
    verdict = "met" if met else "**MISSED**"
    return (
        "## mnist (real MNIST 60k, BadNets 10 / 15 / 33% all-to-all, default scan, 2 epochs)\n\n"
        f"Target from the issue: F1 >= 0.99 at 10, 15 and 33% with no clean class flagged -> "
        f"{verdict} (lowest F1 {lowest:.3f}; classes flagged on unpoisoned MNIST: "
        f"{n_clean_flagged}). Per-class accuracy = share of the class's rows whose flag is "
        "right.\n\n"
        + table_header() + "\n"
        + markdown_table(["run", "rows", "proxy test acc.", "precision", "recall", "F1",
                          "source acc.", "classes flagged"], rows_overall)
        + "\nPer class (0-9):\n\n" + table_header() + "\n"
        + markdown_table(["run", "metric"] + [str(c) for c in range(10)], rows_class)
        + "\nRaw-pixel baseline (the paper's: FastICA 10 + 2-means on the flattened 784 pixels, "
          "the smaller cluster of each class flagged; `detect(images, reducer='ica', "
          "analysis='size', size_threshold=0.5)`). Paper: 58.6% accuracy / 15.8% F1 at 10%, "
          "90.8% / 86.4% at 33%. Accuracy = mean over classes of the share of rows whose flag "
          "is right; last column: acgate's default scan on the same data.\n\n"
        + table_header() + "\n"
        + markdown_table(["run", "mean class accuracy", "precision", "recall", "F1", "seconds",
                          "acgate default F1"], rows_raw)
        + "\nPer class: share of the suspicious (else smallest) cluster, silhouette of the "
          "clustering it comes from (the candidates' k), exclusionary-reclassification l/p of the "
          "candidate (`-`: no stable candidate under the 0.45 size cut) and suspected source "
          "(the paper's Table 3 analogue: the paper reports size ratios <= .11 and silhouettes "
          "mostly >= .15 for poisoned classes).\n\n"
        + table_header() + "\n"
        + markdown_table(["run", "class", "size ratio", "silhouette", "exre l/p",
                          "suspected source", "verdict"], rows_table3)
        + "\nWall seconds per stage:\n\n" + table_header() + "\n"
        + markdown_table(["run", "load (+poison)", "train proxy", "extract", "cluster",
                          "analyze (incl. exre retrain)"], rows_time)
        + "\nVerdicts on unpoisoned MNIST:\n\n" + clean_verdicts + "\n")


def synthetic_activations(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """128-d, 10 classes, 5% planted poison per class as a shifted Gaussian."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n_rows)
    centres = rng.normal(0.0, 3.0, size=(10, 128)).astype(np.float32)
    activations = rng.standard_normal((n_rows, 128), dtype=np.float32)
    activations += centres[labels]
    is_poison = rng.random(n_rows) < 0.05
    shift = rng.normal(0.0, 1.0, size=128).astype(np.float32)
    shift *= 6.0 / np.linalg.norm(shift)
    activations[is_poison] += shift
    return activations, labels, is_poison


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB: ``VmHWM`` where Linux has it, else ``ru_maxrss``.

    ``ru_maxrss`` survives fork + exec (a child of a 2 GB parent starts at 2 GB), so on Linux
    the per-address-space high-water mark ``VmHWM`` is the honest number.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scale_child(n_rows: int) -> None:
    """Measure one size in this (fresh) process; prints one JSON line."""
    from acgate.core import flag_metrics
    from acgate.core.detect import detect

    activations, labels, truth = synthetic_activations(n_rows)
    rss_data = peak_rss_kib()
    start = time.perf_counter()
    result = detect(activations, labels, analysis="size-silhouette")
    seconds = time.perf_counter() - start
    rss_peak = peak_rss_kib()
    rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f1 = flag_metrics(result, truth)["overall"]["f1"]
    print(json.dumps({"rows": n_rows, "seconds": seconds, "rss_after_data_kib": rss_data,
                      "rss_peak_kib": rss_peak, "ru_maxrss_kib": rusage, "f1": f1}))


def write_streamed_activations(n_rows: int, path: Path, seed: int = 0) -> np.ndarray:
    """Write synthetic activations (same model as :func:`synthetic_activations`) in batches.

    Returns the ground truth (``is_poison`` by sample id); memory stays at one batch.
    """
    from acgate.io.activations import ActivationWriter

    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(10, 128)).astype(np.float32)
    shift = rng.normal(0.0, 1.0, size=128).astype(np.float32)
    shift *= 6.0 / np.linalg.norm(shift)
    truth = np.zeros(n_rows, dtype=bool)
    with ActivationWriter(path, width=128) as writer:
        for start in range(0, n_rows, 100_000):
            size = min(100_000, n_rows - start)
            labels = rng.integers(0, 10, size=size)
            activations = rng.standard_normal((size, 128), dtype=np.float32) + centres[labels]
            poison = rng.random(size) < 0.05
            activations[poison] += shift
            truth[start:start + size] = poison
            writer.write_batch(np.arange(start, start + size), labels, None, activations)
    return truth


def stream_child(activations_path: str, out_dir: str) -> None:
    """Run ``acgate detect`` on a Parquet file in this (fresh) process; print one JSON line."""
    from acgate.cli import main as cli_main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["detect", activations_path, "--out", out_dir,
                         "--analysis", "size-silhouette"])
    seconds = time.perf_counter() - start
    print(json.dumps({"exit": code, "seconds": seconds, "rss_peak_kib": peak_rss_kib()}))


def _streamed_row(n_rows: int) -> list[Any]:
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="acgate-bench-stream-"))
    try:
        path = work / "activations.parquet"
        truth = write_streamed_activations(n_rows, path)
        completed = subprocess.run(  # noqa: S603 - this script, fixed arguments
            [sys.executable, __file__, "--stream-child", str(path), str(work / "out")],
            capture_output=True, text=True, check=True)
        m = json.loads(completed.stdout.strip().splitlines()[-1])
        flagged = pq.read_table(work / "out" / "flagged.parquet").column("index").to_numpy()
        predicted = np.zeros(n_rows, dtype=bool)
        predicted[flagged] = True
        tp = int((predicted & truth).sum())
        precision, recall = tp / max(int(predicted.sum()), 1), tp / max(int(truth.sum()), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        return [f"{n_rows:,}", "streamed: `acgate detect` on Parquet", m["seconds"],
                f"{path.stat().st_size / 2**20:.0f} MiB file", f"{m['rss_peak_kib'] / 1024:.0f}",
                "-", f1]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def exp_scale() -> str:
    """Wall time and peak RSS of detect(size-silhouette) on synthetic activations."""
    sizes = (60_000,) if QUICK else (60_000, 200_000, 1_000_000)
    rows = []
    for n_rows in sizes:
        completed = subprocess.run(  # noqa: S603 - this script, fixed arguments
            [sys.executable, __file__, "--scale-child", str(n_rows)],
            capture_output=True, text=True, check=True)
        m = json.loads(completed.stdout.strip().splitlines()[-1])
        rows.append([f"{n_rows:,}", "in memory: `detect()`", m["seconds"],
                     f"{m['rss_after_data_kib'] / 1024:.0f}",
                     f"{m['rss_peak_kib'] / 1024:.0f}", f"{m['ru_maxrss_kib'] / 1024:.0f}",
                     m["f1"]])
        rows.append(_streamed_row(n_rows))
    low = [r[0] for r in rows if r[-1] < 0.9]
    warning = (f"\n**F1 below 0.9 at {', '.join(low)} rows** (same generator at every size).\n"
               if low else "")
    streamed_1m = [r for r in rows if r[0] == "1,000,000" and r[1].startswith("streamed")]
    if streamed_1m:
        peak_mib = float(streamed_1m[0][4])
        verdict = "met" if peak_mib <= 1536 else "**MISSED**"
        warning += (f"\nTarget from the issue: peak RSS of `acgate detect` at 1M x 128 streamed "
                    f"from Parquet <= 1.5 GB -> {verdict} ({peak_mib:.0f} MiB, process "
                    "included: Python, numpy, scikit-learn, pyarrow).\n")
    return ("## scale (synthetic activations, detect(analysis='size-silhouette'))\n\n"
            "128-d float32, 10 classes, 5% planted poison per class (a Gaussian shifted by 6 "
            "units). One fresh subprocess per size; RSS = the process's peak (Linux `VmHWM`) "
            "after generating the data and after detect (includes the data). `ru_maxrss` is "
            "shown too but is inherited from the parent across fork + exec, so it overstates "
            "the child when the parent is large. Above 250,000 rows a class is clustered with "
            "MiniBatchKMeans refined by full KMeans "
            "(`acgate.core.clustering.MINIBATCH_CUTOFF`).\n\n"
            + table_header() + "\n"
            + markdown_table(["rows", "path", "detect seconds", "RSS after data (MiB)",
                              "peak RSS (MiB)", "ru_maxrss (MiB)", "F1"], rows) + warning)


def exp_art() -> str:
    """acgate vs IBM ART's ActivationDefence on the same MNIST data and proxy (bench_art.py)."""
    from bench_art import exp_art as run_art

    return run_art(sys.modules[__name__])


def exp_repair_mnist() -> str:
    """The paper's Table 4 analogue on MNIST at 33% poison (bench_repair.py)."""
    from bench_repair import exp_repair_mnist as run_repair_mnist

    return run_repair_mnist(sys.modules[__name__])


def exp_art_scale() -> str:
    """acgate vs ART's analysis on synthetic activations at 60k-1M rows (bench_art_scale.py)."""
    from bench_art_scale import exp_art_scale as run_art_scale

    return run_art_scale(sys.modules[__name__])


def exp_beyond_mnist() -> str:
    """Low rates, blended trigger and clean runs on MNIST / Fashion-MNIST, per analyzer."""
    from bench_beyond_mnist import exp_beyond_mnist as run_beyond_mnist

    return run_beyond_mnist(sys.modules[__name__])


def exp_candidates() -> str:
    """Candidate generation and verdict variants on digits and MNIST (bench_candidates.py)."""
    from bench_candidates import exp_candidates as run_candidates

    return run_candidates(sys.modules[__name__])


def exp_multimodal() -> str:
    """The paper's "7+" multimodal-class experiments on MNIST (bench_multimodal.py)."""
    from bench_multimodal import exp_multimodal as run_multimodal

    return run_multimodal(sys.modules[__name__])


EXPERIMENTS: dict[str, Callable[[], str]] = {
    "reducers": exp_reducers,
    "size_threshold": exp_size_threshold,
    "candidates": exp_candidates,
    "source_share": exp_source_share,
    "digits_quality": exp_digits_quality,
    "mnist": exp_mnist,
    "scale": exp_scale,
    "art": exp_art,
    "repair_mnist": exp_repair_mnist,
    "multimodal": exp_multimodal,
    "art_scale": exp_art_scale,
    "beyond_mnist": exp_beyond_mnist,
}


def main(argv: list[str] | None = None) -> int:
    """Run the selected experiments and write their parts + RESULTS.md."""
    global COMMAND, QUICK, THREADS, NOTE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke subset (< 3 min)")
    parser.add_argument("--only", action="append", choices=sorted(EXPERIMENTS),
                        help="run only this experiment (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--note", default="", help="text added under each machine line")
    parser.add_argument("--assemble", action="store_true", help="only rebuild RESULTS.md")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale_child:
        scale_child(args.scale_child)
        return 0
    if args.stream_child:
        stream_child(*args.stream_child)
        return 0
    if args.assemble:
        QUICK = args.quick
        assemble()
        return 0
    import torch

    THREADS = args.threads
    torch.set_num_threads(THREADS)
    QUICK = args.quick
    NOTE = args.note
    COMMAND = shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    names = args.only or [n for n in EXPERIMENT_ORDER
                          if not (QUICK and n in ("mnist", "art", "repair_mnist", "multimodal",
                                                    "art_scale", "beyond_mnist", "candidates"))]
    for name in names:
        start = time.perf_counter()
        write_part(name, EXPERIMENTS[name]())
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
