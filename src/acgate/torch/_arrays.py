"""Shared input checks and numpy -> torch conversion for the torch adapter (private)."""

from __future__ import annotations

import os
import platform
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Linear`` (eager, or a TorchScript-compiled one)."""
    return isinstance(module, nn.Linear) or (
        isinstance(module, torch.jit.ScriptModule)
        and getattr(module, "original_name", None) == "Linear"
    )


def output_width(model: nn.Module) -> int | None:
    """``out_features`` of the last ``nn.Linear`` in ``named_modules()`` order, if any."""
    width = None
    for _, module in model.named_modules():
        if is_linear(module):
            width = getattr(module, "out_features", None)
    return int(width) if width is not None else None


def resolve_device(name: str) -> torch.device:
    """The torch device of a ``device`` setting: ``auto`` is CUDA when available, else the CPU.

    ``cuda`` is the current CUDA device (choose one with ``CUDA_VISIBLE_DEVICES``). On CUDA,
    torch is asked for deterministic algorithms (cuDNN's included; ops without one warn), so a
    seed gives the same run twice on the same GPU; its numbers may still differ from the CPU's.

    Raises:
        ValueError: A name not in :data:`acgate.scan.DEVICES`, or ``cuda`` on a machine where
            torch sees no CUDA device.
    """
    from acgate.scan import DEVICES

    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device here "
                         f"(torch {torch.__version__}, built for CUDA: "
                         f"{torch.version.cuda or 'no'}); use --device auto or cpu")
    if name == "cpu" or not available:
        return torch.device("cpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device("cuda")


def device_hardware(device: torch.device) -> str:
    """The hardware behind ``device``, as a scan records it: a GPU's name, else the CPU's model.

    The CPU path is deterministic on one machine, but another CPU model (other kernels) gives
    weights that differ in the last digits, and a verdict near a cut can move with them
    (``bench/RESULTS.md`` "attack_matrix", variant ``amd``): the record says which machine
    reached it. The CPU's model comes from ``/proc/cpuinfo`` on Linux, else
    :func:`platform.processor`, else the architecture.
    """
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return cpu_model() or platform.processor() or platform.machine() or "unknown CPU"


def cpu_model() -> str:
    """The CPU's model: the first ``model name`` of ``/proc/cpuinfo`` ("" where there is none).

    Also the CPU in the benchmarks' machine line (``bench.common.machine_line``).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return ""


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def as_input_tensor(inputs: Any, name: str = "inputs") -> torch.Tensor:
    """Convert model inputs to a CPU tensor: floats -> float32, integers (token ids) -> int64.

    Raises:
        TypeError: ``inputs`` is not a numpy array of numbers.
        ValueError: No samples, no sample dimension, or non-finite values.
    """
    if not isinstance(inputs, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(inputs).__name__}")
    if inputs.ndim < 1:
        raise ValueError(f"{name} must have a sample dimension, got shape {inputs.shape}")
    if inputs.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {inputs.shape})")
    if np.issubdtype(inputs.dtype, np.floating):
        if not np.isfinite(inputs).all():
            bad = int(np.flatnonzero(~np.isfinite(inputs.reshape(len(inputs), -1)).all(1))[0])
            raise ValueError(f"{name} holds NaN or infinite values (first at sample {bad})")
        array = np.ascontiguousarray(inputs, dtype=np.float32)
    elif np.issubdtype(inputs.dtype, np.integer) and inputs.dtype != np.bool_:
        array = np.ascontiguousarray(inputs, dtype=np.int64)
    else:
        raise TypeError(f"{name} must hold floats or integer token ids, got dtype {inputs.dtype}")
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        # A read-only array (memory-mapped or decoded from Parquet) is shared, not copied:
        # acgate only reads its input tensors, so torch's "not writable" warning is noise.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def as_label_tensor(labels: Any, n_samples: int, n_classes: int | None) -> torch.Tensor:
    """Check and convert class labels to an int64 tensor of length ``n_samples``.

    Raises:
        TypeError: ``labels`` is not an integer numpy array.
        ValueError: Wrong shape, or a label outside ``[0, n_classes)``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (n_samples,):
        raise ValueError(
            f"labels must have shape ({n_samples},) to match inputs, got {labels.shape}"
        )
    if n_samples and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
    if n_samples and n_classes is not None and labels.max() >= n_classes:
        raise ValueError(
            f"label {int(labels.max())} is out of range for a model with {n_classes} outputs"
        )
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def as_weight_tensor(sample_weight: Any, n_samples: int) -> torch.Tensor:
    """Check and convert per-sample loss weights (finite, >= 0, not all zero) to float32.

    Raises:
        ValueError: Wrong shape, negative, non-finite or all-zero weights.
    """
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) to match inputs, got {weights.shape}"
        )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    if not (weights > 0).any():
        raise ValueError("sample_weight is zero for every sample")
    return torch.from_numpy(weights.astype(np.float32))


def positive_int(value: Any, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
