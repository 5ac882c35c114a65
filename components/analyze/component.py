"""KFP component ``analyze``: judge every class, write the result, report and MLflow run."""

from typing import List, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

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
    scan: Output[Artifact],
    dataset_uri: str = "",
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
    dataset_sha256: Optional[str] = None,
) -> NamedTuple("AnalyzeOutputs", verdict=str, run_id=str, n_flagged=int):
    """Run the analysis (exclusionary reclassification by default) over all class clusterings.

    Args:
        activations: Activation dataset folder (from ``collect_activations``; an activations
            Parquet file works too).
        dataset: The validated dataset (for the retrain and the report's sprites).
        clusterings: One clustering per class (``dsl.Collected`` over the ``cluster`` tasks).
        samples: Per-sample result, schema ``samples/1`` (``index``, ``is_poison``, ...).
        classes: Per-class result, schema ``classes/1``.
        metrics: The scan's numbers, named as in MLflow (:func:`acgate.stages.scan_metrics`:
            the result's and the proxy's).
        report: Self-contained HTML report.
        scan: The scan's ``scan.json`` (what ``publish_baseline`` records with the baseline).
        dataset_uri: The dataset's original URI (recorded in MLflow and the report title).
        reducer: As given to ``cluster``.
        n_components: As given to ``cluster``.
        n_clusters: As given to ``cluster``.
        analysis: ``"auto"`` (exre), ``"exre"``, ``"size-silhouette"``, ``"size"``,
            ``"silhouette"``, ``"distance"``, ``"spectral"``, ``"robust"``.
        size_threshold: Largest share a poison cluster may hold; ``None``: 0.45 under exre,
            else 0.35 (text: 0.35).
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
        min_class_size: As given to ``cluster``.
        seed: Seed (the same as ``train_proxy``'s: the retrain must match the proxy).
        proxy: The proxy architecture (as ``train_proxy``'s; the retrain rebuilds it).
        epochs: Proxy epochs (as ``train_proxy``'s).
        exre_epochs: Epochs of the retrain; ``None``: the proxy's.
        exre_max_rows: Most rows each retrain trains on; ``None``: every row.
        batch_size: Training batch size (as ``train_proxy``'s).
        lr: Adam learning rate (as ``train_proxy``'s).
        hidden: Width of the proxy's last hidden layer (as ``train_proxy``'s).
        max_decoded_bytes: Memory budget of the decoded images plus training.
        max_tokens: Longest text the text proxy reads (as ``train_proxy``'s).
        label_column: The dataset's label column (as ``train_proxy``'s).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: The dataset's id column; ``None``: the row number.
        mlflow_tracking_uri: Log the scan as an MLflow run; ``None``: no tracking.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key, recorded in ``samples``' metadata; ``dataset`` must have it.
            ``None``: no check.

    Returns:
        ``verdict`` (``"clean"`` or ``"poisoned"``), ``run_id`` (the MLflow run, ``""`` when
        tracking is off) and ``n_flagged``.
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    import tempfile
    from collections import namedtuple

    from acgate.stages import (
        analyze_stage,
        begin_step,
        copy_file,
        log_metrics,
        scan_metrics,
        step_config,
        track_scan,
    )

    begin_step(dataset.path, dataset_sha256)
    config = step_config(parameters)
    run_id = ""
    with tempfile.TemporaryDirectory(prefix="acgate-analyze-") as out_dir:
        outcome = analyze_stage(
            activations.path, dataset.path, [c.path for c in clusterings], out_dir, config,
            dataset_uri=dataset_uri or None, dataset_sha256=dataset_sha256 or None)
        if mlflow_tracking_uri:
            run_id = track_scan(outcome, out_dir, config, tracking_uri=mlflow_tracking_uri)
        copy_file(outcome.files["samples"], samples.path)
        copy_file(outcome.files["classes"], classes.path)
        copy_file(outcome.files["report.html"], report.path)
        copy_file(outcome.files["scan"], scan.path)
    log_metrics(metrics, scan_metrics(outcome))
    verdict = outcome.result.verdict
    samples.metadata.update({"verdict": verdict, "run_id": run_id,
                             "dataset_sha256": dataset_sha256 or ""})
    outputs = namedtuple("AnalyzeOutputs", ["verdict", "run_id", "n_flagged"])
    return outputs(verdict, run_id, int(outcome.result.is_poison.sum()))
