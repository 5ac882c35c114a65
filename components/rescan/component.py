"""KFP component ``rescan``: scan the repaired dataset again, as ``acgate scan`` does."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def rescan(
    repaired_dataset: Input[Dataset],
    samples: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
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
    scan_run_id: Optional[str] = None,
    baseline_uri: Optional[str] = None,
    fallback: bool = True,
) -> NamedTuple("RescanOutputs", verdict=str, run_id=str, n_flagged=int, mode=str):
    """Scan the repaired dataset with the pipeline's settings and seed (the whole scan, one step).

    Args:
        repaired_dataset: The repaired dataset (``repair``'s ``cleaned_dataset``).
        samples: The rescan's per-sample result, schema ``samples/1``.
        metrics: The rescan's numbers, named as in MLflow.
        report: The rescan's self-contained HTML report.
        reducer: As given to ``cluster``.
        n_components: As given to ``cluster``.
        n_clusters: As given to ``cluster``.
        analysis: As given to ``analyze``.
        size_threshold: As given to ``analyze``.
        silhouette_threshold: As given to ``analyze``.
        exre_threshold: As given to ``analyze``.
        source_share_threshold: As given to ``analyze``.
        nested_source_share_threshold: As given to ``analyze``.
        confusion_threshold: As given to ``analyze``.
        overlap_threshold: As given to ``analyze``.
        redraw_components: As given to ``analyze``.
        segment_by: ``"label"`` or ``"prediction"``.
        min_class_size: As given to ``cluster``.
        seed: Seed of every random step (the first scan's).
        proxy: The proxy architecture (as ``train_proxy``'s).
        epochs: Proxy epochs (as ``train_proxy``'s); ``None``: from the repaired data's size.
        exre_epochs: Epochs of the retrain; ``None``: the proxy's.
        exre_max_rows: Most rows each retrain trains on; ``None``: every row.
        batch_size: Training batch size.
        lr: Adam learning rate.
        hidden: Width of the proxy's last hidden layer.
        max_decoded_bytes: Memory budget of the decoded images plus training.
        max_tokens: Longest text the text proxy reads, in tokens.
        label_column: The dataset's label column (the repaired data keeps the input's columns
            and label values).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: A column of unique row ids carried to every per-row output; ``None``: the
            row number.
        mlflow_tracking_uri: Log the rescan as an MLflow scan run; ``None``: no tracking.
        scan_run_id: The first scan's MLflow run (from ``analyze``): the rescan run becomes its
            child, tagged ``acgate.rescan_of``; ``None`` or ``""``: a top-level run.
        baseline_uri: The incremental pipeline's: judge the repaired partition against this
            baseline, as ``incremental_scan`` judged the partition (no training; the settings
            above act only in a full fallback); ``None`` or ``""``: a full scan.
        fallback: With ``baseline_uri``: scan a repaired partition that moved too far from the
            baseline in full (``incremental_scan``'s ``fallback``).

    Returns:
        The rescan's ``verdict``, its MLflow ``run_id`` (``""`` untracked), ``n_flagged`` and
        ``mode`` (``"incremental"``: judged against the baseline; ``"full"``).
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from acgate.io.results import result_metrics
    from acgate.stages import begin_step, copy_file, log_metrics, rescan_stage, step_config

    begin_step()
    config = step_config(parameters)
    with tempfile.TemporaryDirectory(prefix="acgate-rescan-") as work:
        outcome = rescan_stage(repaired_dataset.path, Path(work) / "scan", config,
                               tracking_uri=mlflow_tracking_uri, scan_run_id=scan_run_id,
                               baseline_uri=baseline_uri, fallback=fallback)
        copy_file(outcome.files["samples"], samples.path)
        copy_file(outcome.files["report.html"], report.path)
    log_metrics(metrics, result_metrics(outcome.result))
    verdict, run_id = outcome.result.verdict, outcome.run_id or ""
    samples.metadata.update({"verdict": verdict, "run_id": run_id, "rescan_of": scan_run_id or "",
                             "dataset_sha256": outcome.dataset_sha256 or ""})
    outputs = namedtuple("RescanOutputs", ["verdict", "run_id", "n_flagged", "mode"])
    return outputs(verdict, run_id, int(outcome.result.is_poison.sum()), outcome.mode)
