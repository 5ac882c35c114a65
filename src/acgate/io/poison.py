"""Backdoor poisoning of a clean dataset, with ground truth, for tests and benchmarks.

Following Chen et al. (2018), poison is made by taking samples of a *source* class, stamping
a trigger on them, labelling them as the *target* class and **appending** them to the data.

Poison rate
    ``rate`` is the share of poison in each target class *after* poisoning:
    ``n_poison = round(rate * n_target / (1 - rate))`` where ``n_target`` is the number of
    clean samples of the target class, so that ``n_poison / (n_target + n_poison) ≈ rate``.
    When several sources feed one target, the target's ``n_poison`` is split evenly among
    them (the remainder goes to the smallest source labels). A source feeding several
    targets gives each of them different samples.

The output carries the ground truth as columns — ``is_poison`` (bool), ``source_label``
(the true class: the label for clean rows) and ``origin_index`` (row the poison was copied
from, ``-1`` for clean rows) — and the recipe (trigger, pairs, rate, seed, counts) in
``metadata["poison"]``, which Parquet stores as the ``acgate.poison`` JSON entry.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from acgate.io.datasets import ImageDataset, TextDataset

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "TriggerSpec",
    "apply_trigger",
    "default_pairs",
    "poison_counts",
    "poison_image_dataset",
    "poison_text_dataset",
]

TriggerKind = Literal["patch", "blend"]
Position = Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"]
Pattern = Literal["invert", "white", "checker"]
TextPosition = Literal["end", "start", "random"]

TRIGGER_KINDS: tuple[str, ...] = ("patch", "blend")
POSITIONS: tuple[str, ...] = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATTERNS: tuple[str, ...] = ("invert", "white", "checker")
TEXT_POSITIONS: tuple[str, ...] = ("end", "start", "random")
#: Columns a poisoned dataset gains.
GROUND_TRUTH_COLUMNS = ("is_poison", "source_label", "origin_index")
_RATE_DEFINITION = (
    "share of poison in each target class after poisoning: "
    "n_poison = round(rate * n_target / (1 - rate)), split evenly among the target's sources"
)


@dataclass(frozen=True)
class TriggerSpec:
    """An image trigger.

    Attributes:
        kind: ``"patch"`` (a square stamped in a corner, BadNets-style; the paper's MNIST
            trigger is an inverted bottom-right patch) or ``"blend"`` (a seeded noise image
            blended over the whole image).
        size: Patch side in pixels; ``None`` scales with the image:
            ``max(2, round(min(H, W) / 7))`` — 2 for 8x8, 4 for 28x28, 5 for 32x32.
        position: Patch corner (``"bottom-right"``, ``"bottom-left"``, ``"top-right"``,
            ``"top-left"``) or ``"center"``.
        pattern: Patch content: ``"invert"`` (``1 - x``), ``"white"`` (1) or ``"checker"``
            (alternating 1 and 0, 1 in the patch's top-left pixel).
        alpha: Blend weight of the noise: ``x' = (1 - alpha) x + alpha * noise``.
        seed: Seed of the blend noise (one noise image, shared by every poisoned sample).
    """

    kind: TriggerKind = "patch"
    size: int | None = None
    position: Position = "bottom-right"
    pattern: Pattern = "invert"
    alpha: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:  # noqa: D105
        if self.kind not in TRIGGER_KINDS:
            raise ValueError(f"TriggerSpec.kind must be one of {TRIGGER_KINDS}, got {self.kind!r}")
        if self.position not in POSITIONS:
            raise ValueError(
                f"TriggerSpec.position must be one of {POSITIONS}, got {self.position!r}"
            )
        if self.pattern not in PATTERNS:
            raise ValueError(
                f"TriggerSpec.pattern must be one of {PATTERNS}, got {self.pattern!r}"
            )
        if self.size is not None and (
            isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer))
            or self.size < 1
        ):
            raise ValueError(f"TriggerSpec.size must be a positive integer or None, "
                             f"got {self.size!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (
            0.0 < float(self.alpha) <= 1.0
        ):
            raise ValueError(f"TriggerSpec.alpha must be in (0, 1], got {self.alpha!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"TriggerSpec.seed must be an integer, got {self.seed!r}")
        if self.size is not None:
            object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "seed", int(self.seed))

    def patch_size(self, height: int, width: int) -> int:
        """Patch side for an ``H x W`` image (``size``, or the scaled default)."""
        if self.size is not None:
            return self.size
        return max(2, round(min(height, width) / 7))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TriggerSpec:
        """Build a spec from :meth:`to_dict` output.

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
    if spec.position == "center":
        row, col = (height - size) // 2, (width - size) // 2
    else:
        vertical, horizontal = spec.position.split("-")
        row, col = top[vertical], left[horizontal]
    return slice(row, row + size), slice(col, col + size)


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
        rows, cols = _patch_slices(spec, height, width)
        region = triggered[:, :, rows, cols]
        if spec.pattern == "invert":
            triggered[:, :, rows, cols] = 1.0 - region
        elif spec.pattern == "white":
            triggered[:, :, rows, cols] = 1.0
        else:
            size = rows.stop - rows.start
            checker = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0)
            triggered[:, :, rows, cols] = checker.astype(np.float32)
    else:
        noise = np.random.default_rng(spec.seed).random((channels, height, width),
                                                        dtype=np.float32)
        triggered = (1.0 - spec.alpha) * triggered + spec.alpha * noise
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


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
        0.0 < float(rate) < 1.0
    ):
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    return float(rate)


def poison_counts(
    labels: np.ndarray, pairs: Sequence[tuple[int, int]], rate: float
) -> dict[tuple[int, int], int]:
    """Number of poison samples per ``(source, target)`` pair for a rate.

    ``n_poison(target) = round(rate * n_target / (1 - rate))``, split evenly among the
    target's sources (remainder to the smallest source labels).
    """
    rate = _check_rate(rate)
    labels = np.asarray(labels)
    counts: dict[tuple[int, int], int] = {}
    targets = sorted({t for _, t in pairs})
    for target in targets:
        sources = sorted(s for s, t in pairs if t == target)
        n_target = int(np.sum(labels == target))
        total = int(round(rate * n_target / (1.0 - rate)))
        base, extra = divmod(total, len(sources))
        for position, source in enumerate(sources):
            counts[(source, target)] = base + (1 if position < extra else 0)
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
    labels: np.ndarray, pairs: Iterable[Sequence[int]] | None, rate: float, seed: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int, np.ndarray]], np.random.Generator]:
    rate = _check_rate(rate)
    checked = default_pairs(labels) if pairs is None else _checked_pairs(pairs, labels)
    counts = poison_counts(labels, checked, rate)
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
                   rate: float, seed: int,
                   chosen: list[tuple[int, int, np.ndarray]]) -> dict[str, Any]:
    return {
        "modality": modality,
        "trigger": trigger,
        "pairs": [[s, t] for s, t in pairs],
        "rate": float(rate),
        "rate_definition": _RATE_DEFINITION,
        "seed": int(seed),
        "counts": [[s, t, int(len(rows))] for s, t, rows in chosen],
        "n_poison": int(sum(len(rows) for _, _, rows in chosen)),
    }


# --------------------------------------------------------------------------- poisoning


def poison_image_dataset(
    dataset: ImageDataset,
    *,
    rate: float = 0.1,
    pairs: Iterable[Sequence[int]] | None = None,
    trigger: TriggerSpec | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Append triggered, relabelled copies of source-class images (BadNets-style poison).

    Args:
        dataset: A clean image dataset (no ground-truth columns yet).
        rate: Poison share of each target class after poisoning, in ``(0, 1)`` (see the
            module docstring).
        pairs: ``(source, target)`` class pairs; default all-to-all, each sorted class
            poisoning the next: ``l -> (l + 1) % n_classes`` for labels ``0 .. n-1``.
        trigger: The trigger (default ``TriggerSpec()``: an inverted bottom-right patch).
        seed: Seed of the choice of source samples.

    Returns:
        The clean rows (unchanged, same order) followed by the poison rows (by pair, then
        by source row), with ground-truth columns ``is_poison``, ``source_label`` and
        ``origin_index``, and ``metadata["poison"]`` describing the recipe.

    Raises:
        ValueError: Bad rate or pairs, too few source samples, or an already poisoned dataset.
    """
    trigger = TriggerSpec() if trigger is None else trigger
    _check_not_poisoned(dataset.columns, dataset.metadata, dataset.name)
    labels = np.asarray(dataset.labels)
    checked, chosen, _ = _plan(labels, pairs, rate, seed)
    origin, new_labels, columns = _ground_truth(labels, chosen, dataset.columns)
    poison_images = apply_trigger(dataset.images[origin], trigger)
    record = _poison_record("image", trigger.to_dict(), checked, rate, seed, chosen)
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
) -> TextDataset:
    """Append signature-stamped, relabelled copies of source-class texts.

    The paper's text case: ``"-travelerthehorse"`` appended to positive reviews labelled
    negative (``source=1, target=0`` for :func:`~acgate.io.loaders.load_rotten_tomatoes`).

    Args:
        dataset: A clean text dataset.
        rate: Poison share of the target class after poisoning, in ``(0, 1)``.
        source: Class whose texts are copied.
        target: Label the copies get.
        signature: The trigger text (non-empty, no surrounding whitespace needed).
        position: ``"end"``, ``"start"`` or ``"random"`` (a seeded word boundary; the text's
            whitespace is normalised to single spaces).
        seed: Seed of the choice of samples and of random positions.

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
    checked, chosen, rng = _plan(labels, [(source, target)], rate, seed)
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
                  "poison": _poison_record("text", trigger, checked, rate, seed, chosen)},
        name=f"{dataset.name}-poisoned",
    )
