"""``shards``: sharded extraction (issue 22): per-pod time and memory, and equal activations.

Run by ``python bench/run.py --only shards`` (not in ``--quick``). MNIST (the packaged
60k training images) is written as a dataset, a proxy is trained on it for one epoch (what is
measured is extraction, not the proxy's quality), and the pipeline's extraction steps run as
the pipeline runs them, each in a fresh process as a pod would (``plan_shards`` ->
``extract_activations`` per shard -> ``collect_activations`` -> ``cluster`` of one class):
one shard, then 4 and 8. Per step: wall seconds and peak RSS (``VmHWM``) of its process. The
shards run one after the other here (2 cores); on a cluster they run side by side, so the
extraction's wall time is the slowest shard's. The collected activations of every shard count
are compared bit for bit with the one-shard run's, and so is one class's clustering.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    BenchSettings,
    markdown_table,
    peak_rss_kib,
    run_step_child,
    table_header,
)

ROWS = 60_000
SHARD_COUNTS = (1, 4, 8)
#: The class whose clustering is compared across shard counts.
CLUSTERED_CLASS = 3


def child(step: str, arguments: str) -> None:
    """Run one pipeline step in this (fresh) process; print one JSON line."""
    from acgate.stages import (
        cluster_stage,
        collect_activations_stage,
        extract_stage,
        pipeline_config,
        plan_shards_stage,
    )

    given = json.loads(arguments)
    config = pipeline_config(seed=0)
    start = time.perf_counter()
    output: Any = None
    if step == "plan":
        output = plan_shards_stage(given["dataset"], given["n_shards"])
    elif step == "extract":
        output, _ = extract_stage(given["dataset"], given["model"], given["out"], config,
                                  shard=given["shard"], n_shards=given["n_shards"])
    elif step == "collect":
        output = collect_activations_stage(given["shards"], given["dataset"], given["out"])
    elif step == "cluster":
        cluster_stage(given["activations"], given["label"], given["out"], config)
    print(json.dumps({"output": output, "seconds": time.perf_counter() - start,
                      "rss_peak_kib": peak_rss_kib()}))


def _run(step: str, **arguments: Any) -> dict[str, Any]:
    return run_step_child("bench.experiments.shards", step, arguments,
                          env={"ACGATE_TORCH_THREADS": "1"})


def _prepare(work: Path, n_rows: int) -> tuple[Path, Path]:
    """The dataset file and a proxy trained on it for one epoch."""
    from acgate.io.datasets import write_image_dataset
    from acgate.stages import pipeline_config, train_proxy_stage
    from bench.experiments import attack_matrix

    dataset = attack_matrix._subset(attack_matrix._base("mnist"), n_rows, 0)
    path = write_image_dataset(dataset, work / "mnist.parquet")
    train_proxy_stage(path, work / "model", pipeline_config(seed=0, epochs=1))
    return path, work / "model"


def _sharded(work: Path, dataset: Path, model: Path, n_shards: int) -> dict[str, Any]:
    folder = work / f"n{n_shards}"
    shards = _run("plan", dataset=str(dataset), n_shards=n_shards)["output"]
    extracts = [_run("extract", dataset=str(dataset), model=str(model), shard=shard,
                     n_shards=n_shards, out=str(folder / f"shard-{shard}")) for shard in shards]
    collected = _run("collect", shards=[str(folder / f"shard-{s}") for s in shards],
                     dataset=str(dataset), out=str(folder / "activations"))
    clustered = _run("cluster", activations=str(folder / "activations"),
                     label=CLUSTERED_CLASS, out=str(folder / "clustering.parquet"))
    return {"shards": len(shards), "extracts": extracts, "collect": collected,
            "cluster": clustered, "activations": folder / "activations",
            "clustering": folder / "clustering.parquet"}


def section(settings: BenchSettings) -> str:
    """One row per shard count."""
    import pyarrow.parquet as pq

    from acgate.io.activations import read_activations

    n_rows = ROWS
    work = Path(tempfile.mkdtemp(prefix="acgate-bench-shards-"))
    try:
        dataset, model = _prepare(work, n_rows)
        runs = {n: _sharded(work, dataset, model, n) for n in SHARD_COUNTS}
        reference = read_activations(runs[1]["activations"])
        reference_clustering = pq.read_table(runs[1]["clustering"])
        rows = []
        for n, run in runs.items():
            table = read_activations(run["activations"])
            same = (np.array_equal(table.indices, reference.indices)
                    and np.array_equal(table.activations, reference.activations)
                    and pq.read_table(run["clustering"]).equals(reference_clustering))
            seconds = [e["seconds"] for e in run["extracts"]]
            rss = [e["rss_peak_kib"] / 1024 for e in run["extracts"]]
            rows.append([n, run["shards"], f"{max(seconds):.1f}", f"{sum(seconds):.1f}",
                         f"{max(rss):.0f}", f"{run['collect']['seconds']:.1f}",
                         f"{run['collect']['rss_peak_kib'] / 1024:.0f}",
                         f"{run['cluster']['seconds']:.1f}",
                         f"{run['cluster']['rss_peak_kib'] / 1024:.0f}",
                         "yes" if same else "**no**"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = markdown_table(
        ["n_shards", "shards", "slowest shard s (cluster wall time)", "all shards s",
         "peak RSS per shard pod (MiB)", "collect s", "collect RSS (MiB)",
         f"cluster class {CLUSTERED_CLASS} s", "cluster RSS (MiB)",
         "activations and clustering equal to 1 shard"], rows)
    return (f"## shards\n\nSharded extraction on MNIST, {n_rows:,} rows (module docstring of "
            f"`bench/experiments/shards.py`; pipeline input `n_shards`): every step in a fresh "
            f"process, one torch thread.\n\n{table_header(settings)}\n{table}")
