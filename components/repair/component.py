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
    proxy: str = "auto",
    epochs: Optional[int] = None,
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
        proxy: The proxy architecture (as ``train_proxy``'s).
        epochs: Fixed epochs; ``None``: the library's default.
        batch_size: Training batch size.
        lr: Adam learning rate.
        hidden: Width of the proxy's last hidden layer (as ``train_proxy``'s).
        max_decoded_bytes: Memory budget of the decoded images plus training; ``None``: none.
        max_tokens: Longest text the text proxy reads (as ``train_proxy``'s).
        label_column: The dataset's label column (as ``train_proxy``'s).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: The dataset's id column; ``None``: the row number.
        mlflow_tracking_uri: Log the repair as an MLflow run; ``None``: no tracking.
        scan_run_id: The scan's MLflow run (from ``analyze``): the repair run becomes its
            child; ``None`` or ``""``: a top-level run.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key; ``dataset`` must have it. ``None``: no check.

    Returns:
        The repair's MLflow run id (``""`` when not tracked).
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    from acgate.stages import (
        begin_step,
        log_metrics,
        repair_stage,
        step_config,
    )

    begin_step(dataset.path, dataset_sha256)
    outcome = repair_stage(
        dataset.path, samples.path, model.path, cleaned_dataset.path, repaired_model.path,
        step_config(parameters), strategy=strategy, epochs=epochs,
        tracking_uri=mlflow_tracking_uri, scan_run_id=scan_run_id,
    )
    log_metrics(metrics, outcome.metrics)
    repaired_model.metadata.update({"strategy": strategy, "seed": seed,
                                    "run_id": outcome.run_id or "",
                                    "dataset_sha256": dataset_sha256 or ""})
    return outcome.run_id or ""
