"""KFP component ``tag_verdict``: tag the model version with the scan's verdict, either verdict."""

from typing import Optional

from kfp import dsl

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tag_verdict(
    run_id: str,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
) -> str:
    """Tag ``model_name``/``model_version`` with the verdict of the scan run ``run_id``.

    Tags ``acgate.scan.verdict`` (``clean``, ``poisoned``, ``incomplete``),
    ``acgate.scan.run_id``, ``acgate.scan.dataset_sha256`` and ``acgate.scan.poisoned_classes``,
    read from the scan run. Never moves an alias.

    Args:
        run_id: The scan's MLflow run (from ``analyze``).
        model_name: Registered model trained on the scanned data; ``None``: nothing to tag (the
            step succeeds).
        model_version: Its version (e.g. ``"3"``).
        mlflow_tracking_uri: Tracking and registry URI; a named model without it fails the step.

    Returns:
        The tags written, as JSON (``{}`` when no model was named).

    Raises:
        ValueError: A named model without a version or tracking URI, an unknown version or run.
    """
    import json

    from acgate.stages import begin_step, tag_verdict_stage

    begin_step()
    tags = tag_verdict_stage(run_id, tracking_uri=mlflow_tracking_uri, model_name=model_name,
                             model_version=model_version)
    return json.dumps(tags, sort_keys=True)
