"""KFP component ``repair``: relabel (or remove) the flagged samples and repair the proxy."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def repair(
    dataset: Input[Dataset],
    samples: Input[Dataset],
    model: Input[Model],
    cleaned_dataset: Output[Dataset],
    repaired_model: Output[Model],
    metrics: Output[Metrics],
    strategy: str = "relabel",
    seed: int = 0,
    epochs: Optional[int] = None,
    mlflow_tracking_uri: Optional[str] = None,
    scan_run_id: Optional[str] = None,
    dataset_sha256: Optional[str] = None,
) -> str:
    """Repair the dataset and the proxy from the scan's per-sample result.

    Args:
        dataset: The scanned dataset (from ``train_proxy``); never modified.
        samples: The scan's per-sample result (from ``analyze``).
        model: The proxy model folder (from ``train_proxy``).
        cleaned_dataset: The repaired dataset Parquet file.
        repaired_model: The repaired proxy's state_dict.
        metrics: The repair's numbers (rows relabelled/removed, epochs, accuracies).
        strategy: ``"relabel"`` (fine-tune on the flagged samples relabelled with their
            suspected source) or ``"remove"`` (drop them, retrain from scratch).
        seed: Seed of every random step.
        epochs: Fixed epochs; ``None``: the library's default.
        mlflow_tracking_uri: Log the repair as an MLflow run; ``None``: no tracking.
        scan_run_id: The scan's MLflow run (from ``analyze``): the repair run becomes its
            child; ``None`` or ``""``: a top-level run.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key; ``dataset`` must have it. ``None``: no check.

    Returns:
        The repair's MLflow run id (``""`` when not tracked).
    """
    import logging

    from acgate.stages import (
        check_dataset_digest,
        pipeline_config,
        repair_stage,
        write_metrics_file,
    )

    logging.basicConfig(level=logging.INFO)
    check_dataset_digest(dataset.path, dataset_sha256)
    outcome = repair_stage(
        dataset.path, samples.path, model.path, cleaned_dataset.path, repaired_model.path,
        pipeline_config(seed=seed, epochs=epochs), strategy=strategy, epochs=epochs,
        tracking_uri=mlflow_tracking_uri, scan_run_id=scan_run_id,
    )
    for name, value in outcome.metrics.items():
        metrics.log_metric(name, value)
    write_metrics_file(metrics.path, metrics.metadata)
    repaired_model.metadata.update({"strategy": strategy, "seed": seed,
                                    "run_id": outcome.run_id or "",
                                    "dataset_sha256": dataset_sha256 or ""})
    return outcome.run_id or ""
