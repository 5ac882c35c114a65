"""KFP component ``plan_shards``: the row shards ``extract_activations`` fans out over."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_shards(dataset: Input[Dataset], n_shards: int = 1) -> List[int]:
    """Return the shards of the dataset's rows that extraction runs in parallel.

    Args:
        dataset: The validated dataset (from ``train_proxy``); only its footer is read.
        n_shards: Shards asked for; a dataset of fewer rows than ``n_shards`` extraction
            batches (256 rows) gets fewer.

    Returns:
        ``[0, 1, ..., k-1]``: one ``extract_activations`` task per entry.
    """
    from acgate.stages import begin_step, plan_shards_stage

    begin_step()
    return plan_shards_stage(dataset.path, n_shards)
