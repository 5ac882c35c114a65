"""KFP component ``verdict``: end a run whose data is not clean red, saying what to do next."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input

from components._image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def verdict(
    scan_verdict: str,
    classes: Input[Dataset],
    repaired_dataset: Input[Dataset],
    n_flagged: int = 0,
    scan_run_id: str = "",
    rescan_verdict: str = "",
    rescan_run_id: str = "",
    rescan_n_flagged: int = 0,
    rescan_mode: str = "",
    model_name: Optional[str] = None,
    model_version: Optional[str] = None,
    fail_on_poisoned: bool = True,
    partition: bool = False,
) -> str:
    """Fail the step (and so the run) on data that is not clean; the message says what to do.

    Args:
        scan_verdict: The scan's verdict (from ``analyze``).
        classes: The scan's per-class result (from ``analyze``).
        repaired_dataset: The repaired dataset (from ``repair``): its URI is in the message.
        n_flagged: Rows the scan flagged (from ``analyze``).
        scan_run_id: The scan's MLflow run.
        rescan_verdict: The rescan's verdict of the repaired data (from ``rescan``).
        rescan_run_id: The rescan's MLflow run.
        rescan_n_flagged: Rows the rescan flagged.
        rescan_mode: The rescan's ``mode`` (a repaired partition: ``"full"`` when it moved too
            far from the baseline and was scanned in full).
        model_name: The registered model trained on the scanned data.
        model_version: Its version.
        fail_on_poisoned: ``False``: log the message as a warning and succeed (the run ends
            green; the verdict stays the run's output, and the full pipeline's is on the model
            version).
        partition: The incremental pipeline's: the scan judged a new partition (its rescan
            judged the repaired partition against the same baseline; nothing promoted); the
            next step says whether to append the repaired partition.

    Returns:
        The message (only when the step does not fail).

    Raises:
        acgate.errors.PoisonedDataError: The data is not clean and ``fail_on_poisoned``: the
            verdict, the flagged classes and rows, the scan run, where the repaired data is,
            the rescan's verdict, that the model was not promoted, and the next step: retrain
            on the repaired data, then rerun (when the rescan found it clean; else review and
            repair again).
    """
    from acgate.stages import begin_step, verdict_stage

    begin_step()
    return verdict_stage(scan_verdict, classes.path, fail_on_poisoned=fail_on_poisoned,
                         n_flagged=n_flagged, scan_run_id=scan_run_id,
                         repaired_uri=repaired_dataset.uri, rescan_verdict=rescan_verdict,
                         rescan_run_id=rescan_run_id, rescan_n_flagged=rescan_n_flagged,
                         rescan_mode=rescan_mode, model_name=model_name,
                         model_version=model_version, partition=partition)
