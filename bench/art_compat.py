"""IBM ART 1.20.1's clustering analyzer on numpy 2: the minimal shim every ART baseline uses.

Used by the ``art`` and ``art_scale`` experiments and by ``bench/attack_matrix.py
--baselines``. Needs the ``bench`` extra
(``pip install --no-deps adversarial-robustness-toolbox==1.20.1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _SafeWhere(tuple):
    """``np.where``'s tuple whose ``in`` works on numpy 2 (ART tests ``id in np.where(...)``)."""

    def __contains__(self, value: object) -> bool:
        return any(value in np.asarray(part).ravel().tolist() for part in self)


class _NumpyForArt:
    """numpy as ART's ``clustering_analyzer`` sees it, with its two numpy-2 crashes fixed.

    * ``cluster_id in np.where(...)`` (only fills the report) raises "truth value of an empty
      array is ambiguous": ``where`` returns a tuple whose ``in`` compares values.
    * ``np.array([[]])`` used as the (empty) poison-cluster indices is a float array, which
      numpy 2 refuses as an index: it becomes an empty int array.

    Nothing else changes: which rows ART assigns clean or poison is its own logic.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def where(*args: Any) -> Any:
        result = np.where(*args)
        return _SafeWhere(result) if len(args) == 1 else result

    @staticmethod
    def array(obj: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], list) and not obj[0]:
            return np.array([], dtype=np.int64)
        return np.array(obj, *args, **kwargs)


def patch_art_for_numpy2() -> None:
    """Apply :class:`_NumpyForArt` to ART's clustering analyzer module."""
    from art.defences.detector.poison import clustering_analyzer

    clustering_analyzer.np = _NumpyForArt()
