"""KFP component ``cluster``: reduce and cluster one class's activations (the fan-out unit)."""

from typing import Optional

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
    n_clusters: str = "",
    seed: int = 0,
    segment_by: str = "label",
    analysis: str = "auto",
    size_threshold: Optional[float] = None,
    min_class_size: int = 10,
):
    """Cluster the activations of one class and write its clustering as Parquet.

    Args:
        activations: Activation dataset folder (from ``collect_activations``; an activations
            Parquet file works too).
        label: The class (label, or prediction with ``segment_by="prediction"``).
        clustering: Parquet file: ``position``, ``cluster``, ``reduced`` (and, in stable mode,
            ``candidates``) columns; label, silhouette, cluster count, candidates and skip
            reason in its ``acgate.clustering`` metadata (and in this artifact's metadata).
        reducer: ``"pca"``, ``"ica"`` or ``"none"``.
        n_components: Dimensions after reduction.
        n_clusters: ``"2"`` (k of k-means), ``"auto"``, ``"stable"``; ``""``: ``"stable"``
            under exclusionary reclassification, else 2.
        seed: Seed of the reducer and k-means.
        segment_by: ``"label"`` or ``"prediction"``.
        analysis: The analysis ``analyze`` will run (decides the default ``n_clusters``).
        size_threshold: Largest share of the class a stable candidate may hold; ``None``: as
            ``analyze`` resolves it.
        min_class_size: Smaller classes are skipped (the scan is then incomplete).
    """
    parameters = dict(locals())  # the settings, before any other local name exists
    from acgate.stages import begin_step, cluster_stage, step_config

    begin_step()
    config = step_config(parameters)
    result = cluster_stage(activations.path, label, clustering.path, config)
    clustering.metadata.update({
        "label": result.label, "n_clusters": result.n_clusters,
        "cluster_sizes": list(result.cluster_sizes), "silhouette": result.silhouette,
        "skipped_reason": result.skipped_reason,
        "candidates": None if result.candidates is None else [
            len(c.members) for c in result.candidates],
    })
