"""Content digests of input files: what ties a scan to the data a model was trained on."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (lowercase hex) of a file's bytes, read in 1 MiB chunks.

    The same figure as ``sha256sum FILE``: a training script can record it on the model version
    it registers, and the promotion gate compares it with the scan's.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: When ``path`` is not a regular file (a folder, a FIFO, a device).
    """
    import stat

    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{os.fspath(path)!r} is not a regular file; cannot digest it")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
