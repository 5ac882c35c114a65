"""KFP component ``extract_activations``: the proxy's last hidden layer for one shard of rows."""

from typing import List, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract_activations(
    dataset: Input[Dataset],
    model: Input[Model],
    activations: Output[Dataset],
    segment_by: str = "label",
    max_decoded_bytes: Optional[int] = 8589934592,
    label_column: str = "label",
    image_column: str = "image",
    text_column: str = "text",
    id_column: Optional[str] = None,
    dataset_sha256: Optional[str] = None,
    shard: int = 0,
    n_shards: int = 1,
) -> List[int]:
    """Write one shard's activations, one Parquet part per class; return its classes.

    Args:
        dataset: The validated dataset (from ``train_proxy``).
        model: The proxy model folder (from ``train_proxy``).
        activations: The shard's activation folder: one Parquet part (schema
            ``activations/1``) per class (``segment=<class>/``) and ``dataset.json``.
        segment_by: ``"label"`` or ``"prediction"``: what the returned classes are.
        max_decoded_bytes: Memory budget of the decoded images (as ``train_proxy``'s).
        label_column: The dataset's label column (as ``train_proxy``'s).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: The dataset's id column; ``None``: the row number.
        dataset_sha256: SHA-256 that ``dataset`` must have; ``None``: no check. The pipeline
            leaves it ``None``: every shard would hash the whole file again, for a copy
            ``train_proxy`` already checked, and the task's cache key holds the dataset
            artifact, which is new whenever ``train_proxy`` ran on new bytes.
        shard: Which shard of the rows (from ``plan_shards``): only its rows are decoded.
        n_shards: The shards asked for (``plan_shards``'s input).

    Returns:
        The classes present in the shard, ascending.
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    from acgate.stages import (
        begin_step,
        extract_stage,
        step_config,
    )

    begin_step(dataset.path, dataset_sha256)
    config = step_config(parameters)
    classes, _ = extract_stage(dataset.path, model.path, activations.path, config, shard=shard,
                               n_shards=n_shards)
    activations.metadata["classes"] = classes
    return classes
