"""Forward-hook extraction of the last hidden layer's activations.

Activation Clustering (Chen et al. 2018) clusters the activations of the **last hidden layer**,
flattened per sample. In a PyTorch classifier that is the *input* of the final ``nn.Linear``, not
its output (the logits) — the mistake the reference implementation makes on PyTorch. By default
:func:`iter_activations` hooks the final ``nn.Linear`` in ``named_modules()`` order and captures
its input; a user-named layer is captured at its output unless ``capture="input"`` is given.

Every forward pass runs under :func:`torch.no_grad` in eval mode; the hook is registered and
removed around each batch (``try``/``finally``), and the model's train/eval mode is restored, so
an abandoned iterator leaves neither a hook nor a changed model behind.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from acgate.io.shards import EXTRACT_BATCH_ROWS
from acgate.torch._arrays import as_input_tensor, is_linear, model_device, positive_int

logger = logging.getLogger(__name__)

Capture = Literal["input", "output"]
_CAPTURES = ("input", "output")


def last_hidden_layer_name(model: nn.Module) -> str:
    """Name of the final ``nn.Linear`` in ``model.named_modules()`` order.

    Its input is the last hidden representation. The models in :mod:`acgate.torch.models`
    register their output layer last; for your own model check that ``named_modules()`` order
    matches the forward order, or name the layer explicitly.

    Raises:
        ValueError: The model has no ``nn.Linear``; the message lists the module names.
    """
    name = None
    for module_name, module in model.named_modules():
        if is_linear(module):
            name = module_name
    if name is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear module to take the last hidden layer from; "
            f"name the layer with layer=... (available modules: {_module_names(model)})"
        )
    return name


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _resolve_layer(
    model: nn.Module, layer: str | None, capture: Capture | None
) -> tuple[str, nn.Module, Capture]:
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            "forward hooks never fire inside a TorchScript model, so its activations cannot be "
            "captured; load its weights into the eager class with "
            "acgate.torch.byo.load_model(path, module='package.module:ClassName')"
        )
    modules = dict(model.named_modules())
    if layer is None:
        layer = last_hidden_layer_name(model)
        default_capture: Capture = "input"
    else:
        if not isinstance(layer, str) or layer not in modules:
            raise ValueError(
                f"model {type(model).__name__} has no module named {layer!r}; "
                f"available modules: {_module_names(model)}"
            )
        default_capture = "output"
    if capture is None:
        capture = default_capture
    if capture not in _CAPTURES:
        raise ValueError(f"capture must be one of {_CAPTURES}, got {capture!r}")
    if capture == "output" and layer == last_hidden_layer_name(model):
        warnings.warn(
            f"capturing the output of {layer!r}, the final nn.Linear: these are the logits, not "
            "the last hidden layer Activation Clustering expects (use capture='input')",
            stacklevel=3,
        )
    return layer, modules[layer], capture


def _forward_one_batch(
    model: nn.Module, module: nn.Module, layer: str, capture: Capture, batch: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    captured: list[Any] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if capture == "output":
            captured.append(output)
        else:  # the first positional input (None when the layer was called with keywords only)
            captured.append(args[0] if args else None)

    was_training = model.training
    handle = module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.no_grad():
            logits = model(batch.to(model_device(model)))
    finally:
        handle.remove()
        model.train(was_training)
    if len(captured) != 1:
        raise ValueError(
            f"layer {layer!r} ran {len(captured)} times in one forward pass; it must run exactly "
            "once to give one activation per sample"
        )
    value = captured[0]
    if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != len(batch):
        raise ValueError(
            f"the {capture} of layer {layer!r} is not a tensor with one row per sample "
            f"(got {getattr(value, 'shape', type(value).__name__)} for a batch of {len(batch)})"
        )
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise TypeError(
            "the model must return an N x n_classes tensor of logits, got "
            f"{getattr(logits, 'shape', type(logits).__name__)}"
        )
    activations = value.detach().reshape(len(batch), -1).to("cpu", torch.float32).numpy().copy()
    predictions = logits.argmax(dim=1).cpu().numpy().astype(np.int64)
    return activations, predictions


def iter_activations(
    model: nn.Module,
    inputs: np.ndarray,
    *,
    layer: str | None = None,
    capture: Capture | None = None,
    batch_size: int = EXTRACT_BATCH_ROWS,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(activations, predictions)`` batch by batch.

    Args:
        model: An eager PyTorch model returning ``N x n_classes`` logits.
        inputs: Model inputs ``N x ...`` (float images/features or int64 token ids).
        layer: Module name (as in ``named_modules()``) to hook. Default: the final ``nn.Linear``
            (:func:`last_hidden_layer_name`).
        capture: ``"input"`` or ``"output"`` of ``layer``. Default: ``"input"`` when ``layer``
            is ``None`` (the last hidden layer), ``"output"`` for a named layer.
        batch_size: Samples per forward pass. Default 256 (:data:`EXTRACT_BATCH_ROWS`: the
            pipeline's row shards are multiples of it, so they see the batches of one pass).

    Yields:
        float32 activations ``B x D`` (flattened per sample) and int64 predicted classes ``B``.

    Raises:
        ValueError: Unknown layer name (the message lists the available modules), a layer that
            does not run exactly once per forward pass, or bad inputs.
        TypeError: A TorchScript model (hooks do not fire inside it), or bad input types.
    """
    name, module, capture = _resolve_layer(model, layer, capture)
    batch_size = positive_int(batch_size, "batch_size")
    tensor = as_input_tensor(inputs)
    logger.debug("extracting the %s of layer %r for %d samples", capture, name, len(tensor))
    return (
        _forward_one_batch(model, module, name, capture, tensor[start : start + batch_size])
        for start in range(0, len(tensor), batch_size)
    )


def extract_activations(
    model: nn.Module,
    inputs: np.ndarray,
    *,
    layer: str | None = None,
    capture: Capture | None = None,
    batch_size: int = EXTRACT_BATCH_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Activations and predictions for all ``inputs``; see :func:`iter_activations`.

    Returns:
        ``(activations, predictions)``: float32 ``N x D`` and int64 ``N``, in input order.
    """
    parts = list(
        iter_activations(model, inputs, layer=layer, capture=capture, batch_size=batch_size)
    )
    return (
        np.concatenate([activations for activations, _ in parts]),
        np.concatenate([predictions for _, predictions in parts]),
    )
