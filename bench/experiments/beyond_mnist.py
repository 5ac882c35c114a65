"""``beyond_mnist``: detection beyond the paper on real MNIST, per analyzer.

Run by ``python bench/run.py --only beyond_mnist``. ``ACGATE_BENCH_BEYOND_RUNS=a,b`` runs only
those runs (so they can be split over processes); each run's rows are kept in
``bench/parts/beyond_mnist/<run>.json`` and the section is rebuilt from every run present.
Runs:

* BadNets (inverted bottom-right patch, l -> l+1) at 1%, 2% and 5% of every class;
* a blended trigger (a seeded noise image, alpha 0.1 and 0.2) at 10%;
* unpoisoned MNIST and unpoisoned Fashion-MNIST (clean runs: no class may be flagged).

Each run trains the default proxy (2 epochs) once, extracts the 128-d layer, then judges it
with every analyzer of the core registry on the same activations: the default (exclusionary
reclassification of stable candidates with the source-share and confusion tests), size +
silhouette (the paper's plain rule),
spectral signature, robust covariance, distance, and ART-style "smaller cluster" (``size``
with the cut at 0.5) as the baseline row.
"""

from __future__ import annotations

from typing import Any

from bench.common import BenchSettings, cached_runs, markdown_table, table_header
from bench.image_runs import detect_on, image_run, scores

RUNS: dict[str, tuple[str, float | None, str]] = {
    # name: (dataset, rate, trigger)
    "badnets-1%": ("mnist", 0.01, "patch"),
    "badnets-2%": ("mnist", 0.02, "patch"),
    "badnets-5%": ("mnist", 0.05, "patch"),
    "blend-0.1": ("mnist", 0.10, "blend-0.1"),
    "blend-0.2": ("mnist", 0.10, "blend-0.2"),
    "clean-mnist": ("mnist", None, "-"),
    "clean-fashion": ("fashion", None, "-"),
}
ANALYZERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default: exre (stable candidates, confusion test)", {"analysis": "auto"}),
    ("size + silhouette (paper rule)", {"analysis": "size-silhouette"}),
    ("spectral signature", {"analysis": "spectral"}),
    ("robust covariance", {"analysis": "robust"}),
    ("distance", {"analysis": "distance"}),
    ("smaller cluster (ART default rule)", {"analysis": "size", "size_threshold": 0.5}),
)
#: Folder of the run records, under the settings' parts folder.
CACHE_NAME = "beyond_mnist"


def _dataset(name: str, rate: float | None, trigger: str) -> Any:
    from acgate.io.loaders import load_fashion_mnist, load_mnist
    from acgate.io.poison import TriggerSpec, poison_image_dataset

    dataset = load_fashion_mnist() if name == "fashion" else load_mnist()
    if rate is None:
        return dataset
    spec = (TriggerSpec(kind="blend", alpha=float(trigger.split("-")[1]), seed=0)
            if trigger.startswith("blend") else TriggerSpec())
    return poison_image_dataset(dataset, rate=rate, trigger=spec, seed=0)


def _one_run(settings: BenchSettings, name: str) -> list[list[Any]]:
    run = image_run(_dataset(*RUNS[name]), threads=settings.threads)
    truth = run["truth"]
    proxy_seconds = sum(run["timings"].values())
    rows = []
    for analyzer, kwargs in ANALYZERS:
        result, seconds = detect_on(run, **kwargs)
        s = scores(result, run)
        quality = ([s["precision"], s["recall"], s["f1"]] if truth.any() else ["-", "-", "-"])
        rows.append([name, analyzer, *quality, f"{len(s['classes'])} {list(s['classes'])}",
                     seconds])
        print(f"beyond_mnist {name} / {analyzer}: {rows[-1][2:]}", flush=True)
    rows.append([name, "(proxy training + extraction)", "-", "-", "-", "-", proxy_seconds])
    return rows


def section(settings: BenchSettings) -> str:
    """Run the selected runs (env ``ACGATE_BENCH_BEYOND_RUNS``), merge with cached rows."""
    import torch

    torch.set_num_threads(settings.threads)
    cached = cached_runs(
        settings.parts_dir / CACHE_NAME, "ACGATE_BENCH_BEYOND_RUNS", list(RUNS),
        lambda name: {"rows": _one_run(settings, name), "header": table_header(settings)})
    sections = []
    for name in RUNS:
        if name not in cached:
            sections.append(f"`{name}`: not run yet.\n")
            continue
        sections.append(f"### {name}\n\n" + cached[name]["header"] + "\n"
                        + markdown_table(["run", "analyzer", "precision", "recall", "F1",
                                          "classes flagged", "seconds"],
                                         cached[name]["rows"]))
    return ("## beyond_mnist (real MNIST / Fashion-MNIST: low rates, blended trigger, clean "
            "runs; every analyzer on the same activations)\n\n"
            "Default proxy (2 epochs, seed 0), the 128-d last hidden layer, `detect` with each "
            "analyzer. Rates are the poison share of every class (BadNets l -> l+1); blend = a "
            "seeded noise image blended at alpha into 10% of every class. Clean runs: classes "
            "flagged must be 0. Targets from the issue: F1 >= 0.95 at 5% BadNets, >= 0.9 on the "
            "blended trigger, no class flagged in any clean run; 1% and 2% reported as they "
            "are. Seconds: the detection call (exre: including its retrain).\n\n"
            + "\n".join(sections))
