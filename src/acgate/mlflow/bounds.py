"""Bounded waiting for MLflow calls, and one-line errors when the tracking store fails.

MLflow's HTTP client waits up to ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (120 s) per request and retries
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (7) times with exponential backoff, honouring a server's
``Retry-After``: a tracking server that answers ``/health`` but stalls its API holds a caller for
about 15 minutes. MLflow reads these settings **only from environment variables**, at every
request (``mlflow.utils.rest_utils.http_request``; the artifact proxy client
``mlflow.store.artifact.http_artifact_repo`` reads the same ones), and ``MlflowClient`` has no
argument for them. :func:`bounded` therefore sets them for the duration of acgate's calls and
restores the previous environment afterwards:

========================================== =========================== =====================
variable                                   acgate's bound (default)    MLflow's default
========================================== =========================== =====================
``MLFLOW_HTTP_REQUEST_TIMEOUT``            8 s per connect / read      120 s
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``        2                           7
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``     1 (sleeps 0 s, then 2 s)    2
``MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER`` false                       true
``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``   false (quiet stderr)        true
========================================== =========================== =====================

A stalled request thus fails after at most ``3 x 8 s + 2 s`` (+ up to 1 s jitter), about
27 s; a server answering 503 fails after about 3 s. A variable the operator has already set in
the environment is left as it is (their choice wins; raise ``MLFLOW_HTTP_REQUEST_TIMEOUT`` for a
slow server). The environment is process-wide: another thread making MLflow calls at the same
time sees the same bounds; the innermost open block's values are in force, and the environment is
restored when the last block exits.

A SQLite store waits at most MLflow's ``PRAGMA busy_timeout`` (20 s) for a locked database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from acgate.errors import InfrastructureError

__all__ = [
    "DEFAULT_BOUNDS",
    "MlflowBounds",
    "StoreUnreachableError",
    "bounded",
    "describe_error",
    "is_not_found",
    "is_store_error",
]

_MAX_MESSAGE = 300


class StoreUnreachableError(InfrastructureError, ConnectionError):
    """An HTTP tracking server does not answer at all (also a :class:`ConnectionError`)."""


@dataclass(frozen=True)
class MlflowBounds:
    """How long acgate lets one MLflow HTTP request wait, and how often it retries.

    Attributes:
        timeout_s: Seconds per connect or read of one request (MLflow takes whole seconds).
        max_retries: Retries after the first attempt, on connection errors, timeouts and the
            transient statuses 429, 500, 502, 503, 504.
        backoff_factor: Backoff before retry ``n >= 2`` is ``backoff_factor * 2 ** (n - 1)`` s
            (the first retry is immediate).
    """

    timeout_s: int = 8
    max_retries: int = 2
    backoff_factor: int = 1

    def __post_init__(self) -> None:
        """Check the values (MLflow accepts whole numbers only, retries up to 10)."""
        for name, low, high in (("timeout_s", 1, 3600), ("max_retries", 0, 10),
                                ("backoff_factor", 0, 120)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"MlflowBounds.{name} must be an integer in [{low}, {high}], "
                                 f"got {value!r}")

    @property
    def worst_case_s(self) -> float:
        """Longest one stalled request can take: every attempt times out, plus the backoffs."""
        # urllib3 sleeps 0 s after the first error, then backoff_factor * 2 ** (k - 1) after
        # error k, plus MLflow's jitter of up to 1 s.
        backoff = sum(self.backoff_factor * 2 ** (k - 1) + 1.0
                      for k in range(2, self.max_retries + 1))
        return float((self.max_retries + 1) * self.timeout_s) + backoff

    def environment(self) -> dict[str, str]:
        """The MLflow environment variables that carry these bounds."""
        return {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.timeout_s),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.backoff_factor),
            "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
            # Not a bound: keeps MLflow's download progress bars out of the CLI's stderr.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


#: The bounds acgate uses unless a caller passes others.
DEFAULT_BOUNDS = MlflowBounds()

_lock = threading.Lock()
#: Environment values of the ``bounded`` blocks now open, innermost last.
_stack: list[dict[str, str]] = []
#: The environment before the outermost block: name -> value (``None``: unset).
_original: dict[str, str | None] = {}


class _NoTraceback(logging.Filter):
    """Drop the traceback MLflow logs beside a database error it then raises anyway.

    ``mlflow.store.db.utils`` logs every SQLAlchemy ``OperationalError`` (a full disk, a locked
    database) with ``logger.exception`` before raising it as an ``MlflowException``: some 200
    lines on stderr for an error acgate reports in one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            error = record.exc_info[1]
            first = describe_error(record.getMessage()).rstrip(".")
            record.msg = f"{first}: {describe_error(error)}" if error is not None else first
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_NO_TRACEBACK = _NoTraceback()
_QUIETED_LOGGERS = ("mlflow.store.db.utils",)


@contextlib.contextmanager
def bounded(bounds: MlflowBounds | None = None) -> Iterator[MlflowBounds]:
    """Run MLflow calls with bounded timeouts and retries (see the module docstring).

    Blocks nest: an inner block's bounds apply inside it, the outer ones again after it; the
    environment is restored when the outermost block exits.

    Args:
        bounds: The bounds; ``None``: :data:`DEFAULT_BOUNDS`.

    Yields:
        The bounds in force.
    """
    bounds = DEFAULT_BOUNDS if bounds is None else bounds
    with _lock:
        if not _stack:
            _original.clear()
            _original.update({name: os.environ.get(name) for name in bounds.environment()})
            for name in _QUIETED_LOGGERS:
                logging.getLogger(name).addFilter(_NO_TRACEBACK)
        entry = bounds.environment()
        _stack.append(entry)
        _apply(entry)
    try:
        yield bounds
    finally:
        with _lock:
            for index in range(len(_stack) - 1, -1, -1):
                if _stack[index] is entry:
                    del _stack[index]
                    break
            if _stack:
                _apply(_stack[-1])
            else:
                for name, value in _original.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
                _original.clear()
                for name in _QUIETED_LOGGERS:
                    logging.getLogger(name).removeFilter(_NO_TRACEBACK)


def _apply(values: dict[str, str]) -> None:
    """Set the variables the operator did not set before the outermost block."""
    for name, value in values.items():
        if _original.get(name) is None:
            os.environ[name] = value


def describe_error(error: BaseException | str) -> str:
    """One line (at most 300 characters) saying what went wrong, without SQL or tracebacks."""
    if isinstance(error, str):
        text = error
    elif (reason := _http_reason(error)) is not None:
        # MLflow says "API request to <url> failed with exception <a retry error holding
        # ... the reason>": keep the URL and the reason (a read timeout, "too many 503 ...").
        match = re.search(r"API request to (\S+) failed", str(error))
        where = f"API request to {match.group(1)} failed" if match else "HTTP request failed"
        text = f"{where} after retries: {type(reason).__name__}: {reason}"
    else:
        root = error
        # MLflow wraps SQLAlchemy errors, which wrap the DB-API error: report the innermost.
        for _ in range(5):
            orig = getattr(root, "orig", None)
            cause = orig if isinstance(orig, BaseException) else root.__cause__
            if cause is None or not _is_wrapper(root):
                break
            root = cause
        text = str(root) or type(root).__name__
        if root is not error and type(root).__name__ not in text:
            text = f"{type(root).__name__}: {text}"
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else "unknown error"
    if line.startswith("(") and ") " in line:  # "(sqlite3.OperationalError) database is locked"
        line = line.split(") ", 1)[1]
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def _http_reason(error: BaseException) -> BaseException | None:
    """The ``reason`` of a urllib3 retry error in ``error``'s chain (causes, contexts, args)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        candidates = [seen, *(arg for arg in seen.args if isinstance(arg, BaseException))]
        for candidate in candidates:
            reason = getattr(candidate, "reason", None)
            if isinstance(reason, BaseException) and type(candidate).__name__ == "MaxRetryError":
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


def _is_wrapper(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"MlflowException", "SQLAlchemyError", "DBAPIError"})


def is_not_found(error: BaseException) -> bool:
    """Whether an MLflow error says that the named thing does not exist (or is malformed).

    ``RESOURCE_DOES_NOT_EXIST`` (unknown run, model or version) and ``INVALID_PARAMETER_VALUE``
    (a run id that cannot be one): the caller named something wrong, the store is fine.
    """
    code = getattr(error, "error_code", None)
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def is_store_error(error: BaseException) -> bool:
    """Whether ``error`` comes from the store or the way to it, not from acgate's own code.

    MLflow errors, OS errors (a full disk, a missing folder), SQLAlchemy and ``requests`` errors,
    and the JSON errors of a server that answers with something other than MLflow's API.
    """
    if isinstance(error, (OSError, InfrastructureError)):
        return True
    names = {f"{cls.__module__}.{cls.__name__}" for cls in type(error).__mro__}
    if "json.decoder.JSONDecodeError" in names:
        return True
    return any(name.startswith(("mlflow.", "sqlalchemy.", "requests.", "urllib3."))
               for name in names)


def infrastructure_error(tracking_uri: str, doing: str, error: BaseException
                         ) -> InfrastructureError:
    """An :class:`InfrastructureError` naming the store, what acgate was doing, and why."""
    return InfrastructureError(
        f"MLflow tracking store {tracking_uri!r} failed while {doing}: {describe_error(error)}"
    )
