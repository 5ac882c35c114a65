"""Model quality numbers for a backdoor experiment: clean accuracy and attack success rate."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from torch import nn

from acgate.torch._arrays import as_label_tensor
from acgate.torch.train import accuracy, predict


def clean_accuracy(
    model: nn.Module, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 256
) -> float:
    """Share of clean ``inputs`` classified as their true ``labels`` (eval mode)."""
    return accuracy(model, inputs, labels, batch_size)


def attack_success_rate(
    model: nn.Module,
    triggered_inputs: np.ndarray,
    target_labels: np.ndarray | int,
    batch_size: int = 256,
) -> float:
    """Share of triggered inputs the model classifies as the attacker's target.

    Pass triggered versions of samples whose true class is *not* the target (otherwise a
    correct prediction counts as a successful attack).

    Args:
        model: Model returning ``N x n_classes`` logits.
        triggered_inputs: Inputs with the trigger applied, ``N x ...``.
        target_labels: The target class per input (int ``N``), or one int for all.
        batch_size: Samples per forward pass.

    Returns:
        The attack success rate in ``[0, 1]``.
    """
    predictions = predict(model, triggered_inputs, batch_size)
    targets = np.asarray(target_labels)
    if targets.ndim == 0:
        targets = np.full(len(predictions), targets)
    targets = as_label_tensor(targets, len(predictions), None).numpy()
    return float(np.mean(predictions == targets))


def attack_success_by_pair(
    model: nn.Module,
    triggered: Iterable[tuple[int, int, np.ndarray]],
    batch_size: int = 256,
) -> dict[str, Any]:
    """Attack success rate per ``(source, target)`` pair and pooled over the pairs.

    Args:
        model: Model returning ``N x n_classes`` logits.
        triggered: Per pair ``(source, target, inputs)``: triggered inputs of samples whose
            true class is ``source`` (may be empty).
        batch_size: Samples per forward pass.

    Returns:
        ``{"attack_success_rate" (pooled: the share of all triggered inputs classified as their
        pair's target; ``None`` when there are none), "n_triggered", "per_pair": [{"source",
        "target", "n", "attack_success_rate" (``None`` for an empty pair)}]}``.
    """
    per_pair = []
    hits = total = 0
    for source, target, inputs in triggered:
        n = len(inputs)
        rate = attack_success_rate(model, inputs, int(target), batch_size) if n else None
        per_pair.append({"source": int(source), "target": int(target), "n": int(n),
                         "attack_success_rate": rate})
        if rate is not None:
            hits += int(round(rate * n))
            total += n
    return {"attack_success_rate": hits / total if total else None, "n_triggered": int(total),
            "per_pair": per_pair}
