"""The acgate Kubeflow pipeline: scan the training data, then promote the model or repair the data.

    dataset_digest ──► train_proxy ──► plan_shards ──► extract_activations (ParallelFor over
     (never cached)                                     │   row shards, at most 8 at a time)
                                                        ▼ dsl.Collected
        collect_activations ──► cluster (ParallelFor over classes) ──► analyze (dsl.Collected)
        analyze ──► tag_verdict ──► If verdict == "clean": publish_baseline (for incremental
                    (model version)           scans) ──► gate (moves the alias)
                                     Else: repair ──► rescan ──► verdict (fails the run)

    The incremental pipeline (``compile --incremental``): dataset_digest ──► incremental_scan
    (against the published baseline), and when not clean repair ──► rescan (the repaired
    partition against the very baseline the scan used: a ``models:/`` alias resolved once)
    ──► verdict (fails the run).

Extraction runs over ``n_shards`` row shards in parallel (``n_shards=1``: one task); each shard
writes one Parquet part per class, ``collect_activations`` checks that the parts cover every
row once and gathers them into one class-partitioned activation dataset
(:mod:`acgate.io.shards`), each ``cluster`` task reads only its class's parts, and ``analyze``
reads them all. Shards are whole extraction batches, so the activations, and the flags, do
not depend on ``n_shards``.

The run's result is the verdict. ``tag_verdict`` writes it onto the model version on both
branches (tags ``acgate.scan.verdict``, ``acgate.scan.run_id``, ``acgate.scan.dataset_sha256``,
``acgate.scan.poisoned_classes``). Clean data: the ``gate`` decides the promotion. Anything else
(``poisoned``, or ``incomplete``: a class could not be judged): ``repair`` writes repaired data,
``rescan`` scans it as ``acgate scan`` would (same settings and seed; its MLflow run is a child
of the scan's), and ``verdict`` fails, so the KFP UI shows a red run with a red ``verdict`` step
whose log names the verdict, the flagged classes and rows, the scan run, where the repaired
data is, the rescan's verdict, and what to do: the model is not promoted; retrain on the
repaired data, then rerun (when the rescan still flags rows: review, repair again). Nothing is
promoted from that branch: the model was trained on the data that was found poisoned.
``fail_on_poisoned=False`` ends such a run green instead (the ``verdict`` step logs the same
account as a warning).

Each step is a thin component in ``components/<stage>/component.py`` calling
:mod:`acgate.stages`; the per-class fan-out gives the same flags as ``acgate scan``
(:func:`acgate.scan.run_scan`) with the same settings and seed. The classes to fan out over
come from the data (``collect_activations`` returns them), so no class list has to be passed.

Caching: a scheduled run passes the same ``dataset_uri`` every night, and KFP's cache key is
made of a task's inputs, so a URI alone would let KFP reuse yesterday's model and verdict for
today's data. ``dataset_digest`` (caching off) hashes the bytes behind the URI, and every step
that reads the data (``train_proxy``, ``analyze``, ``repair``) takes that SHA-256 as the input
``dataset_sha256``: new bytes make new cache keys, unchanged bytes keep the cache. Each of those
steps also checks that its dataset artifact still has that digest (the data did not change
during the run). The steps in between (``plan_shards``, ``extract_activations``,
``collect_activations``) are keyed on the staged copy ``train_proxy`` writes, which is new
whenever it ran on new bytes (and checked it against the digest). The digest is passed as a
parameter, not as a staged artifact, because KFP keys a cache entry on the identity of its input
artifacts and a step that is never cached makes a new artifact every run. ``tag_verdict`` and
the ``gate`` act on MLflow's mutable state (the model version, its tags and alias), and
``verdict`` reports the outcome, so they always run. The tasks that talk to MLflow
(``analyze``, ``tag_verdict``, ``gate``, ``publish_baseline``, ``repair``, ``rescan``, and the
incremental pipeline's ``incremental_scan``) carry the pod label
``acgate.io/mlflow-client: "true"``, which the Helm chart's NetworkPolicy admits to its MLflow
server.

Usage::

    python pipeline.py compile [--out pipeline.yaml] [--image-digest sha256:...]
        [--mlflow-credentials-secret NAME] [--dataset-credentials-secret NAME]
    python pipeline.py run --dataset data.parquet [--tracking-uri sqlite:///mlruns/mlflow.db]
        [--model-name NAME --model-version 3] [--epochs 3] [--seed 0] [--root local-runs]
        [--cache] [--no-fail-on-poisoned] [--n-shards 4]
    python pipeline.py compile --incremental --out incremental.yaml
    python pipeline.py run --dataset partition.parquet --tracking-uri sqlite:///mlruns/mlflow.db
        --baseline runs:/<scan run>/baseline

``run`` executes the real compiled pipeline on this machine with kfp's local
``SubprocessRunner(use_venv=False)``: no cluster, no Docker, no network. kfp 2.17.3's local
orchestrator runs ``ParallelFor``, ``dsl.Collected`` and ``dsl.If``/``dsl.Else`` itself, so
the local run and the cluster run share one pipeline definition; with ``--cache`` it also
caches tasks as KFP does (a file cache under the pipeline root, keyed on the task's inputs).
"""

# No `from __future__ import annotations`: kfp reads the pipeline's annotations at runtime.
import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple, Optional, Union

from kfp import compiler, dsl
from kfp.dsl import pipeline_channel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from components._image import image_by_digest  # noqa: E402
from components.analyze.component import analyze  # noqa: E402
from components.cluster.component import cluster  # noqa: E402
from components.collect_activations.component import collect_activations  # noqa: E402
from components.dataset_digest.component import dataset_digest  # noqa: E402
from components.extract_activations.component import extract_activations  # noqa: E402
from components.gate.component import gate  # noqa: E402
from components.incremental_scan.component import incremental_scan  # noqa: E402
from components.plan_shards.component import plan_shards  # noqa: E402
from components.publish_baseline.component import publish_baseline  # noqa: E402
from components.repair.component import repair  # noqa: E402
from components.rescan.component import rescan  # noqa: E402
from components.tag_verdict.component import tag_verdict  # noqa: E402
from components.train_proxy.component import train_proxy  # noqa: E402
from components.verdict.component import verdict  # noqa: E402

PIPELINE_NAME = "acgate-scan"
#: The incremental pipeline (:func:`acgate_incremental_pipeline`): a new partition judged
#: against the last accepted scan's published baseline.
INCREMENTAL_PIPELINE_NAME = "acgate-incremental-scan"
#: Pod label of the tasks that talk to MLflow; the chart's NetworkPolicy admits these pods.
MLFLOW_CLIENT_LABEL = ("acgate.io/mlflow-client", "true")
#: Keys of the Secret named by ``--mlflow-credentials-secret`` and the variables they become.
MLFLOW_CREDENTIALS_ENV = {"username": "MLFLOW_TRACKING_USERNAME",
                          "password": "MLFLOW_TRACKING_PASSWORD"}
#: The executors of the tasks that talk to MLflow.
MLFLOW_CLIENT_EXECUTORS = ("exec-analyze", "exec-tag-verdict", "exec-gate", "exec-repair",
                           "exec-rescan", "exec-publish-baseline", "exec-incremental-scan")
#: Keys of the Secret named by ``--dataset-credentials-secret``; each becomes the variable of the
#: same name, which pyarrow's S3 filesystem reads for an ``s3://`` dataset URI.
DATASET_CREDENTIALS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The executors of the tasks that read ``dataset_uri`` (the others read the staged copy) ...
DATASET_READER_EXECUTORS = ("exec-dataset-digest", "exec-train-proxy", "exec-incremental-scan")
#: ... and, in the incremental pipeline only, the rescan, which reads ``baseline_uri`` (an
#: ``s3://`` baseline folder opens with the same credentials).
INCREMENTAL_DATASET_READER_EXECUTORS = (*DATASET_READER_EXECUTORS, "exec-rescan")
#: What a Kubernetes Secret name may be.
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
#: Memory a step needs beyond ``max_decoded_bytes`` (the decoded data plus training, which the
#: steps themselves bound): the interpreter, torch, pandas and pyarrow. The default
#: ``memory_limit`` is checked against the default budget plus this (tests/kfp).
STEP_MEMORY_OVERHEAD_BYTES = 2 * 1024**3
#: Most extraction shards that run at once (``dsl.ParallelFor``'s ``parallelism``, fixed when
#: the pipeline is compiled); ``n_shards`` above it queue.
SHARD_PARALLELISM = 8
#: A Kubernetes quantity: a literal, or a pipeline input that KFP resolves at run time.
_Quantity = Union[str, pipeline_channel.PipelineChannel]


def _set_resources(task: dsl.PipelineTask, cpu_request: _Quantity, cpu_limit: _Quantity,
                   memory_request: _Quantity, memory_limit: _Quantity) -> dsl.PipelineTask:
    """Give a task's pod the pipeline's CPU and memory requests and limits.

    The values are pipeline inputs (KFP resolves them when the run starts: KFP backend 2.4.0 or
    later); the local runners ignore them. kfp 2.17.3's compiler passes a pipeline input into a
    nested DAG (``ParallelFor``, ``If``/``Else``) only when a task there consumes it as an
    argument, so the inputs are also registered as the task's inputs: without that, ``cluster``,
    ``gate`` and ``repair`` would name an input their DAG never receives.
    """
    values = (cpu_request, cpu_limit, memory_request, memory_limit)
    task.register_pipeline_channels([value for value in values
                                     if isinstance(value, pipeline_channel.PipelineChannel)])
    return (task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
            .set_memory_request(memory_request).set_memory_limit(memory_limit))


def _dataset_digest_task(dataset_uri: Union[str, pipeline_channel.PipelineChannel],
                         resources: dict) -> dsl.PipelineTask:
    """Both pipelines' first step: the SHA-256 of the bytes behind ``dataset_uri``."""
    digest = dataset_digest(dataset_uri=dataset_uri)
    _set_resources(digest, **resources)
    digest.set_display_name("dataset digest")
    digest.set_caching_options(False)  # it must see today's bytes behind the same URI
    return digest


#: The proxy's inputs (and the data's columns) the incremental pipeline passes on, by name ...
_PROXY_INPUTS = ("seed", "proxy", "epochs", "batch_size", "lr", "hidden", "max_decoded_bytes",
                 "max_tokens", "label_column", "image_column", "text_column", "id_column")
#: ... and the detector's (they act only in a full fallback of a partition's scan or rescan).
_DETECTOR_INPUTS = ("reducer", "n_components", "n_clusters", "analysis", "size_threshold",
                    "silhouette_threshold", "exre_threshold", "source_share_threshold",
                    "nested_source_share_threshold", "confusion_threshold",
                    "overlap_threshold", "redraw_components", "segment_by", "min_class_size",
                    "exre_epochs", "exre_max_rows")


def _picked(inputs: dict, names: tuple[str, ...]) -> dict:
    """The pipeline inputs ``names`` of ``inputs`` (a pipeline function's ``locals()``)."""
    return {name: inputs[name] for name in names}


def _label_mlflow_client(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Add the pod label :data:`MLFLOW_CLIENT_LABEL` to a task's pod on Kubernetes.

    Written as the ``kubernetes`` platform config that ``kfp.kubernetes.add_pod_label`` writes
    (``podMetadata.labels``); the local runner ignores it.
    """
    kubernetes = task.platform_config.setdefault("kubernetes", {})
    labels = kubernetes.setdefault("podMetadata", {}).setdefault("labels", {})
    labels[MLFLOW_CLIENT_LABEL[0]] = MLFLOW_CLIENT_LABEL[1]
    return task


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Find backdoor-poisoned training data with Activation Clustering; promote the "
                "model only when the data is clean, else repair the data.",
)
def acgate_pipeline(
    dataset_uri: str,
    reducer: str = "pca",
    n_components: int = 10,
    n_clusters: str = "",
    analysis: str = "auto",
    size_threshold: Optional[float] = None,
    silhouette_threshold: float = 0.10,
    exre_threshold: float = 0.5,
    source_share_threshold: float = 0.5,
    nested_source_share_threshold: float = 0.7,
    confusion_threshold: float = 0.03,
    overlap_threshold: float = 0.03,
    redraw_components: int = 20,
    segment_by: str = "label",
    min_class_size: int = 10,
    seed: int = 0,
    proxy: str = "auto",
    epochs: Optional[int] = None,
    exre_epochs: Optional[int] = None,
    exre_max_rows: Optional[int] = None,
    batch_size: int = 64,
    lr: float = 0.001,
    hidden: int = 128,
    max_decoded_bytes: Optional[int] = 8589934592,
    max_tokens: int = 256,
    label_column: str = "label",
    image_column: str = "image",
    text_column: str = "text",
    id_column: Optional[str] = None,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
    repair_strategy: str = "relabel",
    alias: str = "champion",
    fail_on_poisoned: bool = True,
    n_shards: int = 1,
    cpu_request: str = "1",
    cpu_limit: str = "2",
    memory_request: str = "4Gi",
    memory_limit: str = "10Gi",
) -> NamedTuple("ScanOutputs", samples=dsl.Dataset, verdict=str, run_id=str,
                dataset_sha256=str):
    """Scan ``dataset_uri``; promote ``model_name``/``model_version`` if clean, else repair.

    Args:
        dataset_uri: Dataset Parquet file (a label column + an image or a text column, named
            by ``label_column``, ``image_column``, ``text_column``), a path or URI.
        reducer: ``"pca"``, ``"ica"`` or ``"none"``.
        n_components: Dimensions after reduction.
        n_clusters: ``"2"`` (k of k-means), ``"auto"`` or ``"stable"``; ``""``: ``"stable"``
            under exclusionary reclassification, else 2.
        analysis: ``"auto"`` (exclusionary reclassification), ``"exre"``,
            ``"size-silhouette"``, ``"size"``, ``"silhouette"``, ``"distance"``,
            ``"spectral"`` or ``"robust"``.
        size_threshold: Largest share a poison cluster may hold; ``None``: 0.45 under
            exclusionary reclassification, else 0.35 (text: 0.35).
        silhouette_threshold: Smallest silhouette counted as two clusters.
        exre_threshold: l/p below this is poison.
        source_share_threshold: Exclusionary reclassification: smallest share of a left-out
            cluster that must go to one other class for it to be poison.
        nested_source_share_threshold: The same for a stable sub-cluster inside a candidate.
        confusion_threshold: A candidate is legitimate when the proxy itself confuses its class
            and the suspected source at least this much (2 disables the test).
        overlap_threshold: A candidate is legitimate when a retrain without every class's tail
            sends at least this share of the suspected source's tail to its class, and 6.5x the
            other tails' median (classes >= 1,000 rows; 2 disables the test).
        redraw_components: A poisoned class's flagged rows are redrawn around their centre in
            the class's whitened principal space of this many directions, then filled with the
            rows whose nearest neighbours there are mostly flagged (0 keeps the analysis's
            rows).
        segment_by: ``"label"`` or ``"prediction"``.
        min_class_size: Smaller classes are skipped (the scan is then incomplete).
        seed: Seed of every random step.
        proxy: ``"auto"``, ``"cnn"``, ``"mlp"`` or ``"textcnn"``.
        epochs: Proxy epochs; ``None``: images 30 below 10k rows, else 2; text 6 to 30.
        exre_epochs: Epochs of the exclusionary-reclassification retrain; ``None``: the proxy's.
        exre_max_rows: Most rows each retrain trains on (a seeded sample of each class's share
            above it); ``None``: every row.
        batch_size: Training batch size.
        lr: Adam learning rate.
        hidden: Width of the proxy's last hidden layer.
        max_decoded_bytes: Memory budget of the decoded images plus training; ``None``: none.
        max_tokens: Longest text the text proxy reads, in tokens.
        label_column: The dataset's label column: integers, or strings (any other values)
            mapped to classes 0..k-1 in sorted order.
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: A column of unique, non-null row ids carried to every per-row output;
            ``None``: the row number.
        model_name: Registered MLflow model trained on this data; ``None``: no promotion.
        model_version: Its version.
        mlflow_tracking_uri: MLflow tracking and registry URI; ``None``: no tracking (and the
            gate then refuses any named model).
        repair_strategy: ``"relabel"`` or ``"remove"`` (the repair of a poisoned dataset).
        alias: MLflow alias the gate moves on a pass.
        fail_on_poisoned: End the run failed (red, at the ``verdict`` step) when the data is not
            clean, after the repair and the rescan; ``False``: the ``verdict`` step logs the
            outcome as a warning and the run ends green (the verdict is still the run's output
            and on the model version).
        n_shards: Row shards whose activations are extracted in parallel, one task each (at
            most :data:`SHARD_PARALLELISM` at once; a dataset of fewer than ``n_shards`` x 256
            rows gets fewer); the flags do not depend on it.
        cpu_request: CPU request of every step's pod (Kubernetes quantity: ``"1"``, ``"500m"``).
        cpu_limit: CPU limit of every step's pod.
        memory_request: Memory request of every step's pod (``"4Gi"``, ``"512Mi"``).
        memory_limit: Memory limit of every step's pod; keep it at least ``max_decoded_bytes``
            plus 2 GiB (the default is the default budget, 8 GiB, plus 2 GiB).

    Returns:
        ``samples`` (the per-sample result), ``verdict``, ``run_id`` (the scan's MLflow run) and
        ``dataset_sha256`` (the SHA-256 of the bytes that were scanned).
    """
    resources = {"cpu_request": cpu_request, "cpu_limit": cpu_limit,
                 "memory_request": memory_request, "memory_limit": memory_limit}
    sha256 = _dataset_digest_task(dataset_uri, resources).output

    columns = {"label_column": label_column, "image_column": image_column,
               "text_column": text_column, "id_column": id_column}
    proxy_settings = {"seed": seed, "proxy": proxy, "epochs": epochs, "batch_size": batch_size,
                      "lr": lr, "hidden": hidden, "max_decoded_bytes": max_decoded_bytes,
                      "max_tokens": max_tokens, **columns}
    cluster_settings = {"reducer": reducer, "n_components": n_components,
                        "n_clusters": n_clusters, "analysis": analysis,
                        "size_threshold": size_threshold, "segment_by": segment_by,
                        "min_class_size": min_class_size}
    trained = train_proxy(dataset_uri=dataset_uri, dataset_sha256=sha256, **proxy_settings)
    trained.set_display_name("train proxy")
    _set_resources(trained, **resources)

    planned = plan_shards(dataset=trained.outputs["dataset"], n_shards=n_shards)
    planned.set_display_name("plan shards")
    _set_resources(planned, **resources)
    with dsl.ParallelFor(items=planned.output, name="per-shard",
                         parallelism=SHARD_PARALLELISM) as shard:
        # No dataset_sha256 here: kfp 2.17's local runner replaces every task output
        # parameter that enters a loop with the loop item. Its cache key holds the staged
        # copy, which is new whenever train_proxy ran on new bytes (and checked it).
        extracted = extract_activations(dataset=trained.outputs["dataset"],
                                        model=trained.outputs["model"], segment_by=segment_by,
                                        max_decoded_bytes=max_decoded_bytes, shard=shard,
                                        n_shards=n_shards, **columns)
        extracted.set_display_name("extract activations")
        _set_resources(extracted, **resources)
    collected = collect_activations(shards=dsl.Collected(extracted.outputs["activations"]),
                                    dataset=trained.outputs["dataset"])
    collected.set_display_name("collect activations")
    _set_resources(collected, **resources)

    with dsl.ParallelFor(items=collected.outputs["Output"], name="per-class") as label:
        clustered = cluster(activations=collected.outputs["activations"], label=label,
                            seed=seed, **cluster_settings)
        clustered.set_display_name("cluster class")
        _set_resources(clustered, **resources)

    analyzed = analyze(
        activations=collected.outputs["activations"], dataset=trained.outputs["dataset"],
        clusterings=dsl.Collected(clustered.outputs["clustering"]), dataset_uri=dataset_uri,
        silhouette_threshold=silhouette_threshold, exre_threshold=exre_threshold,
        source_share_threshold=source_share_threshold,
        nested_source_share_threshold=nested_source_share_threshold,
        confusion_threshold=confusion_threshold, overlap_threshold=overlap_threshold,
        redraw_components=redraw_components,
        exre_epochs=exre_epochs, exre_max_rows=exre_max_rows,
        mlflow_tracking_uri=mlflow_tracking_uri, dataset_sha256=sha256,
        **proxy_settings, **cluster_settings,
    )
    analyzed.set_display_name("analyze")
    _set_resources(analyzed, **resources)
    _label_mlflow_client(analyzed)

    # The verdict goes onto the model version on both branches (never cached: MLflow's state).
    tagged = tag_verdict(run_id=analyzed.outputs["run_id"], model_name=model_name,
                         model_version=model_version, mlflow_tracking_uri=mlflow_tracking_uri)
    tagged.set_display_name("tag model version")
    _set_resources(tagged, **resources)
    tagged.set_caching_options(False)
    _label_mlflow_client(tagged)

    with dsl.If(analyzed.outputs["verdict"] == "clean", name="data-clean"):
        # The accepted data's baseline: what the incremental pipeline judges partitions against.
        published = publish_baseline(scan=analyzed.outputs["scan"],
                                     samples=analyzed.outputs["samples"],
                                     activations=collected.outputs["activations"],
                                     model=trained.outputs["model"],
                                     scan_run_id=analyzed.outputs["run_id"],
                                     mlflow_tracking_uri=mlflow_tracking_uri)
        published.set_display_name("publish baseline")
        _set_resources(published, **resources)
        _label_mlflow_client(published)
        promoted = gate(run_id=analyzed.outputs["run_id"], model_name=model_name,
                        model_version=model_version, mlflow_tracking_uri=mlflow_tracking_uri,
                        alias=alias)
        # After the baseline is logged: an incremental run naming models:/<model>@<alias>
        # never finds the alias on a version whose scan has no baseline yet.
        promoted.after(tagged, published)
        promoted.set_display_name("promotion gate")
        _set_resources(promoted, **resources)
        promoted.set_caching_options(False)  # decides on MLflow's current state, every run
        _label_mlflow_client(promoted)
    with dsl.Else(name="data-poisoned"):
        repaired = repair(dataset=trained.outputs["dataset"],
                          samples=analyzed.outputs["samples"], model=trained.outputs["model"],
                          strategy=repair_strategy, mlflow_tracking_uri=mlflow_tracking_uri,
                          scan_run_id=analyzed.outputs["run_id"], dataset_sha256=sha256,
                          **proxy_settings)
        repaired.set_display_name("repair")
        _set_resources(repaired, **resources)
        _label_mlflow_client(repaired)
        # The repaired data is new data: scanned again, as acgate scan would, before anyone
        # trains on it. Nothing is promoted here: the model was trained on the poisoned data.
        rescanned = rescan(
            repaired_dataset=repaired.outputs["cleaned_dataset"],
            silhouette_threshold=silhouette_threshold, exre_threshold=exre_threshold,
            source_share_threshold=source_share_threshold,
            nested_source_share_threshold=nested_source_share_threshold,
            confusion_threshold=confusion_threshold, overlap_threshold=overlap_threshold,
            redraw_components=redraw_components,
            exre_epochs=exre_epochs, exre_max_rows=exre_max_rows,
            mlflow_tracking_uri=mlflow_tracking_uri,
            scan_run_id=analyzed.outputs["run_id"],
            **proxy_settings, **cluster_settings,
        )
        rescanned.set_display_name("rescan repaired data")
        _set_resources(rescanned, **resources)
        _label_mlflow_client(rescanned)
        # The run's result: a failed step (red run) naming the verdict and what to do next.
        judged = verdict(
            scan_verdict=analyzed.outputs["verdict"], classes=analyzed.outputs["classes"],
            repaired_dataset=repaired.outputs["cleaned_dataset"],
            n_flagged=analyzed.outputs["n_flagged"], scan_run_id=analyzed.outputs["run_id"],
            rescan_verdict=rescanned.outputs["verdict"],
            rescan_run_id=rescanned.outputs["run_id"],
            rescan_n_flagged=rescanned.outputs["n_flagged"], model_name=model_name,
            model_version=model_version, fail_on_poisoned=fail_on_poisoned)
        judged.after(tagged)
        judged.set_display_name("verdict")
        _set_resources(judged, **resources)
        judged.set_caching_options(False)  # the run's outcome is reported on every run

    outputs = NamedTuple("ScanOutputs", samples=dsl.Dataset, verdict=str, run_id=str,
                         dataset_sha256=str)
    return outputs(samples=analyzed.outputs["samples"], verdict=analyzed.outputs["verdict"],
                   run_id=analyzed.outputs["run_id"], dataset_sha256=sha256)


@dsl.pipeline(name="partition-not-clean")
def partition_not_clean(
    scan_verdict: str,
    dataset: dsl.Input[dsl.Dataset],
    samples: dsl.Input[dsl.Dataset],
    classes: dsl.Input[dsl.Dataset],
    model: dsl.Input[dsl.Model],
    n_flagged: int,
    scan_run_id: str,
    dataset_sha256: str,
    baseline_uri: str,
    fallback: bool,
    repair_strategy: str,
    fail_on_poisoned: bool,
    reducer: str,
    n_components: int,
    n_clusters: str,
    analysis: str,
    silhouette_threshold: float,
    exre_threshold: float,
    source_share_threshold: float,
    nested_source_share_threshold: float,
    confusion_threshold: float,
    overlap_threshold: float,
    redraw_components: int,
    segment_by: str,
    min_class_size: int,
    seed: int,
    proxy: str,
    batch_size: int,
    lr: float,
    hidden: int,
    max_tokens: int,
    label_column: str,
    image_column: str,
    text_column: str,
    cpu_request: str,
    cpu_limit: str,
    memory_request: str,
    memory_limit: str,
    # Optional inputs need a default to be optional in the compiled sub-DAG (KFP omits a null).
    mlflow_tracking_uri: Optional[str] = None,
    epochs: Optional[int] = None,
    exre_epochs: Optional[int] = None,
    exre_max_rows: Optional[int] = None,
    size_threshold: Optional[float] = None,
    max_decoded_bytes: Optional[int] = 8589934592,
    id_column: Optional[str] = None,
):
    """When the partition is not clean: repair it, rescan it, then end the run red (``verdict``).

    The repaired partition is judged against the same baseline as the partition was (``rescan``
    with ``baseline_uri``: seconds, no training), so the verdict says whether it may be
    appended.

    A pipeline of its own (a sub-DAG of the incremental pipeline) so that its ``dsl.If`` reads
    the verdict as an input: kfp 2.17's local runner cannot resolve a task's output in the
    condition of a lone ``dsl.If`` at a pipeline's root. Its inputs are the incremental
    pipeline's (:func:`acgate_incremental_pipeline`) and its ``incremental_scan``'s outputs.
    """
    inputs = dict(locals())  # the pipeline's inputs, before any other local name exists
    resources = {"cpu_request": cpu_request, "cpu_limit": cpu_limit,
                 "memory_request": memory_request, "memory_limit": memory_limit}
    proxy_settings = _picked(inputs, _PROXY_INPUTS)
    detector_settings = _picked(inputs, _DETECTOR_INPUTS)
    with dsl.If(scan_verdict != "clean", name="partition-not-clean"):
        repaired = repair(dataset=dataset, samples=samples, model=model,
                          strategy=repair_strategy, mlflow_tracking_uri=mlflow_tracking_uri,
                          scan_run_id=scan_run_id, dataset_sha256=dataset_sha256,
                          **proxy_settings)
        repaired.set_display_name("repair")
        _set_resources(repaired, **resources)
        _label_mlflow_client(repaired)
        rescanned = rescan(
            repaired_dataset=repaired.outputs["cleaned_dataset"], baseline_uri=baseline_uri,
            fallback=fallback, mlflow_tracking_uri=mlflow_tracking_uri,
            scan_run_id=scan_run_id, **detector_settings, **proxy_settings)
        rescanned.set_display_name("rescan repaired partition")
        _set_resources(rescanned, **resources)
        _label_mlflow_client(rescanned)
        # The baseline named by the same URI may have been replaced: never reuse a verdict.
        rescanned.set_caching_options(False)
        judged = verdict(scan_verdict=scan_verdict, classes=classes,
                         repaired_dataset=repaired.outputs["cleaned_dataset"],
                         n_flagged=n_flagged, scan_run_id=scan_run_id,
                         rescan_verdict=rescanned.outputs["verdict"],
                         rescan_run_id=rescanned.outputs["run_id"],
                         rescan_n_flagged=rescanned.outputs["n_flagged"],
                         rescan_mode=rescanned.outputs["mode"],
                         fail_on_poisoned=fail_on_poisoned, partition=True)
        judged.set_display_name("verdict")
        _set_resources(judged, **resources)
        judged.set_caching_options(False)


def _with_shared_arguments(func):
    """Give ``func``'s docstring the full pipeline's description of every argument it shares.

    KFP shows each pipeline input's description (parsed from the docstring) in its UI; the
    incremental pipeline takes most of the full pipeline's inputs, described once there.
    """
    import inspect

    import docstring_parser

    full = {p.arg_name: p.description for p in
            docstring_parser.parse(acgate_pipeline.pipeline_func.__doc__).params}
    own = docstring_parser.parse(func.__doc__)
    mine = {p.arg_name: p.description for p in own.params}
    lines = []
    for name in inspect.signature(func).parameters:
        first, *rest = (mine.get(name) or full[name]).splitlines()
        lines += [f"    {name}: {first}", *(f"        {line}" for line in rest)]
    returns = "\n    ".join(own.returns.description.splitlines())
    func.__doc__ = (f"{own.short_description}\n\n{own.long_description}\n\nArgs:\n"
                    + "\n".join(lines) + f"\n\nReturns:\n    {returns}\n")
    return func


@dsl.pipeline(
    name=INCREMENTAL_PIPELINE_NAME,
    description="Judge a new partition against the last accepted scan's baseline without "
                "retraining (a full scan of the partition when it moved too far); repair it "
                "when it is not clean.",
)
@_with_shared_arguments
def acgate_incremental_pipeline(  # noqa: D417 - the shared arguments' text is the full one's
    dataset_uri: str,
    baseline_uri: str,
    fallback: bool = True,
    reducer: str = "pca",
    n_components: int = 10,
    n_clusters: str = "",
    analysis: str = "auto",
    size_threshold: Optional[float] = None,
    silhouette_threshold: float = 0.10,
    exre_threshold: float = 0.5,
    source_share_threshold: float = 0.5,
    nested_source_share_threshold: float = 0.7,
    confusion_threshold: float = 0.03,
    overlap_threshold: float = 0.03,
    redraw_components: int = 20,
    segment_by: str = "label",
    min_class_size: int = 10,
    seed: int = 0,
    proxy: str = "auto",
    epochs: Optional[int] = None,
    exre_epochs: Optional[int] = None,
    exre_max_rows: Optional[int] = None,
    batch_size: int = 64,
    lr: float = 0.001,
    hidden: int = 128,
    max_decoded_bytes: Optional[int] = 8589934592,
    max_tokens: int = 256,
    label_column: str = "label",
    image_column: str = "image",
    text_column: str = "text",
    id_column: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
    repair_strategy: str = "relabel",
    fail_on_poisoned: bool = True,
    cpu_request: str = "1",
    cpu_limit: str = "2",
    memory_request: str = "4Gi",
    memory_limit: str = "10Gi",
) -> NamedTuple("IncrementalOutputs", samples=dsl.Dataset, verdict=str, run_id=str, mode=str,
                dataset_sha256=str):
    """Scan the partition ``dataset_uri`` against ``baseline_uri``; repair it if not clean.

    ``dataset_digest`` -> ``incremental_scan`` (the baseline's proxy, no training; a shifted
    partition is scanned in full and ``mode`` says so), and when not clean ``repair`` ->
    ``rescan`` (the repaired partition against the same baseline) -> ``verdict`` (fails the
    run; says whether the repaired partition may be appended). No model is promoted or
    tagged: the gate needs a clean scan of the very data a model trained on, and this scan
    covers the partition only (the full pipeline tags and promotes). The detector's and the
    proxy's settings act only in a full fallback; every argument not described here is
    :func:`acgate_pipeline`'s, and so is its description (copied by
    :func:`_with_shared_arguments`).

    Args:
        dataset_uri: The new partition (a dataset Parquet file, a path or URI).
        baseline_uri: The last accepted scan: ``runs:/<scan run>/baseline`` (logged by a
            clean full run's ``publish_baseline``), ``models:/<model>@<alias>`` (the baseline
            of the scan that cleared the version the gate gave that alias), a published
            baseline folder or an ``acgate scan`` output folder (a path or a URI that pyarrow
            opens: s3://, gs://).
        fallback: Scan a partition that moved too far from the baseline in full (``False``:
            keep the incremental verdict, recorded as shifted).
        mlflow_tracking_uri: MLflow tracking URI: logs the scan, and reads a ``runs:/`` or
            ``models:/`` baseline; ``None``: no tracking.
        fail_on_poisoned: End the run failed (red, at the ``verdict`` step) when the partition
            is not clean, after repairing it; ``False``: the run ends green (the verdict is
            still the run's output).

    Returns:
        ``samples``, ``verdict``, ``run_id``, ``mode`` (``"incremental"`` or ``"full"``) and
        ``dataset_sha256``.
    """
    inputs = dict(locals())  # the pipeline's inputs, before any other local name exists
    resources = {"cpu_request": cpu_request, "cpu_limit": cpu_limit,
                 "memory_request": memory_request, "memory_limit": memory_limit}
    sha256 = _dataset_digest_task(dataset_uri, resources).output

    proxy_settings = _picked(inputs, _PROXY_INPUTS)
    detector_settings = _picked(inputs, _DETECTOR_INPUTS)
    scanned = incremental_scan(
        dataset_uri=dataset_uri, baseline_uri=baseline_uri, fallback=fallback,
        mlflow_tracking_uri=mlflow_tracking_uri, dataset_sha256=sha256, **detector_settings,
        **proxy_settings)
    scanned.set_display_name("incremental scan")
    _set_resources(scanned, **resources)
    _label_mlflow_client(scanned)
    # The baseline named by the same URI may have been replaced: never reuse a verdict.
    scanned.set_caching_options(False)

    judged = partition_not_clean(
        scan_verdict=scanned.outputs["verdict"], dataset=scanned.outputs["dataset"],
        samples=scanned.outputs["samples"], classes=scanned.outputs["classes"],
        model=scanned.outputs["model"], n_flagged=scanned.outputs["n_flagged"],
        scan_run_id=scanned.outputs["run_id"], dataset_sha256=sha256,
        # The baseline the scan used, pinned (a models:/ alias may move before the rescan).
        baseline_uri=scanned.outputs["baseline"], fallback=fallback,
        repair_strategy=repair_strategy,
        mlflow_tracking_uri=mlflow_tracking_uri, fail_on_poisoned=fail_on_poisoned,
        **detector_settings, **proxy_settings, **resources)
    judged.set_display_name("partition not clean")

    outputs = NamedTuple("IncrementalOutputs", samples=dsl.Dataset, verdict=str, run_id=str,
                         mode=str, dataset_sha256=str)
    return outputs(samples=scanned.outputs["samples"], verdict=scanned.outputs["verdict"],
                   run_id=scanned.outputs["run_id"], mode=scanned.outputs["mode"],
                   dataset_sha256=sha256)


def compile_pipeline(
    out: str | os.PathLike[str] = "pipeline.yaml",
    *,
    image_digest: Optional[str] = None,
    mlflow_credentials_secret: Optional[str] = None,
    dataset_credentials_secret: Optional[str] = None,
    incremental: bool = False,
) -> Path:
    """Compile the pipeline to KFP IR YAML; returns the path written.

    Args:
        out: The YAML file to write.
        incremental: Compile :func:`acgate_incremental_pipeline` (a new partition against a
            baseline) instead of the full scan.
        image_digest: Pin every step to this build of the acgate image (``sha256:`` and 64 hex
            characters): the executors run ``ghcr.io/acgate/acgate@<digest>`` instead of the
            version tag. ``None``: the version tag.
        mlflow_credentials_secret: Name of an existing Kubernetes Secret (in the namespace the
            runs execute in) with the keys ``username`` and ``password``: the MLflow steps
            (:data:`MLFLOW_CLIENT_EXECUTORS`: ``analyze``, ``tag_verdict``, ``gate``,
            ``publish_baseline``, ``repair``, ``rescan``, ``incremental_scan``) get them as
            ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (for an MLflow server
            with basic auth, such as the chart's with ``mlflow.auth.enabled``). ``None``: no
            credentials.
        dataset_credentials_secret: Name of an existing Kubernetes Secret with the keys
            ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``: the steps that read
            ``dataset_uri`` (``dataset_digest``, ``train_proxy``, ``incremental_scan``) get
            them as environment variables of the same names, for an ``s3://`` URI. ``None``:
            none (the pod's own identity, e.g. IRSA or GKE Workload Identity, or a public
            bucket).

    Raises:
        ValueError: A malformed digest or Secret name.
    """
    image = None if image_digest is None else image_by_digest(image_digest)
    secrets = {}
    for option, name, executors, keys in (
            ("--mlflow-credentials-secret", mlflow_credentials_secret, MLFLOW_CLIENT_EXECUTORS,
             MLFLOW_CREDENTIALS_ENV),
            ("--dataset-credentials-secret", dataset_credentials_secret,
             INCREMENTAL_DATASET_READER_EXECUTORS if incremental else DATASET_READER_EXECUTORS,
             {key: key for key in DATASET_CREDENTIALS_ENV})):
        if name is None:
            continue
        if not _SECRET_NAME.fullmatch(name):
            raise ValueError(f"{option} {name!r} is not a Kubernetes Secret name (lowercase "
                             "letters, digits, '-' and '.')")
        secrets[name] = (executors, keys)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        acgate_incremental_pipeline if incremental else acgate_pipeline, str(path))
    if image is not None or secrets:
        _deploy_settings(path, image, secrets)
    return path


def _deploy_settings(path: Path, image: Optional[str],
                     secrets: dict[str, tuple[tuple[str, ...], dict[str, str]]]) -> None:
    """Rewrite a compiled pipeline: every executor's image, the steps' credentials.

    The image is ``deploymentSpec.executors.*.container.image`` of the IR; the credentials are
    ``secretAsEnv`` entries of the ``kubernetes`` platform spec (the second YAML document), as
    ``kfp.kubernetes.use_secret_as_env`` writes them. ``secrets``: Secret name -> (the executors
    that get it, {secret key: environment variable}).
    """
    import yaml

    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    spec = documents[0]
    if image is not None:
        for executor in spec["deploymentSpec"]["executors"].values():
            executor["container"]["image"] = image
    for secret, (names, keys) in secrets.items():
        if len(documents) == 1:
            documents.append({"platforms": {}})
        executors = (documents[1].setdefault("platforms", {})
                     .setdefault("kubernetes", {})
                     .setdefault("deploymentSpec", {})
                     .setdefault("executors", {}))
        for name in (n for n in names if n in spec["deploymentSpec"]["executors"]):
            executors.setdefault(name, {}).setdefault("secretAsEnv", []).append({
                "secretName": secret,
                "keyToEnv": [{"secretKey": key, "envVar": env} for key, env in keys.items()],
            })
    text = "# PIPELINE DEFINITION (acgate pipeline.py compile)\n" + yaml.safe_dump_all(
        documents, sort_keys=True)
    path.write_text(text, encoding="utf-8")


def run_locally(root: str | os.PathLike[str] = "local-runs", *, cache: bool = False,
                **arguments: object) -> dict:
    """Run the pipeline on this machine (kfp ``SubprocessRunner``, no venv, no network).

    Args:
        root: Pipeline root: every task's artifacts land under it.
        cache: Cache tasks as KFP does (kfp's local file cache under ``root/.kfp_cache``,
            keyed on each task's inputs; ``dataset_digest`` and ``gate`` are never cached).
        **arguments: Pipeline inputs (``dataset_uri`` required; ``None`` values are dropped);
            with ``baseline_uri``, the incremental pipeline runs
            (:func:`acgate_incremental_pipeline`).

    Returns:
        ``{"verdict", "run_id", "samples", "dataset_sha256"}`` (``samples``: the path of the
        per-sample result; ``dataset_sha256``: the digest of the scanned bytes); the
        incremental pipeline adds ``"mode"``.

    Raises:
        RuntimeError: When a step fails (the message names the task; its log says why); on
            data that is not clean that is the ``verdict`` step (:func:`failed_task`), unless
            ``fail_on_poisoned=False``.
    """
    import builtins
    import logging

    # kfp 2.17's local runner swaps builtins.print for an indenting one, and the root logger's
    # handlers for one writing to the sys.stdout of that moment, around each task
    # (kfp/local/logging_utils.py), from the threads that run parallel tasks: two of them at
    # once can leave the swapped ones in place, so that every later print of this process
    # starts with four spaces and every later log record goes to a stream that may since
    # have been closed ("--- Logging error ---"). The caller's print, root handlers and root
    # level come back whatever happens.
    original_print = builtins.print
    root_logger = logging.getLogger()
    original_handlers, original_level = root_logger.handlers[:], root_logger.level
    try:
        return _run_locally(root, cache=cache, **arguments)
    finally:
        builtins.print = original_print
        root_logger.handlers[:] = original_handlers
        root_logger.setLevel(original_level)


def _run_locally(root: str | os.PathLike[str], *, cache: bool, **arguments: object) -> dict:
    """:func:`run_locally`'s run."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True, enable_caching=cache)
    if arguments.get("baseline_uri"):
        # Only the values _with_every_optional_input adds for the full pipeline are left out;
        # a name the incremental pipeline lacks that the caller gave is kfp's error.
        inputs = acgate_incremental_pipeline.component_spec.inputs
        task = acgate_incremental_pipeline(**{
            name: value for name, value in _with_every_optional_input(arguments).items()
            if name in inputs or arguments.get(name) is not None})
        return {"verdict": task.outputs["verdict"], "run_id": task.outputs["run_id"],
                "samples": task.outputs["samples"].path, "mode": task.outputs["mode"],
                "dataset_sha256": task.outputs["dataset_sha256"]}
    task = acgate_pipeline(**_with_every_optional_input(arguments))
    return {"verdict": task.outputs["verdict"], "run_id": task.outputs["run_id"],
            "samples": task.outputs["samples"].path,
            "dataset_sha256": task.outputs["dataset_sha256"]}


def failed_task(error: BaseException) -> Optional[str]:
    """The innermost failed task that kfp's local runner names in ``error``, if any.

    kfp 2.17.3 raises ``RuntimeError("Pipeline ... Inner task failed: 'verdict' inside
    'condition-4' inside ...")`` (with terminal colours); ``"verdict"`` means the run did its
    job and found the data not clean.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"Inner task failed: '([^']+)'", text)
    return found.group(1) if found else None


def _with_every_optional_input(arguments: dict) -> dict:
    """Give every ``Optional`` pipeline input a value that means what ``None`` means.

    kfp 2.17.3's local orchestrator can neither read the (absent) default of an
    ``Optional[...] = None`` pipeline input (``Unknown value type``) nor take an explicit
    ``None`` argument, so a local run passes the equivalent values: ``""`` for the MLflow
    strings and ``id_column`` (the components read ``""`` as "not given"), the resolved epochs
    (images: 30 below 10k rows, else 2; text: as
    :meth:`acgate.scan.ScanConfig.resolved_text_epochs`), the same
    for the retrain, the data's row count for the retrain's rows (no sample), and the resolved
    size threshold (text 0.35; images 0.45 under exclusionary reclassification, else 0.35). On a
    cluster the ``None`` defaults are used as declared.
    """
    from acgate.core.detect import EXRE_SIZE_THRESHOLD, SIZE_THRESHOLD
    from acgate.io.schema import open_parquet
    from acgate.scan import TEXT_SIZE_THRESHOLD, ScanConfig

    complete = dict(arguments)
    for name in ("model_name", "model_version", "mlflow_tracking_uri", "id_column"):
        if complete.get(name) is None:
            complete[name] = ""  # id_column: "" is no id column (acgate.core.config.from_text)
    try:
        dataset = open_parquet(complete["dataset_uri"])
    except (OSError, ValueError):  # the run's first step reports it, naming the input
        dataset = None
    names = dataset.schema_arrow.names if dataset is not None else ()
    text_column = complete.get("text_column") or ScanConfig.text_column
    image_column = complete.get("image_column") or ScanConfig.image_column
    text = text_column in names and image_column not in names
    n_rows = dataset.metadata.num_rows if dataset is not None else 0
    if complete.get("epochs") is None:
        config = ScanConfig(batch_size=complete.get("batch_size", ScanConfig.batch_size))
        complete["epochs"] = (config.resolved_text_epochs(n_rows) if text
                              else config.resolved_epochs(n_rows))
    if complete.get("exre_epochs") is None:  # the retrain's default: the proxy's epochs
        complete["exre_epochs"] = complete["epochs"]
    if complete.get("exre_max_rows") is None:  # every row: at least the data's rows
        complete["exre_max_rows"] = max(n_rows, 1)
    if complete.get("size_threshold") is None:
        exre = complete.get("analysis", "auto") in ("auto", "exre")
        complete["size_threshold"] = (TEXT_SIZE_THRESHOLD if text else
                                      EXRE_SIZE_THRESHOLD if exre else SIZE_THRESHOLD)
    return {name: value for name, value in complete.items() if value is not None}


def _pipeline_settings() -> list:
    """The settings of the one configuration that the pipeline takes as inputs."""
    from acgate.core.config import settings
    from acgate.scan import ScanConfig

    return [item for item in settings(ScanConfig) if item.metadata["pipeline"]]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``compile`` or ``run``."""
    from acgate.cli import add_setting_options

    parser = argparse.ArgumentParser(prog="python pipeline.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="write the pipeline YAML")
    comp.add_argument("--out", default="pipeline.yaml", help="output file (default: pipeline.yaml)")
    comp.add_argument("--incremental", action="store_true",
                      help="compile the incremental pipeline (a new partition against a "
                           "baseline, input baseline_uri) instead of the full scan")
    comp.add_argument("--image-digest", default=None,
                      help="pin every step to ghcr.io/acgate/acgate@<sha256:...> (default: the "
                           "version tag)")
    comp.add_argument("--mlflow-credentials-secret", default=None,
                      help="Kubernetes Secret (keys username, password) that the MLflow steps "
                           "get as MLFLOW_TRACKING_USERNAME/PASSWORD (MLflow basic auth)")
    comp.add_argument("--dataset-credentials-secret", default=None,
                      help="Kubernetes Secret (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
                           "that the steps reading dataset_uri get as environment variables "
                           "(an s3:// dataset; in the incremental pipeline also its rescan, "
                           "which reads an s3:// baseline_uri)")
    run = sub.add_parser("run", help="run the pipeline locally (SubprocessRunner)")
    run.add_argument("--dataset", required=True, help="dataset Parquet file")
    run.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: none)")
    run.add_argument("--baseline", default=None,
                     help="run the incremental pipeline against this accepted scan "
                          "(runs:/<scan run>/baseline, models:/<model>@<alias>, a baseline "
                          "folder or a scan folder)")
    run.add_argument("--model-name", default=None)
    run.add_argument("--model-version", default=None)
    settings = run.add_argument_group("scan settings (acgate.core.config; default: the "
                                      "pipeline's)")
    add_setting_options(settings, _pipeline_settings())
    run.add_argument("--repair-strategy", default="relabel", choices=("relabel", "remove"))
    run.add_argument("--no-fail-on-poisoned", dest="fail_on_poisoned", action="store_false",
                     help="end a run on data that is not clean green (default: the verdict "
                          "step fails it; exit 3 either way)")
    run.add_argument("--n-shards", type=int, default=1,
                     help="row shards extracted in parallel (default: 1; the flags do not "
                          "depend on it)")
    run.add_argument("--root", default="local-runs", help="pipeline root (default: local-runs)")
    run.add_argument("--cache", action="store_true",
                     help="cache tasks like KFP (file cache under the pipeline root)")
    args = parser.parse_args(argv)
    if args.command == "run" and args.n_shards < 1:
        parser.error(f"--n-shards must be a whole number >= 1, got {args.n_shards}")
    if args.command == "compile":
        try:
            path = compile_pipeline(
                args.out, image_digest=args.image_digest,
                mlflow_credentials_secret=args.mlflow_credentials_secret,
                dataset_credentials_secret=args.dataset_credentials_secret,
                incremental=args.incremental)
        except ValueError as error:
            parser.error(str(error))
        print(path)
        return 0
    given = {item.name: getattr(args, item.name) for item in _pipeline_settings()
             if getattr(args, item.name) is not None}
    if isinstance(given.get("n_clusters"), int):  # the pipeline takes it as text
        given["n_clusters"] = str(given["n_clusters"])
    if args.baseline:  # the incremental pipeline extracts in one task and promotes nothing
        if args.n_shards != 1 or args.model_name or args.model_version:
            parser.error("--baseline runs the incremental pipeline, which takes no "
                         "--n-shards, --model-name or --model-version")
        given["baseline_uri"] = args.baseline
    else:
        given["n_shards"] = args.n_shards
    try:
        outputs = run_locally(
            args.root, cache=args.cache, dataset_uri=str(Path(args.dataset).resolve()),
            mlflow_tracking_uri=args.tracking_uri, model_name=args.model_name,
            model_version=args.model_version, repair_strategy=args.repair_strategy,
            fail_on_poisoned=args.fail_on_poisoned, **given,
        )
    except RuntimeError as error:
        if failed_task(error) != "verdict":
            raise
        print(f"{error}\nThe data is not clean: the verdict step's log above says what was "
              "found, where the repaired data is and what to do next.", file=sys.stderr)
        return 3
    print(json.dumps(outputs, indent=2))
    return 0 if outputs["verdict"] == "clean" else 3


if __name__ == "__main__":
    sys.exit(main())
