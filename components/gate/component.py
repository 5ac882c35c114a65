"""KFP component ``gate``: promote the model version in MLflow when its scan passed."""

from typing import NamedTuple, Optional

from kfp import dsl

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(
    run_id: str,
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    mlflow_tracking_uri: Optional[str] = None,
    alias: str = "champion",
) -> NamedTuple("GateOutputs", promoted=bool, reasons=str):
    """Set ``alias`` on the model version if the scan run is clean; fail closed otherwise.

    Args:
        run_id: The scan's MLflow run (from ``analyze``).
        model_name: Registered model trained on the scanned data; ``None``: nothing to promote
            (the step succeeds with ``promoted=False``).
        model_version: Its version (e.g. ``"3"``).
        mlflow_tracking_uri: Tracking and registry URI.
        alias: Alias to move on a pass.

    Returns:
        ``promoted`` and the decision's ``reasons`` (``"; "``-joined).

    Raises:
        RuntimeError: When a model was named and the gate refused it (missing or unfinished
            run, a poisoned class, MLflow unreachable, ...): the step fails, the alias stays.
    """
    import logging
    from collections import namedtuple

    from acgate.mlflow import promote

    logging.basicConfig(level=logging.INFO)
    outputs = namedtuple("GateOutputs", ["promoted", "reasons"])
    if not model_name or not model_version:
        reason = "no model_name/model_version given: nothing to promote"
        logging.getLogger("acgate.gate").warning(reason)
        return outputs(False, reason)
    if not mlflow_tracking_uri:
        raise RuntimeError(f"gate refused {model_name} v{model_version}: no "
                           "mlflow_tracking_uri given (fails closed)")
    decision = promote(tracking_uri=mlflow_tracking_uri, run_id=run_id or None,
                       model_name=model_name, model_version=model_version, alias=alias)
    reasons = "; ".join(decision.reasons)
    if not decision.promoted:
        raise RuntimeError(f"gate refused {model_name} v{model_version}: {reasons}")
    return outputs(True, reasons)
