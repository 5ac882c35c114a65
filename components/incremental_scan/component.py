"""KFP component ``incremental_scan``: a new partition judged against the accepted baseline."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Model, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def incremental_scan(
    dataset_uri: str,
    baseline_uri: str,
    dataset: Output[Dataset],
    model: Output[Model],
    samples: Output[Dataset],
    classes: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
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
    dataset_sha256: Optional[str] = None,
) -> NamedTuple("IncrementalOutputs", verdict=str, run_id=str, n_flagged=int, mode=str,
                baseline=str):
    """Scan the partition at ``dataset_uri`` against the baseline, as ``acgate scan --baseline``.

    The baseline's proxy gives the partition's activations, judged against the baseline's
    reference (no training); a partition that moved too far from the baseline is scanned in
    full with the settings below (``fallback``), and ``mode`` says which ran.

    Args:
        dataset_uri: The new partition (a dataset Parquet file, a path or URI).
        baseline_uri: The accepted scan: ``runs:/<scan run>/baseline`` (a clean full
            pipeline run's ``publish_baseline``), ``models:/<model>@<alias>`` (the baseline of
            the scan that cleared the version the gate gave that alias), a published baseline
            folder or an ``acgate scan`` output folder (a path or a URI :mod:`pyarrow.fs`
            opens).
        dataset: The staged partition.
        model: The proxy that judged the rows (the baseline's, or the full fallback's).
        samples: Per-sample result, schema ``samples/1``.
        classes: Per-class result, schema ``classes/1``.
        metrics: The scan's numbers, named as in MLflow.
        report: Self-contained HTML report.
        fallback: Scan in full when the partition has shifted (``False``: keep the
            incremental verdict, recorded as shifted).
        reducer: As ``analyze``'s (a full fallback's).
        n_components: As ``analyze``'s.
        n_clusters: As ``analyze``'s.
        analysis: As ``analyze``'s.
        size_threshold: As ``analyze``'s.
        silhouette_threshold: As ``analyze``'s.
        exre_threshold: As ``analyze``'s.
        source_share_threshold: As ``analyze``'s.
        nested_source_share_threshold: As ``analyze``'s.
        confusion_threshold: As ``analyze``'s.
        overlap_threshold: As ``analyze``'s.
        redraw_components: As ``analyze``'s.
        segment_by: As ``analyze``'s.
        min_class_size: As ``analyze``'s.
        seed: Seed of every random step.
        proxy: As ``train_proxy``'s (a full fallback's).
        epochs: As ``train_proxy``'s.
        exre_epochs: As ``analyze``'s.
        exre_max_rows: As ``analyze``'s.
        batch_size: As ``train_proxy``'s.
        lr: As ``train_proxy``'s.
        hidden: As ``train_proxy``'s.
        max_decoded_bytes: Memory budget of the decoded images plus training.
        max_tokens: As ``train_proxy``'s.
        label_column: The partition's label column.
        image_column: The partition's image column.
        text_column: The partition's text column.
        id_column: A column of unique row ids; ``None``: the row number.
        mlflow_tracking_uri: Log the scan as an MLflow run (and read a ``runs:/`` or
            ``models:/`` baseline); ``None``: no tracking.
        dataset_sha256: SHA-256 of the partition's bytes (from ``dataset_digest``).

    Returns:
        ``verdict``, ``run_id`` (``""`` untracked), ``n_flagged``, ``mode``
        (``"incremental"``, or ``"full"`` after a fallback) and ``baseline``: the baseline it
        judged against, pinned (a ``models:/`` URI's resolved ``runs:/`` URI), for the rescan.
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from acgate.stages import (
        begin_step,
        copy_file,
        copy_proxy,
        incremental_scan_stage,
        judged_baseline,
        log_metrics,
        scan_metrics,
        step_config,
    )

    begin_step()
    config = step_config(parameters)
    with tempfile.TemporaryDirectory(prefix="acgate-incremental-") as work:
        outcome, staged = incremental_scan_stage(
            dataset_uri, baseline_uri, Path(work), config, dataset_sha256=dataset_sha256,
            tracking_uri=mlflow_tracking_uri, fallback=fallback)
        copy_file(staged, dataset.path)
        copy_proxy(outcome.out_dir, model.path)
        copy_file(outcome.files["samples"], samples.path)
        copy_file(outcome.files["classes"], classes.path)
        copy_file(outcome.files["report.html"], report.path)
        pinned = judged_baseline(outcome)  # read from scan.json while the folder exists
    log_metrics(metrics, scan_metrics(outcome))
    verdict, run_id = outcome.result.verdict, outcome.run_id or ""
    mode = outcome.mode
    samples.metadata.update({"verdict": verdict, "run_id": run_id, "mode": mode,
                             "baseline": baseline_uri, "dataset_sha256": dataset_sha256 or ""})
    outputs = namedtuple("IncrementalOutputs",
                         ["verdict", "run_id", "n_flagged", "mode", "baseline"])
    return outputs(verdict, run_id, int(outcome.result.is_poison.sum()), mode, pinned)
