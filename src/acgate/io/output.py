"""Output folders that never cost the user a file acgate did not write.

Every command that writes a folder (``scan``, ``detect``, ``repair``, ``demo``) goes through
:func:`output_folder`. The rules:

* ``--out`` may not be an existing file, the working folder or a parent of it, nor be or contain
  one of the command's inputs (the dataset, the activations, the samples, the model).
* A folder acgate wrote carries a marker file (:data:`MARKER_FILE`) listing its entries. A
  missing or empty folder, or one whose every entry the marker lists, is replaced whole and
  atomically (see :func:`acgate.io.atomic.atomic_directory`): the previous complete result or the
  new complete one, never a mix.
* A non-empty folder without the marker, or with entries the marker does not list, is refused
  unless ``overwrite``; even then only acgate's outputs are replaced, one entry at a time, and
  every other file stays where it was.
* One writer at a time: an exclusive lock (``fcntl.flock``) on a hidden sibling
  ``.<name>.lock`` is held from the checks until the caller is done with the folder (the MLflow
  run logs the folder inside it), so two processes with the same ``--out`` cannot mix results.
  The second one is refused at once, naming the first. The lock file is removed on release.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from acgate.io.atomic import _HOST, _fsync_path, _remove, _sweep_stale_siblings, _temp_sibling

logger = logging.getLogger(__name__)

__all__ = ["MARKER_FILE", "StagedOutput", "check_output_folder", "output_folder"]

#: The marker acgate leaves in every folder it wrote: JSON with the command and the entries.
MARKER_FILE = ".acgate-output"
_MARKER_FORMAT = "acgate-output/1"


class StagedOutput:
    """An output folder being written: write into :attr:`staging`, then :meth:`commit`.

    Attributes:
        path: The final folder.
        staging: A fresh hidden sibling folder to write into (same file system).
        committed: Whether :meth:`commit` moved the outputs into :attr:`path`.
    """

    def __init__(self, path: Path, staging: Path, command: str, merge: bool) -> None:
        """Store the folders; see :func:`output_folder`."""
        self.path = path
        self.staging = staging
        self.command = command
        self.committed = False
        self._merge = merge

    def commit(self) -> None:
        """Move the staged outputs into place (whole-folder swap, or one entry at a time)."""
        if self.committed:
            return
        entries = sorted(p.name for p in self.staging.iterdir())
        marker = {"format": _MARKER_FORMAT, "command": self.command, "entries": entries,
                  "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "writer": f"{os.getpid()}@{_HOST}"}
        (self.staging / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n",
                                                encoding="utf-8")
        if self._merge:
            self._commit_entries(entries)
        else:
            self._commit_folder()
        _fsync_path(self.path.parent)
        self.committed = True

    def _commit_folder(self) -> None:
        old: Path | None = None
        try:
            if self.path.exists():
                old = _temp_sibling(self.path, "old")
                os.replace(self.path, old)
            os.replace(self.staging, self.path)
        except BaseException:
            if old is not None and not self.path.exists():
                os.replace(old, self.path)
                old = None
            raise
        if old is not None:
            _remove(old)

    def _commit_entries(self, entries: list[str]) -> None:
        """Replace acgate's own entries of a folder that also holds other files."""
        previous = read_marker(self.path)
        previous_entries = set(previous["entries"]) if previous else set()
        for name in [*entries, MARKER_FILE]:
            source, target = self.staging / name, self.path / name
            if source.is_dir() and target.exists():
                aside = _temp_sibling(target, "old")
                os.replace(target, aside)
                os.replace(source, target)
                _remove(aside)
            else:
                os.replace(source, target)
        for name in sorted(previous_entries - set(entries)):  # stale outputs of the last run
            if "/" not in name and name not in (".", ".."):
                _remove(self.path / name)
        _remove(self.staging)


def read_marker(folder: Path) -> dict | None:
    """The marker of a folder acgate wrote, or ``None`` (absent, unreadable, not acgate's)."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(marker, dict) or marker.get("format") != _MARKER_FORMAT
            or not isinstance(marker.get("entries"), list)):
        return None
    return marker


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(out: str | os.PathLike[str], *,
                        inputs: Iterable[str | os.PathLike[str] | None] = (),
                        name: str = "--out") -> Path:
    """Refuse an output folder that could cost the user a file; cheap, before any work.

    Args:
        out: The output folder.
        inputs: The command's input files (``None`` entries are ignored).
        name: How the folder is named in messages.

    Returns:
        ``out`` as given (a :class:`~pathlib.Path`).

    Raises:
        ValueError: ``out`` is an existing file or not a folder, the working folder or a parent
            of it, or is or contains one of ``inputs``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{name} {str(out)!r} exists and is not a folder; give a folder path "
                         "(it is created when missing)")
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if _is_within(cwd, resolved):
        raise ValueError(f"{name} {str(out)!r} is the working folder {str(cwd)!r} or a parent "
                         "of it; acgate replaces its output folder, so give a new or empty "
                         "subfolder such as 'acgate-out'")
    for given in inputs:
        if given is None:
            continue
        if _is_within(Path(given).resolve(), resolved):
            raise ValueError(f"{name} {str(out)!r} is or contains the input {str(given)!r}; "
                             "write the outputs to another folder")
    return out


def _foreign_entries(folder: Path) -> list[str] | None:
    """Entries of ``folder`` that acgate did not write (``None``: no marker at all).

    acgate's entries: those its marker lists, the marker itself, the lock file of an entry, and
    a sub-folder acgate wrote later (e.g. ``demo-out/scan``) whose own entries are all acgate's.
    """
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return []
    marker = read_marker(folder)
    if marker is None:
        return None
    listed = set(marker["entries"])
    foreign = []
    for entry in entries:
        if entry == MARKER_FILE or entry in listed:
            continue
        if (entry.startswith(".") and entry.endswith(".lock") and entry[1:-5] in entries
                and (folder / entry).is_file()):
            continue  # the lock output_folder left beside one of these entries
        path = folder / entry
        if path.is_dir() and not path.is_symlink() and _foreign_entries(path) == [] \
                and read_marker(path) is not None:
            continue
        foreign.append(entry)
    return foreign


def _open_locked(lock_path: Path, out: Path, name: str) -> int:
    """Open and lock ``lock_path`` (non-blocking); retry when a releasing holder unlinked it."""
    for _ in range(20):
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip() or "?"
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise ValueError(f"{name} {str(out)!r} is being written by another acgate process "
                             f"({holder}); wait for it to finish or choose another folder"
                             ) from None
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            return descriptor
        os.close(descriptor)  # the holder removed this file as we locked it: take the new one
    raise ValueError(f"{name} {str(out)!r}: could not take its lock {str(lock_path)!r}")


@contextlib.contextmanager
def _exclusive_lock(out: Path, name: str) -> Iterator[None]:
    """Hold ``.<out>.lock`` beside ``out``; the file is removed when released.

    It is unlinked while still locked, and a process that locked an unlinked copy notices (the
    path no longer names its file) and retries, so two writers never both hold it. A killed
    holder leaves the file behind, unlocked: the next writer takes it and removes it.
    """
    lock_path = out.with_name(f".{out.name}.lock")
    descriptor = _open_locked(lock_path, out, name)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on {_HOST}\n".encode(), 0)
        yield
    finally:
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        os.close(descriptor)


@contextlib.contextmanager
def output_folder(out: str | os.PathLike[str], *, command: str,
                  inputs: Iterable[str | os.PathLike[str] | None] = (),
                  overwrite: bool = False, name: str = "--out") -> Iterator[StagedOutput]:
    """Write an output folder safely: checked, locked, staged, committed atomically.

    The body writes into ``staged.staging`` and may call ``staged.commit()`` to move the outputs
    into place and go on using the final folder under the lock (e.g. to log it to MLflow);
    otherwise the outputs are committed when the body finishes. When the body raises before the
    commit, the staging folder is removed and the final folder is untouched.

    Args:
        out: The final folder.
        command: The command writing it (recorded in the marker).
        inputs: The command's input files: ``out`` may not be or contain any of them.
        overwrite: Accept a non-empty folder acgate did not write (or one with other files in
            it); only acgate's own outputs are then replaced, every other file is kept.
        name: How the folder is named in messages.

    Yields:
        The :class:`StagedOutput`.

    Raises:
        ValueError: A refused folder (see :func:`check_output_folder`), a non-empty foreign
            folder without ``overwrite``, or another process writing the same folder.
    """
    final = check_output_folder(out, inputs=inputs, name=name)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(final, name):
        merge = False
        if final.is_dir():
            foreign = _foreign_entries(final)
            if foreign is None or foreign:
                if not overwrite:
                    what = ("was not written by acgate" if foreign is None else
                            f"holds files acgate did not write ({', '.join(foreign[:5])}"
                            f"{', ...' if len(foreign) > 5 else ''})")
                    raise ValueError(
                        f"{name} {str(out)!r} is not empty and {what}; acgate never deletes "
                        "files it did not write: give a new or empty folder, or --overwrite "
                        "to replace only acgate's outputs there and keep every other file")
                merge = True
        _sweep_stale_siblings(final)
        staging = _temp_sibling(final, "tmp")
        staging.mkdir()
        staged = StagedOutput(final, staging, command, merge)
        try:
            yield staged
            staged.commit()
        except BaseException:
            if not staged.committed:
                _remove(staging)
            raise
