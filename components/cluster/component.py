"""KFP component ``cluster``: reduce and 2-means one class's activations (the fan-out unit)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def cluster(
    activations: Input[Dataset],
    label: int,
    clustering: Output[Dataset],
    reducer: str = "pca",
    n_components: int = 10,
    n_clusters: int = 2,
    seed: int = 0,
    segment_by: str = "label",
):
    """Cluster the activations of one class and write its clustering as Parquet.

    Args:
        activations: Activations Parquet file (from ``extract_activations``).
        label: The class (label, or prediction with ``segment_by="prediction"``).
        clustering: Parquet file: ``position``, ``cluster``, ``reduced`` columns; label,
            silhouette, cluster count and skip reason in its ``acgate.clustering`` metadata
            (and in this artifact's metadata).
        reducer: ``"pca"``, ``"ica"`` or ``"none"``.
        n_components: Dimensions after reduction.
        n_clusters: k of k-means.
        seed: Seed of the reducer and k-means.
        segment_by: ``"label"`` or ``"prediction"``.
    """
    import logging

    from acgate.stages import cluster_stage, pipeline_config

    logging.basicConfig(level=logging.INFO)
    config = pipeline_config(seed=seed, reducer=reducer, n_components=n_components,
                             n_clusters=n_clusters, segment_by=segment_by)
    result = cluster_stage(activations.path, label, clustering.path, config)
    clustering.metadata.update({
        "label": result.label, "n_clusters": result.n_clusters,
        "cluster_sizes": list(result.cluster_sizes), "silhouette": result.silhouette,
        "skipped_reason": result.skipped_reason,
    })
