"""KFP component ``extract_activations``: the proxy's last hidden layer, one row per sample."""

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
) -> List[int]:
    """Write the activations Parquet file and return the classes to cluster.

    Args:
        dataset: The validated dataset (from ``train_proxy``).
        model: The proxy model folder (from ``train_proxy``).
        activations: Activations Parquet file (schema ``activations/1``).
        segment_by: ``"label"`` or ``"prediction"``: what the returned classes are.
        max_decoded_bytes: Memory budget of the decoded images (as ``train_proxy``'s).
        label_column: The dataset's label column (as ``train_proxy``'s).
        image_column: The dataset's image column.
        text_column: The dataset's text column.
        id_column: The dataset's id column; ``None``: the row number.
        dataset_sha256: SHA-256 of the dataset's bytes (from ``dataset_digest``): part of the
            KFP cache key; ``dataset`` must have it. ``None``: no check.

    Returns:
        The classes present, ascending: the pipeline runs one ``cluster`` task per class.
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    from acgate.stages import (
        begin_step,
        extract_stage,
        step_config,
    )

    begin_step(dataset.path, dataset_sha256)
    config = step_config(parameters)
    classes, _ = extract_stage(dataset.path, model.path, activations.path, config)
    activations.metadata["classes"] = classes
    return classes
