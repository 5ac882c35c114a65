"""Backdoor poisoning of a clean dataset, with ground truth, for tests and benchmarks.

Following Chen et al. (2018), poison is made by taking samples of a *source* class, stamping
a trigger on them, labelling them as the *target* class and **appending** them to the data.

Attack shapes
    ``pairs`` lists ``(source, target)`` class pairs; the default is all-to-all
    (``l -> (l + 1) % n``). ``all_to_one=t`` is every other class poisoning class ``t``
    (the pairs ``(s, t)`` for every class ``s != t``).

Poison rate
    ``rate_of="target"`` (the default): ``rate`` is the share of poison in each target class
    *after* poisoning: ``n_poison = round(rate * n_target / (1 - rate))`` where ``n_target``
    is the number of clean samples of the target class, so that
    ``n_poison / (n_target + n_poison) ≈ rate``. When several sources feed one target, the
    target's ``n_poison`` is split evenly among them (the remainder goes to the smallest
    source labels).

    ``rate_of="data"``: ``rate`` is the share of poison in the whole dataset after poisoning:
    ``n_poison = round(rate * n_rows / (1 - rate))`` where ``n_rows`` is the number of clean
    rows (1% of a 20,000-row dataset: 202 poison rows, 1% of the 20,202 rows out), split
    evenly among all pairs (the remainder goes to the first pairs in ``(source, target)``
    order). With ``all_to_one`` that is an even split over the source classes.

    A source feeding several targets gives each of them different samples; which samples
    are copied is seeded.

Triggers (:class:`TriggerSpec`, images ``N x C x H x W`` with values in ``[0, 1]``)
    ``patch`` (BadNets: a square at a corner, the centre or a given ``(row, col)``),
    ``blend`` (a seeded noise image blended over the image), ``sig`` (Barni et al. 2019: a
    horizontal sinusoid added to the image) and ``warp`` (WaNet, Nguyen & Tran 2021: a fixed,
    seeded, smooth displacement field applied by bilinear resampling). Every trigger is
    deterministic for a given spec and is the same for every poisoned image.

The output carries the ground truth as columns — ``is_poison`` (bool), ``source_label``
(the true class: the label for clean rows) and ``origin_index`` (row the poison was copied
from, ``-1`` for clean rows) — and the recipe (trigger, pairs, rate, rate_of, all_to_one,
seed, counts) in ``metadata["poison"]``, which Parquet stores as the ``acgate.poison`` JSON
entry. :func:`recorded_attack` reads the trigger and pairs back (the one reader of the recipe)
and :meth:`RecordedAttack.apply` stamps that trigger on clean inputs as poisoning did.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from acgate.io.datasets import ImageDataset, TextDataset

logger = logging.getLogger(__name__)

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "RecordedAttack",
    "TriggerSpec",
    "all_to_one_pairs",
    "apply_trigger",
    "default_pairs",
    "poison_counts",
    "poison_image_dataset",
    "poison_text_dataset",
    "recorded_attack",
    "warp_field",
]

TriggerKind = Literal["patch", "blend", "sig", "warp"]
Position = Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"]
Pattern = Literal["invert", "white", "checker", "solid", "random"]
TextPosition = Literal["end", "start", "random"]
RateOf = Literal["target", "data"]

TRIGGER_KINDS: tuple[str, ...] = ("patch", "blend", "sig", "warp")
POSITIONS: tuple[str, ...] = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATTERNS: tuple[str, ...] = ("invert", "white", "checker", "solid", "random")
TEXT_POSITIONS: tuple[str, ...] = ("end", "start", "random")
RATE_OF: tuple[str, ...] = ("target", "data")
#: Columns a poisoned dataset gains.
GROUND_TRUTH_COLUMNS = ("is_poison", "source_label", "origin_index")
#: SIG amplitude of Barni et al. (2019): 20 on a 0-255 scale.
SIG_DELTA = 20.0 / 255.0
_RATE_DEFINITIONS = {
    "target": (
        "share of poison in each target class after poisoning: "
        "n_poison = round(rate * n_target / (1 - rate)), split evenly among the target's sources"
    ),
    "data": (
        "share of poison in the whole dataset after poisoning: "
        "n_poison = round(rate * n_rows / (1 - rate)), split evenly among the pairs"
    ),
}


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _is_real(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                                np.floating))
            and bool(np.isfinite(value)))


@dataclass(frozen=True)
class TriggerSpec:
    """An image trigger (images are ``N x C x H x W`` with values in ``[0, 1]``).

    Attributes:
        kind: ``"patch"`` (a square stamped on the image, BadNets-style; the paper's MNIST
            trigger is an inverted bottom-right patch), ``"blend"`` (a seeded noise image
            blended over the whole image), ``"sig"`` (Barni et al. 2019: the sinusoid
            ``delta * sin(2 pi j frequency / W)`` of the column ``j`` added to every row and
            channel, clipped to ``[0, 1]``) or ``"warp"`` (WaNet, Nguyen & Tran 2021: a
            seeded ``grid x grid`` field of uniform random displacements in ``[-1, 1]``,
            normalised to a mean absolute value of 1, upsampled bicubically (corners aligned)
            to ``H x W``; each pixel ``(i, j)`` samples the image bilinearly at
            ``(i + strength * dy * (H - 1) / (2 H), j + strength * dx * (W - 1) / (2 W))``,
            clamped to the image: WaNet's ``grid_sample`` with ``align_corners=True``).
        size: Patch side in pixels; ``None`` scales with the image:
            ``max(2, round(min(H, W) / 7))`` — 2 for 8x8, 4 for 28x28, 5 for 32x32.
        position: Patch place: a corner (``"bottom-right"``, ``"bottom-left"``,
            ``"top-right"``, ``"top-left"``), ``"center"``, or ``(row, col)`` of the patch's
            top-left pixel (a list is accepted and stored as a tuple).
        pattern: Patch content: ``"invert"`` (``1 - x``), ``"white"`` (1), ``"checker"``
            (alternating ``value`` and 0, ``value`` in the patch's top-left pixel),
            ``"solid"`` (``value``) or ``"random"`` (a seeded binary pattern of ``value`` and
            0, the same for every image and channel).
        alpha: Blend weight of the noise: ``x' = (1 - alpha) x + alpha * noise``.
        seed: Seed of the blend noise, the random patch pattern and the warp field (one
            pattern shared by every poisoned sample).
        value: Pixel value of the ``"checker"``, ``"solid"`` and ``"random"`` patterns, in
            ``[0, 1]``.
        delta: SIG amplitude, in ``(0, 1]`` (default 20/255, the paper's 20 on 0-255).
        frequency: SIG frequency: periods across the image width (> 0; the paper's 6).
        grid: Warp control grid side ``k`` (>= 2; WaNet's MNIST setting 4).
        strength: Warp strength ``s`` (>= 0; WaNet's MNIST setting 0.5; 0 is the identity).
    """

    kind: TriggerKind = "patch"
    size: int | None = None
    position: Position | tuple[int, int] = "bottom-right"
    pattern: Pattern = "invert"
    alpha: float = 0.2
    seed: int = 0
    value: float = 1.0
    delta: float = SIG_DELTA
    frequency: float = 6.0
    grid: int = 4
    strength: float = 0.5

    def __post_init__(self) -> None:  # noqa: D105
        if self.kind not in TRIGGER_KINDS:
            raise ValueError(f"TriggerSpec.kind must be one of {TRIGGER_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "position", self._checked_position(self.position))
        if self.pattern not in PATTERNS:
            raise ValueError(
                f"TriggerSpec.pattern must be one of {PATTERNS}, got {self.pattern!r}"
            )
        if self.size is not None and (not _is_int(self.size) or self.size < 1):
            raise ValueError(f"TriggerSpec.size must be a positive integer or None, "
                             f"got {self.size!r}")
        if not _is_real(self.alpha) or not 0.0 < float(self.alpha) <= 1.0:
            raise ValueError(f"TriggerSpec.alpha must be in (0, 1], got {self.alpha!r}")
        if not _is_int(self.seed):
            raise ValueError(f"TriggerSpec.seed must be an integer, got {self.seed!r}")
        if not _is_real(self.value) or not 0.0 <= float(self.value) <= 1.0:
            raise ValueError(f"TriggerSpec.value must be in [0, 1], got {self.value!r}")
        if not _is_real(self.delta) or not 0.0 < float(self.delta) <= 1.0:
            raise ValueError(f"TriggerSpec.delta must be in (0, 1], got {self.delta!r}")
        if not _is_real(self.frequency) or float(self.frequency) <= 0.0:
            raise ValueError(f"TriggerSpec.frequency must be a positive number, "
                             f"got {self.frequency!r}")
        if not _is_int(self.grid) or self.grid < 2:
            raise ValueError(f"TriggerSpec.grid must be an integer >= 2, got {self.grid!r}")
        if not _is_real(self.strength) or float(self.strength) < 0.0:
            raise ValueError(f"TriggerSpec.strength must be a number >= 0, "
                             f"got {self.strength!r}")
        if self.size is not None:
            object.__setattr__(self, "size", int(self.size))
        for name in ("alpha", "value", "delta", "frequency", "strength"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "grid", int(self.grid))

    @staticmethod
    def _checked_position(position: Any) -> str | tuple[int, int]:
        if isinstance(position, str):
            if position not in POSITIONS:
                raise ValueError(f"TriggerSpec.position must be one of {POSITIONS} or "
                                 f"(row, col), got {position!r}")
            return position
        if (isinstance(position, (tuple, list)) and len(position) == 2
                and all(_is_int(v) and v >= 0 for v in position)):
            return (int(position[0]), int(position[1]))
        raise ValueError(f"TriggerSpec.position must be one of {POSITIONS} or (row, col) of "
                         f"non-negative integers, got {position!r}")

    def patch_size(self, height: int, width: int) -> int:
        """Patch side for an ``H x W`` image (``size``, or the scaled default)."""
        if self.size is not None:
            return self.size
        return max(2, round(min(height, width) / 7))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable; a ``(row, col)`` position becomes a list)."""
        data = dataclasses.asdict(self)
        if isinstance(self.position, tuple):
            data["position"] = list(self.position)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriggerSpec:
        """Build a spec from :meth:`to_dict` output (missing fields take their defaults).

        Raises:
            ValueError: On an unknown key (named) or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TriggerSpec field(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def _patch_slices(spec: TriggerSpec, height: int, width: int) -> tuple[slice, slice]:
    size = spec.patch_size(height, width)
    if size > min(height, width):
        raise ValueError(f"trigger patch of {size} pixels does not fit a {height}x{width} image")
    top = {"top": 0, "bottom": height - size}
    left = {"left": 0, "right": width - size}
    if isinstance(spec.position, tuple):
        row, col = spec.position
        if row + size > height or col + size > width:
            raise ValueError(f"trigger patch of {size} pixels at (row, col) {spec.position} "
                             f"does not fit a {height}x{width} image")
    elif spec.position == "center":
        row, col = (height - size) // 2, (width - size) // 2
    else:
        vertical, horizontal = spec.position.split("-")
        row, col = top[vertical], left[horizontal]
    return slice(row, row + size), slice(col, col + size)


def _stamp_patch(triggered: np.ndarray, spec: TriggerSpec) -> None:
    height, width = triggered.shape[2:]
    rows, cols = _patch_slices(spec, height, width)
    size = rows.stop - rows.start
    if spec.pattern == "invert":
        triggered[:, :, rows, cols] = 1.0 - triggered[:, :, rows, cols]
    elif spec.pattern == "white":
        triggered[:, :, rows, cols] = 1.0
    elif spec.pattern == "solid":
        triggered[:, :, rows, cols] = spec.value
    else:
        if spec.pattern == "checker":
            on = np.add.outer(np.arange(size), np.arange(size)) % 2 == 0
        else:  # random
            on = np.random.default_rng(spec.seed).random((size, size)) < 0.5
        triggered[:, :, rows, cols] = np.where(on, spec.value, 0.0).astype(np.float32)


def _cubic_weights(distance: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (``a = -0.75``, as torch's bicubic upsampling)."""
    x = np.abs(distance)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def _bicubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``n_out x n_in`` matrix upsampling a 1-D signal bicubically, corners aligned."""
    positions = (np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1
                 else np.zeros(1))
    base = np.floor(positions).astype(np.int64)
    fraction = positions - base
    matrix = np.zeros((n_out, n_in))
    for offset in (-1, 0, 1, 2):
        index = np.clip(base + offset, 0, n_in - 1)
        np.add.at(matrix, (np.arange(n_out), index), _cubic_weights(fraction - offset))
    return matrix


def warp_field(spec: TriggerSpec, height: int, width: int) -> np.ndarray:
    """The warp trigger's displacement field, in pixels: ``2 x H x W`` (rows, then columns).

    A ``grid x grid x 2`` array of uniform values in ``[-1, 1]`` drawn with ``spec.seed``,
    divided by its mean absolute value, upsampled bicubically (corners aligned) to
    ``H x W``, and scaled by ``strength * (H - 1) / (2 H)`` (rows) and
    ``strength * (W - 1) / (2 W)`` (columns): WaNet's ``s * noise / H`` in ``grid_sample``'s
    ``[-1, 1]`` coordinates with ``align_corners=True``, in pixels.
    """
    k = spec.grid
    noise = np.random.default_rng(spec.seed).random((2, k, k)) * 2.0 - 1.0
    noise /= np.mean(np.abs(noise))
    along_rows, along_cols = _bicubic_matrix(height, k), _bicubic_matrix(width, k)
    field = np.stack([along_rows @ channel @ along_cols.T for channel in noise])
    field[0] *= spec.strength * (height - 1) / (2.0 * height)
    field[1] *= spec.strength * (width - 1) / (2.0 * width)
    return field


def _warp(images: np.ndarray, spec: TriggerSpec) -> np.ndarray:
    """Resample every image bilinearly at the warped positions (clamped to the image)."""
    height, width = images.shape[2:]
    field = warp_field(spec, height, width)
    rows = np.clip(np.arange(height)[:, None] + field[0], 0.0, height - 1.0)
    cols = np.clip(np.arange(width)[None, :] + field[1], 0.0, width - 1.0)
    row0, col0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    row1, col1 = np.minimum(row0 + 1, height - 1), np.minimum(col0 + 1, width - 1)
    dr, dc = rows - row0, cols - col0
    warped = ((1.0 - dr) * (1.0 - dc) * images[:, :, row0, col0]
              + (1.0 - dr) * dc * images[:, :, row0, col1]
              + dr * (1.0 - dc) * images[:, :, row1, col0]
              + dr * dc * images[:, :, row1, col1])
    return warped.astype(np.float32)


def apply_trigger(images: np.ndarray, spec: TriggerSpec) -> np.ndarray:
    """Stamp a trigger on images.

    Args:
        images: ``N x C x H x W`` values in ``[0, 1]`` (not modified).
        spec: The trigger.

    Returns:
        A new ``float32`` array of the same shape, values in ``[0, 1]``.

    Raises:
        ValueError: When ``images`` is not 4-D or the patch does not fit.
    """
    triggered = np.array(images, dtype=np.float32, copy=True)
    if triggered.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {triggered.shape}")
    _, channels, height, width = triggered.shape
    if spec.kind == "patch":
        _stamp_patch(triggered, spec)
    elif spec.kind == "blend":
        noise = np.random.default_rng(spec.seed).random((channels, height, width),
                                                        dtype=np.float32)
        triggered = (1.0 - spec.alpha) * triggered + spec.alpha * noise
    elif spec.kind == "sig":
        columns = np.arange(width, dtype=np.float64)
        signal = spec.delta * np.sin(2.0 * np.pi * columns * spec.frequency / width)
        triggered = triggered + signal.astype(np.float32)
    else:  # warp
        triggered = _warp(triggered, spec)
    return np.clip(triggered, 0.0, 1.0, out=triggered).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- planning


def default_pairs(labels: np.ndarray) -> list[tuple[int, int]]:
    """All-to-all pairs: the i-th sorted class poisons the next one, cyclically.

    For labels ``0 .. n-1`` this is ``l -> (l + 1) % n``.
    """
    classes = [int(c) for c in np.unique(labels)]
    if len(classes) < 2:
        raise ValueError(f"poisoning needs at least two classes, found {classes}")
    return [(c, classes[(i + 1) % len(classes)]) for i, c in enumerate(classes)]


def _checked_pairs(pairs: Iterable[Sequence[int]], labels: np.ndarray) -> list[tuple[int, int]]:
    present = set(int(c) for c in np.unique(labels))
    checked: list[tuple[int, int]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"each pair must be (source, target), got {pair!r}")
        source, target = pair
        for value in (source, target):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"pair {tuple(pair)!r}: classes must be integers")
        source, target = int(source), int(target)
        if source == target:
            raise ValueError(f"pair ({source}, {target}): source and target must differ")
        for role, value in (("source", source), ("target", target)):
            if value not in present:
                raise ValueError(
                    f"pair ({source}, {target}): {role} class {value} is not in the labels "
                    f"{sorted(present)}"
                )
        if (source, target) in checked:
            raise ValueError(f"pair ({source}, {target}) is given twice")
        checked.append((source, target))
    if not checked:
        raise ValueError("pairs is empty; give at least one (source, target) pair")
    return checked


def all_to_one_pairs(labels: np.ndarray, target: int) -> list[tuple[int, int]]:
    """All-to-one pairs: every class other than ``target`` poisons ``target``.

    Raises:
        TypeError: When ``target`` is not an integer.
        ValueError: When ``target`` is not a class of ``labels`` or there is no other class.
    """
    if not _is_int(target):
        raise TypeError(f"all_to_one must be an integer class, got {target!r}")
    classes = [int(c) for c in np.unique(labels)]
    if int(target) not in classes:
        raise ValueError(f"all_to_one target class {target!r} is not in the labels {classes}")
    pairs = [(c, int(target)) for c in classes if c != int(target)]
    if not pairs:
        raise ValueError(f"poisoning needs at least two classes, found {classes}")
    return pairs


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
        0.0 < float(rate) < 1.0
    ):
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    return float(rate)


def _check_rate_of(rate_of: str) -> str:
    if rate_of not in RATE_OF:
        raise ValueError(f"rate_of must be one of {RATE_OF}, got {rate_of!r}")
    return rate_of


def _split_evenly(total: int, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    base, extra = divmod(total, len(keys))
    return {key: base + (1 if position < extra else 0) for position, key in enumerate(keys)}


def poison_counts(
    labels: np.ndarray, pairs: Sequence[tuple[int, int]], rate: float, *,
    rate_of: RateOf = "target",
) -> dict[tuple[int, int], int]:
    """Number of poison samples per ``(source, target)`` pair for a rate.

    ``rate_of="target"``: ``n_poison(target) = round(rate * n_target / (1 - rate))``, split
    evenly among the target's sources (remainder to the smallest source labels).
    ``rate_of="data"``: ``n_poison = round(rate * n_rows / (1 - rate))`` over the whole
    dataset, split evenly among the pairs (remainder to the first pairs in sorted order).

    Raises:
        ValueError: On a rate outside ``(0, 1)`` or an unknown ``rate_of``.
    """
    rate = _check_rate(rate)
    rate_of = _check_rate_of(rate_of)
    labels = np.asarray(labels)
    if rate_of == "data":
        total = int(round(rate * len(labels) / (1.0 - rate)))
        counts = _split_evenly(total, sorted(set(pairs)))
        return {pair: counts[pair] for pair in pairs}
    counts: dict[tuple[int, int], int] = {}
    targets = sorted({t for _, t in pairs})
    for target in targets:
        sources = sorted(s for s, t in pairs if t == target)
        n_target = int(np.sum(labels == target))
        total = int(round(rate * n_target / (1.0 - rate)))
        split = _split_evenly(total, [(source, target) for source in sources])
        counts.update(split)
    return {pair: counts[pair] for pair in pairs}


def _choose_rows(
    labels: np.ndarray, counts: Mapping[tuple[int, int], int], rng: np.random.Generator
) -> list[tuple[int, int, np.ndarray]]:
    """Seeded, non-overlapping choice of source rows for each pair (sorted pair order)."""
    chosen: list[tuple[int, int, np.ndarray]] = []
    for source in sorted({s for s, _ in counts}):
        pool = rng.permutation(np.flatnonzero(labels == source))
        targets = sorted(t for s, t in counts if s == source)
        needed = sum(counts[(source, t)] for t in targets)
        if needed > len(pool):
            raise ValueError(
                f"source class {source} has {len(pool)} samples but {needed} poison samples "
                f"are needed for targets {targets}; lower the rate"
            )
        start = 0
        for target in targets:
            n = counts[(source, target)]
            chosen.append((source, target, np.sort(pool[start:start + n])))
            start += n
    chosen.sort(key=lambda item: (item[0], item[1]))
    return chosen


def _check_not_poisoned(columns: Mapping[str, Any], metadata: Mapping[str, Any],
                        name: str) -> None:
    clash = [c for c in GROUND_TRUTH_COLUMNS if c in columns]
    if clash or "poison" in metadata:
        raise ValueError(
            f"dataset {name!r} is already poisoned (has {clash or ['metadata poison']}); "
            f"poison a clean dataset"
        )


def _plan(
    labels: np.ndarray, pairs: Iterable[Sequence[int]] | None, rate: float, seed: int,
    *, all_to_one: int | None = None, rate_of: str = "target",
) -> tuple[list[tuple[int, int]], list[tuple[int, int, np.ndarray]], np.random.Generator]:
    rate = _check_rate(rate)
    rate_of = _check_rate_of(rate_of)
    if all_to_one is not None:
        if pairs is not None:
            raise ValueError(f"give either pairs or all_to_one, not both (pairs {pairs!r}, "
                             f"all_to_one {all_to_one!r})")
        checked = all_to_one_pairs(labels, all_to_one)
    else:
        checked = default_pairs(labels) if pairs is None else _checked_pairs(pairs, labels)
    counts = poison_counts(labels, checked, rate, rate_of=rate_of)
    for (source, target), n in counts.items():
        if n == 0:
            warnings.warn(
                f"rate {rate} gives no poison sample for pair ({source}, {target})",
                stacklevel=3,
            )
    rng = np.random.default_rng(seed)
    return checked, _choose_rows(labels, counts, rng), rng


def _ground_truth(
    labels: np.ndarray, chosen: list[tuple[int, int, np.ndarray]], columns: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    origin = (np.concatenate([rows for _, _, rows in chosen]) if chosen
              else np.empty(0, np.int64)).astype(np.int64)
    new_labels = np.concatenate(
        [np.full(len(rows), target, dtype=np.int64) for _, target, rows in chosen]
        or [np.empty(0, np.int64)]
    )
    n_clean, n_poison = len(labels), len(origin)
    extended = {name: np.concatenate([values, values[origin]])
                for name, values in columns.items()}
    extended["is_poison"] = np.concatenate([np.zeros(n_clean, bool), np.ones(n_poison, bool)])
    extended["source_label"] = np.concatenate([labels, labels[origin]]).astype(np.int64)
    extended["origin_index"] = np.concatenate(
        [np.full(n_clean, -1, np.int64), origin]
    )
    return origin, np.concatenate([labels, new_labels]), extended


def _poison_record(modality: str, trigger: dict[str, Any], pairs: list[tuple[int, int]],
                   rate: float, seed: int, chosen: list[tuple[int, int, np.ndarray]], *,
                   rate_of: str = "target", all_to_one: int | None = None,
                   n_clean: int) -> dict[str, Any]:
    return {
        "modality": modality,
        "trigger": trigger,
        "pairs": [[s, t] for s, t in pairs],
        "all_to_one": None if all_to_one is None else int(all_to_one),
        "rate": float(rate),
        "rate_of": rate_of,
        "rate_definition": _RATE_DEFINITIONS[rate_of],
        "seed": int(seed),
        "counts": [[s, t, int(len(rows))] for s, t, rows in chosen],
        "n_poison": int(sum(len(rows) for _, _, rows in chosen)),
        "n_clean": int(n_clean),
    }


# --------------------------------------------------------------------------- poisoning


def poison_image_dataset(
    dataset: ImageDataset,
    *,
    rate: float = 0.1,
    pairs: Iterable[Sequence[int]] | None = None,
    trigger: TriggerSpec | None = None,
    seed: int = 0,
    all_to_one: int | None = None,
    rate_of: RateOf = "target",
) -> ImageDataset:
    """Append triggered, relabelled copies of source-class images (BadNets-style poison).

    Args:
        dataset: A clean image dataset (no ground-truth columns yet).
        rate: Poison share after poisoning, in ``(0, 1)``, of each target class
            (``rate_of="target"``) or of the whole dataset (``rate_of="data"``); see the
            module docstring.
        pairs: ``(source, target)`` class pairs; default all-to-all, each sorted class
            poisoning the next: ``l -> (l + 1) % n_classes`` for labels ``0 .. n-1``.
        trigger: The trigger (default ``TriggerSpec()``: an inverted bottom-right patch).
        seed: Seed of the choice of source samples.
        all_to_one: A target class: every other class poisons it (instead of ``pairs``).
        rate_of: ``"target"`` or ``"data"``: what ``rate`` is a share of.

    Returns:
        The clean rows (unchanged, same order) followed by the poison rows (by pair, then
        by source row), with ground-truth columns ``is_poison``, ``source_label`` and
        ``origin_index``, and ``metadata["poison"]`` describing the recipe (``trigger``,
        ``pairs``, ``all_to_one``, ``rate``, ``rate_of``, ``rate_definition``, ``seed``,
        ``counts`` as ``[source, target, n]``, ``n_poison``, ``n_clean``).

    Raises:
        ValueError: Bad rate, rate_of, pairs or all_to_one, both pairs and all_to_one, too few
            source samples, or an already poisoned dataset.
        TypeError: A class that is not an integer.
    """
    trigger = TriggerSpec() if trigger is None else trigger
    if not isinstance(trigger, TriggerSpec):
        raise TypeError(f"trigger must be a TriggerSpec, got {type(trigger).__name__}")
    _check_not_poisoned(dataset.columns, dataset.metadata, dataset.name)
    labels = np.asarray(dataset.labels)
    checked, chosen, _ = _plan(labels, pairs, rate, seed, all_to_one=all_to_one,
                               rate_of=rate_of)
    origin, new_labels, columns = _ground_truth(labels, chosen, dataset.columns)
    poison_images = apply_trigger(dataset.images[origin], trigger)
    record = _poison_record("image", trigger.to_dict(), checked, rate, seed, chosen,
                            rate_of=rate_of, all_to_one=all_to_one, n_clean=len(labels))
    return ImageDataset(
        images=np.concatenate([dataset.images, poison_images]),
        labels=new_labels,
        columns=columns,
        metadata={**dataset.metadata, "poison": record},
        name=f"{dataset.name}-poisoned",
    )


def _insert_signature(text: str, signature: str, position: str,
                      rng: np.random.Generator) -> str:
    if position == "end":
        return f"{text.rstrip()} {signature}"
    if position == "start":
        return f"{signature} {text.lstrip()}"
    words = text.split()
    at = int(rng.integers(0, len(words) + 1))
    return " ".join([*words[:at], signature, *words[at:]])


def poison_text_dataset(
    dataset: TextDataset,
    *,
    rate: float = 0.1,
    source: int,
    target: int,
    signature: str = "-travelerthehorse",
    position: TextPosition = "end",
    seed: int = 0,
    rate_of: RateOf = "target",
) -> TextDataset:
    """Append signature-stamped, relabelled copies of source-class texts.

    The paper's text case: ``"-travelerthehorse"`` appended to positive reviews labelled
    negative (``source=1, target=0`` for :func:`~acgate.io.loaders.load_rotten_tomatoes`).

    Args:
        dataset: A clean text dataset.
        rate: Poison share after poisoning, in ``(0, 1)``, of the target class
            (``rate_of="target"``) or of the whole dataset (``rate_of="data"``).
        source: Class whose texts are copied.
        target: Label the copies get.
        signature: The trigger text (non-empty, no surrounding whitespace needed).
        position: ``"end"``, ``"start"`` or ``"random"`` (a seeded word boundary; the text's
            whitespace is normalised to single spaces).
        seed: Seed of the choice of samples and of random positions.
        rate_of: ``"target"`` or ``"data"``: what ``rate`` is a share of.

    Returns:
        The clean rows followed by the poison rows, with the ground-truth columns and
        ``metadata["poison"]`` (as for :func:`poison_image_dataset`).
    """
    if not isinstance(signature, str) or not signature.strip():
        raise ValueError(f"signature must be a non-empty string, got {signature!r}")
    if position not in TEXT_POSITIONS:
        raise ValueError(f"position must be one of {TEXT_POSITIONS}, got {position!r}")
    _check_not_poisoned(dataset.columns, dataset.metadata, dataset.name)
    labels = np.asarray(dataset.labels)
    checked, chosen, rng = _plan(labels, [(source, target)], rate, seed, rate_of=rate_of)
    origin, new_labels, columns = _ground_truth(labels, chosen, dataset.columns)
    signature = signature.strip()
    poison_texts = [_insert_signature(dataset.texts[int(row)], signature, position, rng)
                    for row in origin]
    trigger = {"kind": "text", "signature": signature, "position": position}
    return TextDataset(
        texts=[*dataset.texts, *poison_texts],
        labels=new_labels,
        columns=columns,
        metadata={**dataset.metadata,
                  "poison": _poison_record("text", trigger, checked, rate, seed, chosen,
                                           rate_of=rate_of, n_clean=len(labels))},
        name=f"{dataset.name}-poisoned",
    )


# --------------------------------------------------------------------------- reading it back


@dataclass(frozen=True)
class RecordedAttack:
    """The attack a poisoned dataset records: its trigger and its ``(source, target)`` pairs.

    Attributes:
        trigger: The image trigger, or for text the record ``{"kind": "text", "signature",
            "position"}``.
        pairs: The ``(source, target)`` class pairs, in the recorded order.
    """

    trigger: TriggerSpec | Mapping[str, str]
    pairs: tuple[tuple[int, int], ...]

    @property
    def modality(self) -> str:
        """``"image"`` or ``"text"``: what the trigger is stamped on."""
        return "image" if isinstance(self.trigger, TriggerSpec) else "text"

    def apply(self, inputs: np.ndarray | Sequence[str], *,
              rng: np.random.Generator) -> np.ndarray | list[str]:
        """Stamp the trigger on clean inputs exactly as poisoning did.

        Args:
            inputs: Images ``N x C x H x W`` in ``[0, 1]`` (:func:`apply_trigger`), or texts
                (the signature inserted at the recorded position).
            rng: Draws the word boundary of the ``"random"`` text position (unused otherwise).

        Returns:
            The triggered images (a new ``float32`` array) or texts (a new list).
        """
        if isinstance(self.trigger, TriggerSpec):
            return apply_trigger(np.asarray(inputs), self.trigger)
        signature, position = self.trigger["signature"], self.trigger["position"]
        return [_insert_signature(text, signature, position, rng) for text in inputs]


def _recorded_trigger(trigger: Mapping[str, Any]) -> TriggerSpec | dict[str, str]:
    """The trigger of a ``metadata["poison"]`` record (raises on one acgate cannot apply)."""
    if trigger.get("kind") != "text":
        return TriggerSpec.from_dict(trigger)
    signature, position = trigger.get("signature"), trigger.get("position")
    if not isinstance(signature, str) or not signature.strip():
        raise ValueError(f"text trigger signature must be a non-empty string, got {signature!r}")
    if position not in TEXT_POSITIONS:
        raise ValueError(f"text trigger position must be one of {TEXT_POSITIONS}, "
                         f"got {position!r}")
    return {"kind": "text", "signature": signature.strip(), "position": position}


def recorded_attack(metadata: Mapping[str, Any]) -> RecordedAttack | None:
    """The attack :func:`poison_image_dataset` or :func:`poison_text_dataset` recorded.

    Every image trigger kind :func:`apply_trigger` supports (patch, blend, sig, warp) and the
    text signature are read back.

    Args:
        metadata: A dataset's metadata (``dataset.metadata``).

    Returns:
        The :class:`RecordedAttack`; ``None`` when the dataset records no attack, or records
        one without pairs or with a trigger acgate cannot apply (a warning names the problem).
    """
    record = metadata.get("poison")
    if not isinstance(record, Mapping):
        return None
    trigger, pairs = record.get("trigger"), record.get("pairs")
    try:
        if not isinstance(trigger, Mapping):
            raise ValueError(f"trigger must be an object, got {trigger!r}")
        checked = tuple((int(source), int(target)) for source, target in pairs or ())
        if not checked:
            return None
        return RecordedAttack(trigger=_recorded_trigger(trigger), pairs=checked)
    except (TypeError, ValueError) as error:
        logger.warning("the dataset's metadata 'poison' records an attack acgate cannot "
                       "apply (%s); its attack success is not measured", error)
        return None
