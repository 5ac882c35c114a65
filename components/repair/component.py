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
):
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
    """
    import logging
    import tempfile
    from pathlib import Path

    from acgate.repair import run_repair
    from acgate.stages import MODEL_WEIGHTS_FILE, copy_file, pipeline_config

    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory(prefix="acgate-repair-") as work:
        outcome = run_repair(
            dataset.path, samples.path, Path(model.path) / MODEL_WEIGHTS_FILE,
            Path(work) / "repair", strategy=strategy, seed=seed, epochs=epochs,
            config=pipeline_config(seed=seed, epochs=epochs),
        )
        copy_file(outcome.cleaned_dataset_path, cleaned_dataset.path)
        copy_file(outcome.model_path, repaired_model.path)
    for name, value in outcome.report.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, float(value))
    repaired_model.metadata.update({"strategy": strategy, "seed": seed})
