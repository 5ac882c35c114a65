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
    dataset_sha256: Optional[str] = None,
):
    """Copy the dataset into the pipeline, validate it and train the proxy model on it.

    Args:
        dataset_uri: Dataset Parquet file (``label`` + ``image``, or ``label`` + ``text``): a
            path or a ``file://``, ``s3://``, ``gs://`` URI.
        dataset: The validated copy (every later step reads this one).
        model: The proxy: a folder with ``model.pt``, ``model.json`` (and ``vocab.json``).
        metrics: Training statistics (``final_loss``, ``train_accuracy``, ...; and
            ``attack_success``, ``attack_success_rows`` when the dataset records its attack).
        seed: Seed of every random step.
        proxy: ``"auto"`` (CNN for images, Kim's text CNN for text), ``"cnn"``, ``"mlp"`` or
            ``"textcnn"``.
        epochs: Proxy epochs; ``None``: images 30 below 10k rows, else 2; text 6 to 30.
        batch_size: Training batch size.
        lr: Adam learning rate.
        hidden: Width of the proxy's last hidden layer.
        max_decoded_bytes: Memory budget of the decoded images plus training; ``None``: none.
        max_tokens: Longest text the text proxy reads, in tokens.
        label_column: The dataset's label column (integers; other values are mapped to
            classes 0..k-1 in sorted order).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: A column of unique row ids carried to every per-row output; ``None``: the
            row number.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key, so new data behind the same URI is trained on again; the staged
            copy must have it (the data did not change during the run). ``None``: no check.
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    from acgate.stages import (
        begin_step,
        check_dataset_digest,
        log_metrics,
        stage_dataset,
        step_config,
        train_proxy_stage,
    )

    begin_step()
    config = step_config(parameters)
    stage_dataset(dataset_uri, dataset.path, config.columns)
    check_dataset_digest(dataset.path, dataset_sha256)
    info = train_proxy_stage(dataset.path, model.path, config)
    model.metadata.update(info)
    dataset.metadata["sha256"] = dataset_sha256 or ""
    log_metrics(metrics, info)
