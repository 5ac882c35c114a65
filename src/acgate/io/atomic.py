"""Atomic writes: a file or a folder appears complete, or not at all.

Every writer in :mod:`acgate.io` writes to a temporary path in the destination's own folder
(same file system, so the final rename is atomic) and renames it into place only when the
write finished without an exception. A failed or interrupted write leaves the previous
content (if any) untouched and no half-written file behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["atomic_directory", "atomic_write_path"]


def _temp_sibling(path: Path, tag: str) -> Path:
    """A hidden, unique name in the same folder as ``path``, naming its owner process.

    ``.<name>.<tag>-<pid>@<host>-<random>``: the owner lets a later writer of the same path
    clean up after a process that was killed mid-write (see :func:`_sweep_stale_siblings`).
    """
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:12]}")


_HOST = socket.gethostname().replace("/", "_") or "localhost"


def _owner_is_gone(pid: int, host: str) -> bool:
    """Whether the process that made a temporary sibling is certainly dead.

    Only decidable for this host's processes; anything else (another host sharing the
    folder, a permission error) counts as alive, so a live writer's files are never removed.
    """
    if host != _HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _sweep_stale_siblings(final: Path) -> None:
    """Clean up what a killed writer of ``final`` left: its temporary and aside copies.

    A temporary (``tmp``) sibling of a dead owner is half-written and removed. An aside
    (``old``) sibling is the previous complete result, moved aside just before a crash: it is
    put back when ``final`` is missing, else removed.
    """
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)@(.+)-[0-9a-f]{{12}}$")
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if match is None or not _owner_is_gone(int(match.group(2)), match.group(3)):
            continue
        if match.group(1) == "old" and sibling.is_dir() and not final.exists():
            logger.warning("restoring %s from %s, left by a killed writer", final, sibling)
            try:
                os.replace(sibling, final)
                continue
            except OSError as error:
                logger.warning("could not restore %s: %s", final, error)
        logger.info("removing %s, left by a killed writer", sibling)
        _remove(sibling)


def _fsync_path(path: Path) -> None:
    """Flush a file (or folder entry) to disk; best effort where the OS does not allow it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    """Remove a file or a folder tree if it exists; log (not raise) when that fails."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError as error:
        logger.warning("could not remove temporary path %s: %s", path, error)


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file atomically: yield a temporary path, rename it to ``path`` on success.

    The temporary file lives in the same folder as ``path`` (created if missing). When the
    ``with`` body finishes, the temporary file replaces ``path`` with :func:`os.replace`;
    when it raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The final file path.

    Yields:
        The temporary path to write to (it does not exist yet).

    Raises:
        FileNotFoundError: When the body finished without creating the temporary file.

    Example:
        >>> with atomic_write_path("out/report.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    final = Path(path)
    if final.is_dir():
        raise IsADirectoryError(f"cannot write file {final}: it is an existing folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_siblings(final)
    temp = _temp_sibling(final, "tmp")
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(
                f"nothing was written for {final}: the temporary file {temp} does not exist"
            )
        _fsync_path(temp)
        os.replace(temp, final)
        _fsync_path(final.parent)
    except BaseException:
        _remove(temp)
        raise


@contextlib.contextmanager
def scratch_file(beside: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file path next to ``beside``, removed when the ``with`` block ends.

    Named as :func:`atomic_write_path` names its temporary file, so what a killed process left
    is swept by the next write of ``beside``.

    Yields:
        The path (it does not exist yet).
    """
    final = Path(beside)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_siblings(final)
    temp = _temp_sibling(final, "tmp")
    try:
        yield temp
    finally:
        _remove(temp)


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder atomically: yield an empty temporary folder, swap it in on success.

    The temporary folder is a sibling of ``out_dir``. On success the complete new folder
    replaces ``out_dir``: an existing ``out_dir`` is first renamed aside, the new folder is
    renamed in, and the old one is deleted. A crash therefore leaves either the previous
    complete folder (possibly under its aside name, next to ``out_dir``, which the next
    write of ``out_dir`` puts back) or the new complete folder, never a mix. When the body
    raises, the temporary folder is removed and ``out_dir`` is untouched.

    Args:
        out_dir: The final folder path.

    Yields:
        The temporary folder (exists, empty) to write into.

    Raises:
        NotADirectoryError: When ``out_dir`` exists and is not a folder.
    """
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"cannot replace {final}: it exists and is not a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_siblings(final)
    temp = _temp_sibling(final, "tmp")
    temp.mkdir()
    try:
        yield temp
    except BaseException:
        _remove(temp)
        raise
    old: Path | None = None
    try:
        if final.exists():
            old = _temp_sibling(final, "old")
            os.replace(final, old)
        os.replace(temp, final)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)
            old = None
        _remove(temp)
        raise
    _fsync_path(final.parent)
    if old is not None:
        _remove(old)
