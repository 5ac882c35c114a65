"""Logging set-up of the CLI and the pipeline steps: acgate's records, libraries' only on request.

Stage progress ("[2/6] training the proxy: ...") goes to the :data:`PROGRESS_LOGGER` logger at
INFO; :func:`show_progress` prints it as plain lines on stderr (the CLI does on a terminal or
with ``--progress``, not with ``--quiet``).

Great Expectations sets some of its own loggers to INFO, so every validation wrote lines such as
"Created temporary directory ... for ephemeral docs site" to stderr (a local pipeline run: 214
lines), whatever level the root logger had. The handler installed here lets a library's records
below :data:`logging.WARNING` through only when the user asks for them (``-v``).
"""

from __future__ import annotations

import logging
import sys

#: Logger namespaces whose records below the library level are dropped.
NOISY_LIBRARIES = ("great_expectations",)
#: The format of every record on stderr.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: The logger of the scan's stage progress lines.
PROGRESS_LOGGER = "acgate.progress"


class _QuietLibraries(logging.Filter):
    """Drops records of :data:`NOISY_LIBRARIES` below a level."""

    def __init__(self, library_level: int) -> None:
        super().__init__()
        self.library_level = library_level

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return (record.levelno >= self.library_level
                or not record.name.startswith(NOISY_LIBRARIES))


def configure_logging(level: int, *, library_level: int = logging.WARNING) -> None:
    """Log to stderr at ``level``; the noisy libraries' records only from ``library_level``.

    Like :func:`logging.basicConfig`, does nothing to a root logger that already has handlers
    (a host application's, or pytest's), so an embedding program keeps its own set-up.

    Args:
        level: The root logger's level.
        library_level: The lowest level of :data:`NOISY_LIBRARIES`' records that pass.
    """
    root = logging.getLogger()
    before = set(root.handlers)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for handler in root.handlers:
        if handler not in before:
            handler.addFilter(_QuietLibraries(library_level))


class _ProgressHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Plain lines on whatever ``sys.stderr`` is when a line is written (a redirect included)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> object:  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always the current sys.stderr


def show_progress(show: bool = True) -> None:
    """Print the scan's stage progress as plain lines on stderr, or stop printing it.

    While shown, the progress logger does not propagate, so a ``-v`` root handler does not print
    each line twice. Calling it again with the same choice changes nothing.
    """
    progress = logging.getLogger(PROGRESS_LOGGER)
    for handler in [h for h in progress.handlers if isinstance(h, _ProgressHandler)]:
        progress.removeHandler(handler)
    if show:
        progress.addHandler(_ProgressHandler())
        progress.setLevel(logging.INFO)
    progress.propagate = not show
