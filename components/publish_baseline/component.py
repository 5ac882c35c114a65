"""KFP component ``publish_baseline``: a clean scan's baseline, for incremental scans."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def publish_baseline(
    scan: Input[Artifact],
    samples: Input[Dataset],
    activations: Input[Dataset],
    model: Input[Model],
    baseline: Output[Artifact],
    scan_run_id: str = "",
    mlflow_tracking_uri: Optional[str] = None,
) -> str:
    """Write the baseline folder of a clean full scan; log it to the scan's MLflow run.

    Args:
        scan: The scan's ``scan.json`` (from ``analyze``); a scan that is not clean is refused.
        samples: The scan's per-sample result (from ``analyze``).
        activations: The activation dataset the scan judged (from ``collect_activations``);
            read one class at a time.
        model: The proxy folder (from ``train_proxy``).
        baseline: The baseline folder: ``model.pt``, ``model.json`` (a text proxy's
            ``vocab.json``), ``scan.json`` and ``reference.parquet`` (the incremental
            reference's rows only: at most 2,000 kept rows a class).
        scan_run_id: The scan's MLflow run (from ``analyze``); the folder is logged under its
            ``baseline/`` artifacts. ``""``: not logged.
        mlflow_tracking_uri: Tracking URI; ``None``: not logged.

    Returns:
        The URI an incremental scan names the baseline by: ``runs:/<scan run>/baseline`` when
        logged; untracked, the ``baseline`` artifact's URI, which an incremental scan can open
        only where pyarrow reads its scheme (``s3://``, ``gs://``; not KFP's default
        ``minio://``: keep tracking on, or copy the folder).
    """
    from acgate.stages import begin_step, publish_baseline_stage

    begin_step()
    written = publish_baseline_stage(scan.path, samples.path, activations.path, model.path,
                                     baseline.path, tracking_uri=mlflow_tracking_uri,
                                     scan_run_id=scan_run_id)
    uri = written.pop("uri") or baseline.uri
    baseline.metadata.update({**written, "uri": uri})
    return uri
