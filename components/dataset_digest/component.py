"""KFP component ``dataset_digest``: the SHA-256 of the dataset's bytes (never cached)."""

from kfp import dsl

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def dataset_digest(dataset_uri: str) -> str:
    """Read the dataset at ``dataset_uri`` and return the SHA-256 of its bytes.

    The pipeline runs this step with caching off and passes its result to every step that
    reads the data: when the file behind an unchanged URI changes (a nightly run on refreshed
    data), their KFP cache keys change and they run again; when it does not, they stay cached.

    Args:
        dataset_uri: Dataset Parquet file: a path or a ``file://``, ``s3://``, ``gs://`` URI.

    Returns:
        The SHA-256 of the file's bytes, 64 lowercase hex characters.
    """
    import logging

    from acgate.stages import dataset_digest_stage

    logging.basicConfig(level=logging.INFO)
    digest = dataset_digest_stage(dataset_uri)
    logging.getLogger("acgate.dataset_digest").info("%s: sha256 %s", dataset_uri, digest)
    return digest
