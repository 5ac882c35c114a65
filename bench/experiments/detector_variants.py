"""Detector variants on cached proxy activations: the table that chose issue 18's defaults.

Builds each case once (library poisoning, 8-bit images as a Parquet PNG round trip gives them,
the real seeded proxy, its last-hidden-layer activations) under ``--cache``, then runs
``acgate.core.detect`` with exclusionary reclassification (a real retrain) under each variant:

- ``previous``: no margins, no direction candidates, no several-sources rule (the old default);
- ``margins``: candidate margins in every class (no class-size floor) + direction candidates;
- ``default``: the current module defaults.

Usage: ``python bench/detector_variants.py --cases 'digits_*' --variants previous,default``.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CASES: dict[str, tuple[str, int, str, float]] = {}
for _seed in range(5):
    CASES.update({f"digits_clean_{_seed}": ("digits", _seed, "clean", 0.0),
                  f"digits_a2a10_{_seed}": ("digits", _seed, "a2a", 0.10),
                  f"digits_a2a33_{_seed}": ("digits", _seed, "a2a", 0.33),
                  f"digits_a2o3_{_seed}": ("digits", _seed, "a2o", 0.03)})
for _seed in range(3):
    CASES.update({f"mnist_clean_{_seed}": ("mnist", _seed, "clean", 0.0),
                  f"mnist_a2o1_{_seed}": ("mnist", _seed, "a2o", 0.01)})
CASES["mnist_a2a10_0"] = ("mnist", 0, "a2a", 0.10)
MNIST_ROWS = 20_000


def build(name: str, cache: Path) -> Path:
    """Poison, train the proxy, extract; cached as ``<cache>/<name>.npz``."""
    import torch

    from acgate.io.datasets import ImageDataset
    from acgate.io.loaders import load_digits_dataset, load_mnist
    from acgate.io.poison import poison_image_dataset
    from acgate.scan import ScanConfig, train_proxy
    from acgate.torch.extract import extract_activations

    path = cache / f"{name}.npz"
    if path.exists():
        return path
    torch.set_num_threads(1)
    data, seed, kind, rate = CASES[name]
    base = load_digits_dataset()
    if data == "mnist":
        full = load_mnist()
        rows = np.sort(np.random.default_rng(seed).choice(len(full.labels), MNIST_ROWS,
                                                          replace=False))
        base = ImageDataset(images=full.images[rows], labels=full.labels[rows])
    if kind == "clean":
        dataset, truth = base, np.zeros(len(base.labels), dtype=bool)
    else:
        extra = {"all_to_one": seed % 10, "rate_of": "data"} if kind == "a2o" else {}
        dataset = poison_image_dataset(base, rate=rate, seed=seed, **extra)
        truth = np.asarray(dataset.columns["is_poison"], dtype=bool)
    images = (np.round(np.asarray(dataset.images) * 255) / 255).astype(np.float32)
    dataset = ImageDataset(images=images, labels=np.asarray(dataset.labels))
    model, _ = train_proxy(dataset, ScanConfig(seed=seed))
    activations, predictions = extract_activations(model, dataset.images)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, acts=activations, labels=dataset.labels, preds=predictions, truth=truth,
             images=dataset.images, seed=seed)
    return path


def run(path: Path, variant: str) -> dict[str, Any]:
    """Detect on one cached case under a variant; F1 and the flagged classes."""
    import torch

    from acgate.core import detect
    from acgate.io.datasets import ImageDataset
    from acgate.scan import ScanConfig, make_retrain

    detect_module = sys.modules["acgate.core.detect"]
    exre_module = sys.modules["acgate.core.exre"]  # the exclusionary reclassification rules
    clustering = sys.modules["acgate.core.clustering"]
    saved = (exre_module.HALO_MIN_CLASS_ROWS, exre_module.HALO_MAX_CANDIDATE_SHARE,
             exre_module.MULTI_SOURCE_OWN_SHARE, detect_module.cluster_class)
    if variant == "previous":
        exre_module.HALO_MAX_CANDIDATE_SHARE = 0.0
        exre_module.MULTI_SOURCE_OWN_SHARE = -1.0
        detect_module.cluster_class = functools.partial(clustering.cluster_class,
                                                        directions=False)
    elif variant == "margins":
        exre_module.HALO_MIN_CLASS_ROWS = 0
    torch.set_num_threads(1)
    data = np.load(path)
    seed = int(data["seed"])
    started = time.perf_counter()
    try:
        retrain = make_retrain(ImageDataset(images=data["images"], labels=data["labels"]),
                               ScanConfig(seed=seed))
        result = detect(data["acts"], data["labels"], predictions=data["preds"],
                        retrain_and_predict=retrain, random_state=seed)
    finally:
        (exre_module.HALO_MIN_CLASS_ROWS, exre_module.HALO_MAX_CANDIDATE_SHARE,
         exre_module.MULTI_SOURCE_OWN_SHARE, detect_module.cluster_class) = saved
    truth = data["truth"]
    flagged = result.is_poison
    tp = int((flagged & truth).sum())
    return {"f1": 2 * tp / max(int(flagged.sum() + truth.sum()), 1),
            "classes": list(result.poisoned_classes), "n_flagged": int(flagged.sum()),
            "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases under the selected variants, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", action="append", default=None, help="glob(s) over names")
    parser.add_argument("--variants", default="previous,default")
    parser.add_argument("--cache", type=Path, default=Path("data/cache/detector_variants"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    names = [n for n in CASES if any(fnmatch.fnmatch(n, g) for g in (args.cases or ["*"]))]
    variants = args.variants.split(",")
    print("| case | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for name in names:
        path = build(name, args.cache)
        cells = []
        for variant in variants:
            outcome = run(path, variant)
            cells.append(f"{outcome['f1']:.3f} {outcome['classes']}")
            print(json.dumps({"case": name, "variant": variant, **outcome}), file=sys.stderr)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
