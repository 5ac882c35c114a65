"""KFP component ``analyze``: judge every class, write the result, report and MLflow run."""

from typing import List, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def analyze(
    activations: Input[Dataset],
    dataset: Input[Dataset],
    clusterings: Input[List[Dataset]],
    samples: Output[Dataset],
    classes: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    dataset_uri: str = "",
    analysis: str = "auto",
    size_threshold: Optional[float] = None,
    silhouette_threshold: float = 0.10,
    source_share_threshold: float = 0.5,
    nested_source_share_threshold: float = 0.7,
    confusion_threshold: float = 0.03,
    reducer: str = "pca",
    n_components: int = 10,
    n_clusters: str = "",
    seed: int = 0,
    epochs: Optional[int] = None,
    segment_by: str = "label",
    mlflow_tracking_uri: Optional[str] = None,
    dataset_sha256: Optional[str] = None,
) -> NamedTuple("AnalyzeOutputs", verdict=str, run_id=str, n_flagged=int):
    """Run the analysis (exclusionary reclassification by default) over all class clusterings.

    Args:
        activations: Activations Parquet file (from ``extract_activations``).
        dataset: The validated dataset (for the retrain and the report's sprites).
        clusterings: One clustering per class (``dsl.Collected`` over the ``cluster`` tasks).
        samples: Per-sample result, schema ``samples/1`` (``index``, ``is_poison``, ...).
        classes: Per-class result, schema ``classes/1``.
        metrics: The scan's numbers, named as in MLflow
            (:func:`acgate.io.results.result_metrics`).
        report: Self-contained HTML report.
        dataset_uri: The dataset's original URI (recorded in MLflow and the report title).
        analysis: ``"auto"`` (exre), ``"exre"``, ``"size-silhouette"``, ``"size"``,
            ``"silhouette"``, ``"distance"``.
        size_threshold: Largest share a poison cluster may hold; ``None``: 0.45 under exre,
            else 0.35.
        silhouette_threshold: Smallest silhouette counted as two clusters.
        source_share_threshold: Exclusionary reclassification: smallest share of a left-out
            cluster that must go to one other class for it to be poison.
        nested_source_share_threshold: The same for a stable sub-cluster inside a candidate.
        confusion_threshold: A candidate is legitimate when the proxy itself confuses its class
            and the suspected source at least this much (2 disables the test).
        reducer: As given to ``cluster`` (recorded).
        n_components: As given to ``cluster`` (recorded).
        n_clusters: As given to ``cluster`` (recorded).
        seed: Seed (the same as ``train_proxy``'s: the retrain must match the proxy).
        epochs: Proxy epochs (the same as ``train_proxy``'s).
        segment_by: ``"label"`` or ``"prediction"``.
        mlflow_tracking_uri: Log the scan as an MLflow run; ``None``: no tracking.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key, recorded in ``samples``' metadata; ``dataset`` must have it.
            ``None``: no check.

    Returns:
        ``verdict`` (``"clean"`` or ``"poisoned"``), ``run_id`` (the MLflow run, ``""`` when
        tracking is off) and ``n_flagged``.
    """
    import logging
    import tempfile
    from collections import namedtuple

    from acgate.io.results import result_metrics
    from acgate.stages import (
        analyze_stage,
        check_dataset_digest,
        copy_file,
        pipeline_config,
        write_metrics_file,
    )

    logging.basicConfig(level=logging.INFO)
    check_dataset_digest(dataset.path, dataset_sha256)
    config = pipeline_config(seed=seed, epochs=epochs, analysis=analysis,
                             size_threshold=size_threshold,
                             silhouette_threshold=silhouette_threshold, reducer=reducer,
                             n_components=n_components, n_clusters=n_clusters,
                             segment_by=segment_by,
                             source_share_threshold=source_share_threshold,
                             nested_source_share_threshold=nested_source_share_threshold,
                             confusion_threshold=confusion_threshold)
    with tempfile.TemporaryDirectory(prefix="acgate-analyze-") as out_dir:
        outcome = analyze_stage(
            activations.path, dataset.path, [c.path for c in clusterings], out_dir, config,
            tracking_uri=mlflow_tracking_uri or None, dataset_uri=dataset_uri or None,
        )
        copy_file(outcome.files["samples"], samples.path)
        copy_file(outcome.files["classes"], classes.path)
        copy_file(outcome.files["html"], report.path)
    for name, value in result_metrics(outcome.result).items():
        metrics.log_metric(name, value)
    write_metrics_file(metrics.path, metrics.metadata)
    verdict = outcome.result.verdict
    samples.metadata.update({"verdict": verdict, "run_id": outcome.run_id or "",
                             "dataset_sha256": dataset_sha256 or ""})
    outputs = namedtuple("AnalyzeOutputs", ["verdict", "run_id", "n_flagged"])
    return outputs(verdict, outcome.run_id or "", int(outcome.result.is_poison.sum()))
