"""KFP component ``collect_activations``: the shards' activations as one class-partitioned set."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def collect_activations(
    shards: Input[List[Dataset]],
    dataset: Input[Dataset],
    activations: Output[Dataset],
) -> List[int]:
    """Gather the shards' activation parts into one activation dataset; return its classes.

    Args:
        shards: Every shard's activation folder (from ``extract_activations``).
        dataset: The validated dataset (from ``train_proxy``); only its row count is read.
        activations: Activation dataset folder: ``segment=<class>/shard-<k>.parquet`` parts
            (schema ``activations/1``) and ``dataset.json``; a ``cluster`` task reads only its
            class's parts.

    Returns:
        The classes present, ascending: the pipeline runs one ``cluster`` task per class.
    """
    from acgate.stages import begin_step, collect_activations_stage

    begin_step()
    classes = collect_activations_stage([shard.path for shard in shards], dataset.path,
                                        activations.path)
    activations.metadata["classes"] = classes
    return classes
