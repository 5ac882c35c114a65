"""KFP component ``train_proxy``: stage and validate the dataset, train the seeded proxy."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Model, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_proxy(
    dataset_uri: str,
    dataset: Output[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    seed: int = 0,
    epochs: Optional[int] = None,
):
    """Copy the dataset into the pipeline, validate it and train the proxy model on it.

    Args:
        dataset_uri: Dataset Parquet file (``label`` + ``image``): a path or a ``file://``,
            ``s3://``, ``gs://`` URI.
        dataset: The validated copy (every later step reads this one).
        model: The proxy: a folder with ``state_dict.pt`` and ``model.json``.
        metrics: Training statistics (``final_loss``, ``train_accuracy``, ...).
        seed: Seed of every random step.
        epochs: Proxy epochs; ``None``: 30 below 10k rows, else 2.
    """
    import logging

    from acgate.stages import pipeline_config, stage_dataset, train_proxy_stage

    logging.basicConfig(level=logging.INFO)
    config = pipeline_config(seed=seed, epochs=epochs)
    stage_dataset(dataset_uri, dataset.path)
    info = train_proxy_stage(dataset.path, model.path, config)
    model.metadata.update(info)
    for name, value in info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, float(value))
