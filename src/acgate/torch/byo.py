"""Bring your own model: load a user's trained PyTorch model safely, save weights atomically.

Two file kinds are accepted:

* a **TorchScript** archive (``torch.jit.save``), loaded with ``torch.jit.load`` on CPU. Its
  compiled code runs when the model is called: load only models you are willing to run.
  Forward hooks do not fire inside TorchScript, so to extract activations also pass ``module=``:
  the archive's weights are then copied into that eager module.
* a **state_dict** (``torch.save(model.state_dict(), path)``), read with
  ``torch.load(path, weights_only=True)`` — torch's restricted unpickler that only rebuilds
  tensors and plain containers — into the module named by ``module="package.module:Name"``.

Any file that would run code while being unpickled (a pickle with a ``__reduce__`` payload, a
pickled whole model) is refused with ``ValueError``; nothing in it is executed.

What ``module="package.module:Name"`` may name (:func:`build_module`), checked before anything
is called:

* a **class** that subclasses ``torch.nn.Module`` (defined anywhere: re-exported model classes
  are fine); it is instantiated with ``module_kwargs``;
* a **Python function** (``def``, or a ``staticmethod`` / ``classmethod`` reached as
  ``Name.attribute``) *defined in that very module* (its ``__module__`` is ``package.module``),
  a factory called with ``module_kwargs`` that must return an ``nn.Module``.

Anything else is refused with ``TypeError`` without being called: builtins and C functions
(``os:getpid``, ``os:system``), classes that are not modules, callable instances, partials,
functions imported from elsewhere (name them where they are defined), and every attribute of
a standard-library module (``subprocess:run``; no model lives there). A module that raises
while being imported, and a class or factory that raises while building the model, become a
``ValueError`` carrying the module's own message.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import logging
import os
import pickle
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with ``<archive>/constants.pkl`` and compiled code."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in names)


def _parse_kwargs(module_kwargs: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if module_kwargs is None:
        return {}
    if isinstance(module_kwargs, str):
        try:
            parsed = json.loads(module_kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"module_kwargs is not valid JSON: {module_kwargs!r} ({error})"
            ) from None
    else:
        parsed = module_kwargs
    if not isinstance(parsed, Mapping) or not all(isinstance(k, str) for k in parsed):
        raise ValueError(
            f"module_kwargs must be a JSON object of keyword arguments, got {parsed!r}"
        )
    return dict(parsed)


def _function_of(target: Any) -> Any:
    """The plain Python function behind a function, staticmethod or classmethod; else None."""
    if inspect.isfunction(target):
        return target
    if inspect.ismethod(target) and inspect.isclass(target.__self__):  # a classmethod
        return target.__func__ if inspect.isfunction(target.__func__) else None
    return None


def _check_buildable(target: Any, spec: str, module_path: str, attribute: str) -> None:
    """Refuse, before calling it, anything that is not a model class or a model factory."""
    if inspect.isclass(target):
        if not issubclass(target, nn.Module):
            raise TypeError(
                f"module {spec!r} names the class {target.__module__}.{target.__qualname__}, "
                f"which is not a torch.nn.Module subclass; name a model class or a factory "
                f"function defined in {module_path!r}"
            )
        return
    function = _function_of(target)
    if function is None:
        kind = "builtin function" if inspect.isbuiltin(target) else type(target).__name__
        raise TypeError(
            f"module {spec!r} names a {kind}, not a torch.nn.Module subclass or a Python "
            f"factory function; refusing to call it"
        )
    defined_in = getattr(function, "__module__", None)
    if defined_in != module_path:
        hint = f" (name it as '{defined_in}:{attribute}')" if defined_in else ""
        raise TypeError(
            f"module {spec!r} names a function defined in {defined_in!r}, not in "
            f"{module_path!r}; a factory must be defined in the module it is named from"
            f"{hint}"
        )


def _import(spec: str, module_path: str) -> Any:
    """Import the module of ``spec``; any failure becomes a ``ValueError`` quoting it."""
    top = module_path.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise TypeError(
            f"module {spec!r} names the standard-library module {module_path!r}; a model class "
            f"or factory never lives there, and its functions are not called"
        )
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_path == missing or module_path.startswith(missing + ".")):
            raise ValueError(
                f"cannot import {module_path!r} (from module={spec!r}): {error}"
            ) from None
        raise ValueError(
            f"--model-module {spec!r}: importing {module_path} raised "
            f"{type(error).__name__}: {error}"
        ) from error
    except (Exception, SystemExit) as error:  # the user's module code failed while importing
        raise ValueError(
            f"--model-module {spec!r}: importing {module_path} raised "
            f"{type(error).__name__}: {error}"
        ) from error


def build_module(spec: str, module_kwargs: str | Mapping[str, Any] | None = None) -> nn.Module:
    """Build an eager model from ``"package.module:ClassName"`` or ``"package.module:factory"``.

    Only a ``torch.nn.Module`` subclass or a Python function defined in the named module is
    called (see the module docstring for the full rule); everything else is refused before
    anything is called.

    Args:
        spec: Import path and attribute (dotted attributes allowed), separated by ``:``.
        module_kwargs: Keyword arguments for the class or factory: a JSON object string or a
            mapping. Default: none.

    Returns:
        The freshly built ``nn.Module``.

    Raises:
        ValueError: A malformed spec, a module that cannot be imported or raises while being
            imported (quoting its error), an attribute that cannot be found, bad kwargs, or a
            class / factory that raises while building the model (quoting its error).
        TypeError: The attribute is not an ``nn.Module`` subclass or a Python function defined
            in the named module (builtins such as ``os:getpid`` are never called), the module
            is part of the standard library, or the factory did not return an ``nn.Module``.
    """
    kwargs = _parse_kwargs(module_kwargs)
    module_path, sep, attribute = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not module_path or not attribute:
        raise ValueError(
            f"module must look like 'package.module:ClassName' or 'package.module:factory', "
            f"got {spec!r}"
        )
    target: Any = _import(spec, module_path)
    for part in attribute.split("."):
        if not part or not hasattr(target, part):
            raise ValueError(f"{module_path!r} has no attribute {attribute!r} (module={spec!r})")
        target = getattr(target, part)
    _check_buildable(target, spec, module_path, attribute)
    try:
        model = target(**kwargs)
    except Exception as error:  # the user's constructor / factory failed: say which and why
        raise ValueError(
            f"module {spec!r}: building the model with {kwargs!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_state_dict_file(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Detected pickle protocol", category=UserWarning
            )
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        _, _, after = str(error).partition("WeightsUnpickler error:")
        reasons = [line.strip() for line in after.splitlines() if line.strip()]
        # keep torch's reason, drop its advice to allow-list the offending global
        detail = reasons[0].split(". Please")[0] if reasons else type(error).__name__
        raise ValueError(
            f"refusing to load {str(path)!r}: torch's weights-only unpickler rejected it "
            f"({detail}). It is not a plain state_dict, and unpickling anything else could "
            "execute code. Save the weights with torch.save(model.state_dict(), path) or "
            "use TorchScript."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable torch file: {error}") from None
    if (
        isinstance(loaded, Mapping)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], Mapping)
    ):
        logger.info("%s is a checkpoint: using its 'state_dict' entry", path)
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ValueError(
            f"{str(path)!r} does not hold a state_dict (a mapping of names to tensors); "
            f"got {type(loaded).__name__}"
        )
    return loaded


def _copy_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"the weights in {str(path)!r} do not fit {type(model).__name__}: {error}"
        ) from None


def load_model(
    path: str | os.PathLike[str],
    *,
    module: str | None = None,
    module_kwargs: str | Mapping[str, Any] | None = None,
) -> nn.Module:
    """Load a user's model from a TorchScript archive or a state_dict file, on CPU, in eval mode.

    Args:
        path: The model file.
        module: ``"package.module:ClassName"`` or ``"package.module:factory"`` building the
            eager model. Required for a state_dict file; for a TorchScript archive it is
            optional and, when given, the archive's weights are copied into it (an eager module
            is needed to extract activations with forward hooks).
        module_kwargs: Keyword arguments for ``module`` (a JSON object string or a mapping).

    Returns:
        The model in eval mode: a ``torch.jit.ScriptModule`` for a TorchScript archive without
        ``module``, else the eager module.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a regular file (a folder, a named pipe: never opened), a
            file that would execute code when unpickled, a state_dict without
            ``module``, a file that is not a torch file, or weights that do not fit ``module``.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():  # a folder, a named pipe (never opened: it would block) or a device
            raise ValueError(f"model file {str(path)!r} is not a regular file")
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if _is_torchscript(path):
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise ValueError(
                f"{str(path)!r} is not a loadable TorchScript archive: {error}"
            ) from None
        if module is None:
            logger.info("loaded TorchScript model from %s", path)
            return scripted.eval()
        model = build_module(module, module_kwargs)
        _copy_weights(model, scripted.state_dict(), path)
        logger.info("loaded TorchScript weights from %s into %s", path, module)
        return model.eval()
    state_dict = _load_state_dict_file(path)
    if module is None:
        raise ValueError(
            f"{str(path)!r} is a state_dict; pass module='package.module:ClassName' (or a "
            "factory) to build the model it belongs to"
        )
    model = build_module(module, module_kwargs)
    _copy_weights(model, state_dict, path)
    logger.info("loaded state_dict from %s into %s", path, module)
    return model.eval()


def save_state_dict(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``model.state_dict()`` to ``path`` atomically (temp file in the same folder + rename).

    Args:
        model: The model whose weights to save.
        path: Destination file; its folder must exist. An existing file is replaced only once
            the new one is completely written.

    Returns:
        The destination path.

    Raises:
        FileNotFoundError: The destination folder does not exist.
        OSError: The write failed (no space, file-size limit); nothing is left behind.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} for {str(path)!r} does not exist")
    state_dict = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        # Serialise in memory first: torch's writer hides a failed write (EFBIG, ENOSPC) behind
        # "unexpected pos"; a plain write raises the real OSError.
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    logger.info("saved state_dict of %s to %s", type(model).__name__, path)
    return path
