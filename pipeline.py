"""The acgate Kubeflow pipeline: scan the training data, then promote the model or repair the data.

    train_proxy ──► extract_activations ──► cluster (ParallelFor over the classes)
                                                 │  dsl.Collected
                                                 ▼
                                              analyze ──► If verdict == "clean": gate (MLflow)
                                                      └─► Else:                  repair

Each step is a thin component in ``components/<stage>/component.py`` calling
:mod:`acgate.stages`; the per-class fan-out gives the same flags as ``acgate scan``
(:func:`acgate.scan.run_scan`) with the same settings and seed. The classes to fan out over
come from the data (``extract_activations`` returns them), so no class list has to be passed.

Usage::

    python pipeline.py compile [--out pipeline.yaml]
    python pipeline.py run --dataset data.parquet [--tracking-uri sqlite:///mlruns/mlflow.db]
        [--model-name NAME --model-version 3] [--epochs 3] [--seed 0] [--root local-runs]

``run`` executes the real compiled pipeline on this machine with kfp's local
``SubprocessRunner(use_venv=False)``: no cluster, no Docker, no network. kfp 2.17.3's local
orchestrator runs ``ParallelFor``, ``dsl.Collected`` and ``dsl.If``/``dsl.Else`` itself, so
the local run and the cluster run share one pipeline definition.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's annotations at runtime.
import argparse
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple, Optional

from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from components.analyze.component import analyze  # noqa: E402
from components.cluster.component import cluster  # noqa: E402
from components.extract_activations.component import extract_activations  # noqa: E402
from components.gate.component import gate  # noqa: E402
from components.repair.component import repair  # noqa: E402
from components.train_proxy.component import train_proxy  # noqa: E402

PIPELINE_NAME = "acgate-scan"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Find backdoor-poisoned training data with Activation Clustering; promote the "
                "model only when the data is clean, else repair the data.",
)
def acgate_pipeline(
    dataset_uri: str,
    size_threshold: Optional[float] = None,
    silhouette_threshold: float = 0.10,
    source_share_threshold: float = 0.5,
    nested_source_share_threshold: float = 0.7,
    confusion_threshold: float = 0.03,
    analysis: str = "auto",
    seed: int = 0,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
    epochs: Optional[int] = None,
    reducer: str = "pca",
    n_components: int = 10,
    n_clusters: str = "",
    segment_by: str = "label",
    repair_strategy: str = "relabel",
    alias: str = "champion",
) -> NamedTuple("ScanOutputs", samples=dsl.Dataset, verdict=str, run_id=str):
    """Scan ``dataset_uri``; promote ``model_name``/``model_version`` if clean, else repair.

    Args:
        dataset_uri: Dataset Parquet file (``label`` + ``image``), a path or URI.
        size_threshold: Largest share a poison cluster may hold; ``None``: 0.45 under
            exclusionary reclassification, else 0.35.
        silhouette_threshold: Smallest silhouette counted as two clusters.
        source_share_threshold: Exclusionary reclassification: smallest share of a left-out
            cluster that must go to one other class for it to be poison.
        nested_source_share_threshold: The same for a stable sub-cluster inside a candidate.
        confusion_threshold: A candidate is legitimate when the proxy itself confuses its class
            and the suspected source at least this much (2 disables the test).
        analysis: ``"auto"`` (exclusionary reclassification), ``"exre"``,
            ``"size-silhouette"``, ``"size"``, ``"silhouette"`` or ``"distance"``.
        seed: Seed of every random step.
        model_name: Registered MLflow model trained on this data; ``None``: no promotion.
        model_version: Its version.
        mlflow_tracking_uri: MLflow tracking and registry URI; ``None``: no tracking (and the
            gate then refuses any named model).
        epochs: Proxy epochs; ``None``: 30 below 10k rows, else 2.
        reducer: ``"pca"``, ``"ica"`` or ``"none"``.
        n_components: Dimensions after reduction.
        n_clusters: ``"2"`` (k of k-means), ``"auto"`` or ``"stable"``; ``""``: ``"stable"``
            under exclusionary reclassification, else 2.
        segment_by: ``"label"`` or ``"prediction"``.
        repair_strategy: ``"relabel"`` or ``"remove"`` (the repair of a poisoned dataset).
        alias: MLflow alias the gate moves on a pass.
    """
    trained = train_proxy(dataset_uri=dataset_uri, seed=seed, epochs=epochs)
    trained.set_display_name("train proxy")

    extracted = extract_activations(dataset=trained.outputs["dataset"],
                                    model=trained.outputs["model"], segment_by=segment_by)
    extracted.set_display_name("extract activations")

    with dsl.ParallelFor(items=extracted.outputs["Output"], name="per-class") as label:
        clustered = cluster(
            activations=extracted.outputs["activations"], label=label, reducer=reducer,
            n_components=n_components, n_clusters=n_clusters, seed=seed,
            segment_by=segment_by, analysis=analysis, size_threshold=size_threshold,
        )
        clustered.set_display_name("cluster class")

    analyzed = analyze(
        activations=extracted.outputs["activations"], dataset=trained.outputs["dataset"],
        clusterings=dsl.Collected(clustered.outputs["clustering"]), dataset_uri=dataset_uri,
        analysis=analysis, size_threshold=size_threshold,
        silhouette_threshold=silhouette_threshold,
        source_share_threshold=source_share_threshold,
        nested_source_share_threshold=nested_source_share_threshold,
        confusion_threshold=confusion_threshold, reducer=reducer, n_components=n_components,
        n_clusters=n_clusters, seed=seed, epochs=epochs, segment_by=segment_by,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    analyzed.set_display_name("analyze")

    with dsl.If(analyzed.outputs["verdict"] == "clean", name="data-clean"):
        promoted = gate(run_id=analyzed.outputs["run_id"], model_name=model_name,
                        model_version=model_version, mlflow_tracking_uri=mlflow_tracking_uri,
                        alias=alias)
        promoted.set_display_name("promotion gate")
    with dsl.Else(name="data-poisoned"):
        repaired = repair(dataset=trained.outputs["dataset"],
                          samples=analyzed.outputs["samples"], model=trained.outputs["model"],
                          strategy=repair_strategy, seed=seed, epochs=epochs,
                          mlflow_tracking_uri=mlflow_tracking_uri,
                          scan_run_id=analyzed.outputs["run_id"])
        repaired.set_display_name("repair")

    outputs = NamedTuple("ScanOutputs", samples=dsl.Dataset, verdict=str, run_id=str)
    return outputs(samples=analyzed.outputs["samples"], verdict=analyzed.outputs["verdict"],
                   run_id=analyzed.outputs["run_id"])


def compile_pipeline(out: str | os.PathLike[str] = "pipeline.yaml") -> Path:
    """Compile the pipeline to KFP IR YAML; returns the path written."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(acgate_pipeline, str(path))
    return path


def run_locally(root: str | os.PathLike[str] = "local-runs", **arguments: object) -> dict:
    """Run the pipeline on this machine (kfp ``SubprocessRunner``, no venv, no network).

    Args:
        root: Pipeline root: every task's artifacts land under it.
        **arguments: Pipeline inputs (``dataset_uri`` required; ``None`` values are dropped).

    Returns:
        ``{"verdict", "run_id", "samples"}`` (the path of the per-sample result).

    Raises:
        RuntimeError: When a step fails (the message names the task; its log says why).
    """
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    task = acgate_pipeline(**_with_every_optional_input(arguments))
    return {"verdict": task.outputs["verdict"], "run_id": task.outputs["run_id"],
            "samples": task.outputs["samples"].path}


def _with_every_optional_input(arguments: dict) -> dict:
    """Give every ``Optional`` pipeline input a value that means what ``None`` means.

    kfp 2.17.3's local orchestrator can neither read the (absent) default of an
    ``Optional[...] = None`` pipeline input (``Unknown value type``) nor take an explicit
    ``None`` argument, so a local run passes the equivalent values: ``""`` for the MLflow
    strings (the components read ``""`` as "not given"), the resolved epochs (30 below 10k rows,
    else 2) and the resolved size threshold (0.45 under exclusionary reclassification, else
    0.35). On a cluster the ``None`` defaults are used as declared.
    """
    from acgate.core.detect import EXRE_SIZE_THRESHOLD, SIZE_THRESHOLD
    from acgate.io.schema import open_parquet
    from acgate.scan import ScanConfig

    complete = dict(arguments)
    for name in ("model_name", "model_version", "mlflow_tracking_uri"):
        if complete.get(name) is None:
            complete[name] = ""
    if complete.get("epochs") is None:
        n_rows = open_parquet(complete["dataset_uri"]).metadata.num_rows
        complete["epochs"] = ScanConfig().resolved_epochs(n_rows)
    if complete.get("size_threshold") is None:
        exre = complete.get("analysis", "auto") in ("auto", "exre")
        complete["size_threshold"] = EXRE_SIZE_THRESHOLD if exre else SIZE_THRESHOLD
    return {name: value for name, value in complete.items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``compile`` or ``run``."""
    parser = argparse.ArgumentParser(prog="python pipeline.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="write the pipeline YAML")
    comp.add_argument("--out", default="pipeline.yaml", help="output file (default: pipeline.yaml)")
    run = sub.add_parser("run", help="run the pipeline locally (SubprocessRunner)")
    run.add_argument("--dataset", required=True, help="dataset Parquet file")
    run.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: none)")
    run.add_argument("--model-name", default=None)
    run.add_argument("--model-version", default=None)
    run.add_argument("--epochs", type=int, default=None)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--analysis", default="auto")
    run.add_argument("--size-threshold", type=float, default=None)
    run.add_argument("--silhouette-threshold", type=float, default=0.10)
    run.add_argument("--repair-strategy", default="relabel", choices=("relabel", "remove"))
    run.add_argument("--root", default="local-runs", help="pipeline root (default: local-runs)")
    args = parser.parse_args(argv)
    if args.command == "compile":
        print(compile_pipeline(args.out))
        return 0
    outputs = run_locally(
        args.root, dataset_uri=str(Path(args.dataset).resolve()),
        mlflow_tracking_uri=args.tracking_uri, model_name=args.model_name,
        model_version=args.model_version, epochs=args.epochs, seed=args.seed,
        analysis=args.analysis, size_threshold=args.size_threshold,
        silhouette_threshold=args.silhouette_threshold, repair_strategy=args.repair_strategy,
    )
    print(json.dumps(outputs, indent=2))
    return 0 if outputs["verdict"] == "clean" else 3


if __name__ == "__main__":
    sys.exit(main())
