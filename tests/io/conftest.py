"""Shared fixtures of the io tests: a real named pipe and a hang-proof call."""

import os
import threading

import pytest


def _release(fifo):
    """Unblock a reader stuck in open(fifo): open the write end (non-blocking) and close it."""
    try:
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader waiting
        return
    os.close(descriptor)


@pytest.fixture
def fifo(tmp_path):
    """A real FIFO (named pipe) with a Parquet name; nobody ever writes to it."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is not available on this platform")
    path = tmp_path / "pipe.parquet"
    os.mkfifo(path)
    return path


@pytest.fixture
def without_hanging():
    """Call ``fn()`` in a thread; fail (instead of hanging CI) if it is still running after 10 s.

    Returns the exception ``fn`` raised (or ``None``); the caller asserts on it.
    """
    stuck: list[tuple[threading.Thread, os.PathLike]] = []

    def call(fn, fifo, timeout=10.0):
        outcome: dict[str, BaseException | None] = {"error": None}

        def target():
            try:
                fn()
            except BaseException as error:  # noqa: BLE001 - handed to the test
                outcome["error"] = error

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            stuck.append((thread, fifo))
            pytest.fail(f"reading the FIFO {fifo} blocked for {timeout} s: it was opened")
        return outcome["error"]

    yield call
    for thread, fifo in stuck:
        _release(fifo)
        thread.join(5)
