"""What can go wrong, and the exit code each outcome maps to: one table for the CLI and docs.

Exit codes of every ``acgate`` command:

- 0 ``EXIT_CLEAN``: clean verdict; model promoted; or the command succeeded.
- 1 ``EXIT_ERROR``: an internal error (a bug in acgate: the traceback is printed).
- 2 ``EXIT_BAD_INPUT``: bad input or bad arguments (the message names the file, column, flag).
- 3 ``EXIT_POISON``: poison found; promotion refused (poison, or evidence that does not check
  out).
- 4 ``EXIT_INFRASTRUCTURE``: the environment failed: tracking store unreachable, stalled or
  full; disk full.
- 5 ``EXIT_INCOMPLETE``: no poison found, but a class could not be judged (``--allow-skipped``
  accepts it).
- 6 ``EXIT_CHANGED``: ``acgate diff`` only: the two scans differ (a code of its own, so that a
  nightly job never mistakes a crash, 1, for a change).

A poisoned verdict, once reached, is printed and written before anything that can fail with an
infrastructure error, and keeps exit 3 even when tracking fails afterwards.
"""

from __future__ import annotations

EXIT_CLEAN = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_POISON = 3
EXIT_INFRASTRUCTURE = 4
EXIT_INCOMPLETE = 5
#: ``acgate diff``: the verdict or the flags changed between the two scans.
EXIT_CHANGED = 6

#: ``(code, meaning)`` rows of the table above, for ``--help`` and the README.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_CLEAN, "clean; promoted; or the command succeeded"),
    (EXIT_ERROR, "internal error (a bug in acgate)"),
    (EXIT_BAD_INPUT, "bad input or bad arguments"),
    (EXIT_POISON, "poison found; promotion refused"),
    (EXIT_INFRASTRUCTURE, "infrastructure failed: tracking store unreachable, stalled or full; "
                          "disk full"),
    (EXIT_INCOMPLETE, "incomplete: a class could not be judged (--allow-skipped accepts it)"),
    (EXIT_CHANGED, "acgate diff: the two scans differ"),
)


class InfrastructureError(RuntimeError):
    """The environment failed, not the input (exit 4).

    A tracking store that is unreachable, stalls, answers with server errors or is full; a disk
    that is full. Raised by the adapters (MLflow, file output) so that the CLI can tell an
    outage (exit 4) from bad input (exit 2) and from poison (exit 3).
    """


class PoisonedDataError(RuntimeError):
    """The scanned data is poisoned: the pipeline's ``verdict`` step fails the run with it.

    Not a malfunction: a run that ends with this error did its job (the verdict, where the
    repaired data is and what to do next are in the message), and its red status is how the KFP
    UI shows that the data must not be trained on.
    """
