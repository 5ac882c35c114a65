"""Test helper: pin torch's intra-op threads (shared by the conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Pin torch to ``n`` intra-op threads (restored afterwards); no-op without torch."""
    try:
        import torch
    except ImportError:  # the pure-core tests need no torch
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
