"""Seeded, deterministic training and prediction on numpy arrays.

Inputs are numpy arrays: images float32 ``N x C x H x W`` in ``[0, 1]``, flat features
``N x D`` float, or token ids ``N x L`` int64; labels int64 ``N``. Training uses Adam and
cross-entropy; the batch order comes from a :class:`torch.Generator` seeded with ``seed`` and
dropout draws from torch's global RNG seeded with ``seed`` inside :func:`torch.random.fork_rng`,
so the caller's global RNG state is left untouched. Build the model with :func:`seeded_model`
to seed its initial weights too: the same seed then gives bit-identical weights on CPU (with the
same torch version and thread count; a different ``torch.get_num_threads()`` may change the
order of floating-point sums).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from acgate.torch._arrays import (
    as_input_tensor,
    as_label_tensor,
    as_weight_tensor,
    model_device,
    output_width,
    positive_int,
)

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=nn.Module)


@dataclass(frozen=True)
class TrainStats:
    """What a training run did.

    Attributes:
        epochs: Epochs run.
        final_loss: Mean (sample-weighted) training loss of the last epoch.
        train_accuracy: Share of training samples classified correctly during the last epoch
            (in train mode, as each batch was trained on: no extra pass over the data; call
            :func:`accuracy` for the eval-mode accuracy of the final weights).
        seconds: Wall-clock seconds.
    """

    epochs: int
    final_loss: float
    train_accuracy: float
    seconds: float


@dataclass(frozen=True)
class FineTuneStats(TrainStats):
    """What :func:`fine_tune` did: :class:`TrainStats` plus whether the loss converged.

    Attributes:
        converged: ``True`` when training stopped because the loss settled, ``False`` when it
            ran out of ``max_epochs``.
    """

    converged: bool


def seeded_model(factory: Callable[[], ModelT], seed: int) -> ModelT:
    """Build a model with ``torch.manual_seed(seed)`` in force, leaving the global RNG as it was.

    Args:
        factory: Called with no arguments; returns the freshly initialised model.
        seed: Seed for the initial weights.

    Returns:
        The model; the same ``factory`` and ``seed`` give identical initial weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _logits_batches(
    model: nn.Module, inputs: torch.Tensor, batch_size: int
) -> Iterator[torch.Tensor]:
    """Yield the model's logits for ``inputs`` batch by batch, without gradients, on CPU."""
    device = model_device(model)
    with _eval_mode(model), torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size].to(device))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise TypeError(
                    "the model must return an N x n_classes tensor of logits, got "
                    f"{getattr(logits, 'shape', type(logits).__name__)}"
                )
            yield logits.float().cpu()


def predict_proba(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class probabilities (softmax of the logits), in eval mode.

    Args:
        model: Model returning ``N x n_classes`` logits.
        inputs: Model inputs, ``N x ...``.
        batch_size: Samples per forward pass.

    Returns:
        float32 array ``N x n_classes``; rows sum to 1.
    """
    batch_size = positive_int(batch_size, "batch_size")
    tensor = as_input_tensor(inputs)
    parts = [torch.softmax(logits, dim=1) for logits in _logits_batches(model, tensor, batch_size)]
    return torch.cat(parts).numpy()


def predict(model: nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted classes (argmax of the logits), int64 array ``N``, in eval mode."""
    batch_size = positive_int(batch_size, "batch_size")
    tensor = as_input_tensor(inputs)
    parts = [logits.argmax(dim=1) for logits in _logits_batches(model, tensor, batch_size)]
    return torch.cat(parts).numpy()


def accuracy(
    model: nn.Module, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 256
) -> float:
    """Share of ``inputs`` the model classifies as ``labels`` (eval mode)."""
    predictions = predict(model, inputs, batch_size)
    labels = as_label_tensor(labels, len(predictions), None).numpy()
    return float(np.mean(predictions == labels))


def _run_epochs(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    max_epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool,
    sample_weight: Any,
    should_stop: Callable[[list[float]], bool] | None,
    description: str,
) -> tuple[list[float], float]:
    """Train with Adam for up to ``max_epochs``; return the epoch losses and last-epoch accuracy."""
    max_epochs = positive_int(max_epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    x = as_input_tensor(inputs)
    y = as_label_tensor(labels, len(x), output_width(model))
    weights = None if sample_weight is None else as_weight_tensor(sample_weight, len(x))
    device = model_device(model)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    losses: list[float] = []
    n_correct = 0
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(int(seed))  # dropout and other in-model randomness
            bar = tqdm(
                range(max_epochs),
                desc=description,
                unit="epoch",
                disable=not progress,
                file=sys.stderr,
                leave=False,
            )
            for epoch in bar:
                order = torch.randperm(len(x), generator=generator)
                loss_sum = 0.0
                weight_sum = 0.0
                n_correct = 0
                for start in range(0, len(x), batch_size):
                    index = order[start : start + batch_size]
                    targets = y[index].to(device)
                    logits = model(x[index].to(device))
                    per_sample = F.cross_entropy(logits, targets, reduction="none")
                    n_correct += int((logits.detach().argmax(dim=1) == targets).sum())
                    if weights is None:
                        batch_weight = torch.ones_like(per_sample)
                    else:
                        batch_weight = weights[index].to(device)
                    total_weight = float(batch_weight.sum())
                    if total_weight == 0.0:
                        continue
                    loss = (per_sample * batch_weight).sum() / total_weight
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += float(loss.detach()) * total_weight
                    weight_sum += total_weight
                epoch_loss = loss_sum / weight_sum
                if not math.isfinite(epoch_loss):
                    raise ValueError(
                        f"training diverged: loss is {epoch_loss} in epoch {epoch + 1} "
                        f"(lr={lr}); lower lr or check the inputs' scale"
                    )
                losses.append(epoch_loss)
                bar.set_postfix(loss=f"{epoch_loss:.4f}")
                logger.debug("%s epoch %d: loss %.5f", description, epoch + 1, epoch_loss)
                if should_stop is not None and should_stop(losses):
                    break
            bar.close()
    finally:
        model.train(was_training)
    return losses, n_correct / len(x)


def train_model(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    sample_weight: np.ndarray | None = None,
) -> TrainStats:
    """Train ``model`` in place with Adam on cross-entropy, for exactly ``epochs`` epochs.

    Args:
        model: Model returning ``N x n_classes`` logits; trained on the device it sits on.
        inputs: Model inputs ``N x ...`` (float images/features, or int64 token ids).
        labels: int labels ``N`` in ``[0, n_classes)``.
        epochs: Passes over the data (>= 1).
        batch_size: Samples per step. Default 64.
        lr: Adam learning rate. Default 1e-3.
        weight_decay: Adam weight decay. Default 0.
        seed: Seeds the shuffling and in-model randomness (dropout). Default 0.
        progress: Show a tqdm bar on stderr.
        sample_weight: Optional per-sample loss weights ``N`` (>= 0); each batch's loss is the
            weighted mean.

    Returns:
        :class:`TrainStats`.

    Raises:
        ValueError: Bad shapes, labels out of the model's range, bad hyper-parameters, or a loss
            that became NaN/infinite.
        TypeError: Inputs or labels of the wrong type.
    """
    started = time.perf_counter()
    losses, train_accuracy = _run_epochs(
        model,
        inputs,
        labels,
        max_epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        progress=progress,
        sample_weight=sample_weight,
        should_stop=None,
        description="train",
    )
    stats = TrainStats(
        epochs=len(losses),
        final_loss=losses[-1],
        train_accuracy=train_accuracy,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "trained %d epochs on %d samples: loss %.4f, train accuracy %.4f, %.1f s",
        stats.epochs,
        len(inputs),
        stats.final_loss,
        stats.train_accuracy,
        stats.seconds,
    )
    return stats


def fine_tune(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    max_epochs: int,
    tol: float = 1e-3,
    patience: int = 2,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    sample_weight: np.ndarray | None = None,
) -> FineTuneStats:
    """Continue training ``model`` until the epoch loss settles, or ``max_epochs``.

    This is the paper's fast repair: relabel the flagged samples with their source class and
    keep training until convergence. Training stops once the mean epoch loss changed by less than
    ``tol`` (absolute) for ``patience`` epochs in a row.

    Args:
        model: Trained model to continue training in place.
        inputs: Model inputs ``N x ...``.
        labels: int labels ``N``.
        max_epochs: Upper bound on epochs (>= 1).
        tol: Loss change below which an epoch counts as settled. Default 1e-3.
        patience: Settled epochs in a row needed to stop. Default 2.
        batch_size: Samples per step. Default 64.
        lr: Adam learning rate (a fresh optimizer). Default 1e-3.
        weight_decay: Adam weight decay. Default 0.
        seed: Seeds the shuffling and dropout. Default 0.
        progress: Show a tqdm bar on stderr.
        sample_weight: Optional per-sample loss weights ``N``.

    Returns:
        :class:`FineTuneStats`; ``epochs`` is the number of epochs used.
    """
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    patience = positive_int(patience, "patience")

    def settled(losses: list[float]) -> bool:
        if len(losses) <= patience:
            return False
        recent = np.abs(np.diff(losses[-(patience + 1) :]))
        return bool((recent < tol).all())

    started = time.perf_counter()
    losses, train_accuracy = _run_epochs(
        model,
        inputs,
        labels,
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        progress=progress,
        sample_weight=sample_weight,
        should_stop=settled,
        description="fine-tune",
    )
    stats = FineTuneStats(
        epochs=len(losses),
        final_loss=losses[-1],
        train_accuracy=train_accuracy,
        seconds=time.perf_counter() - started,
        converged=settled(losses),
    )
    logger.info(
        "fine-tuned %d epochs (%s): loss %.4f, train accuracy %.4f",
        stats.epochs,
        "converged" if stats.converged else "max_epochs reached",
        stats.final_loss,
        stats.train_accuracy,
    )
    return stats
