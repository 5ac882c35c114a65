"""Proxy models: the small networks acgate trains when the user brings no model of their own.

Every model here ends with its output :class:`torch.nn.Linear`, registered last, so that
``named_modules()`` lists it last and its *input* is the last hidden representation — the
activations Activation Clustering (Chen et al. 2018) clusters. See
:func:`acgate.torch.extract.last_hidden_layer_name`.

* :class:`SmallCNN` — the paper's MNIST network: conv32-relu-pool, conv64-relu-pool,
  fc ``hidden``-relu, fc ``n_classes``. Works from 1x1 images up (8x8 digits, 28x28 MNIST).
* :class:`MLP` — fully connected layers for flat feature vectors.
* :class:`TextCNN` — Kim (2014) sentence CNN over int64 token ids (pad id 0).

:func:`build_proxy` builds any of them by name from an input shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

ProxyName = Literal["cnn", "mlp", "textcnn"]

#: Token id used for padding by :class:`TextCNN` (its embedding row stays zero).
PAD_ID = 0


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _pooled_size(size: int) -> int:
    """Spatial size after ``MaxPool2d(2, ceil_mode=True)``: never below 1."""
    return max(1, math.ceil(size / 2))


class SmallCNN(nn.Module):
    """The paper's MNIST CNN: two conv and two fully connected layers.

    ``conv3x3(32)-relu-maxpool2 -> conv3x3(64)-relu-maxpool2 -> fc(hidden)-relu -> fc(n_classes)``.
    Convolutions are padded (``padding=1``) and pooling rounds up (``ceil_mode=True``), so the
    feature map never shrinks below 1x1: 8x8 inputs give 2x2x64 features, 28x28 give 7x7x64.

    Args:
        in_channels: Image channels ``C``.
        image_hw: Image height and width ``(H, W)`` (an int means square).
        n_classes: Number of output classes.
        hidden: Width of the last hidden layer (the activations clustered). Default 128.

    Shape:
        Input ``N x C x H x W`` float32; output ``N x n_classes`` logits.
    """

    def __init__(
        self,
        in_channels: int,
        image_hw: int | tuple[int, int],
        n_classes: int,
        hidden: int = 128,
    ) -> None:
        """Build the layers; see the class docstring for the arguments."""
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels")
        n_classes = _positive_int(n_classes, "n_classes")
        hidden = _positive_int(hidden, "hidden")
        if isinstance(image_hw, int):
            image_hw = (image_hw, image_hw)
        if len(tuple(image_hw)) != 2:
            raise ValueError(f"image_hw must be (H, W), got {image_hw!r}")
        height, width = (_positive_int(v, "image_hw") for v in image_hw)
        self.image_hw = (height, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        flat = 64 * _pooled_size(_pooled_size(height)) * _pooled_size(_pooled_size(width))
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(flat, hidden)
        self.hidden_act = nn.ReLU()
        self.output = nn.Linear(hidden, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return ``N x n_classes`` logits for ``N x C x H x W`` images."""
        return self.output(self.hidden_act(self.hidden(self.flatten(self.features(images)))))


class MLP(nn.Module):
    """Fully connected network for flat features: ``(fc-relu) * len(hidden) -> fc(n_classes)``.

    Inputs with more than two dimensions are flattened per sample, so ``N x C x H x W`` images
    work too. With ``hidden=()`` the model is multinomial logistic regression and its "last
    hidden representation" is the input itself.

    Args:
        in_features: Features per sample after flattening.
        n_classes: Number of output classes.
        hidden: Widths of the hidden layers. Default ``(128,)``.
    """

    def __init__(self, in_features: int, n_classes: int, hidden: Sequence[int] = (128,)) -> None:
        """Build the layers; see the class docstring for the arguments."""
        super().__init__()
        in_features = _positive_int(in_features, "in_features")
        n_classes = _positive_int(n_classes, "n_classes")
        widths = [_positive_int(w, "hidden") for w in hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        self.body = nn.Sequential(*layers)
        self.output = nn.Linear(previous, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return ``N x n_classes`` logits for ``N x in_features`` (or any ``N x ...``) input."""
        return self.output(self.body(features))


class TextCNN(nn.Module):
    """Kim (2014) sentence CNN over token ids.

    ``embedding -> parallel conv1d(widths) -> relu -> max over time -> concat -> dropout ->
    fc(hidden)-relu -> fc(n_classes)``. Sequences shorter than the widest filter are
    right-padded with :data:`PAD_ID` (whose embedding is fixed at zero).

    Args:
        vocab_size: Number of token ids (ids lie in ``[0, vocab_size)``; 0 is padding).
        n_classes: Number of output classes.
        embed_dim: Embedding width. Default 64.
        widths: Convolution widths (tokens). Default ``(3, 4, 5)``.
        n_filters: Filters per width. Default 64.
        hidden: Width of the last hidden layer (the activations clustered). Default 64.
        dropout: Dropout probability during training. Default 0.5.

    Shape:
        Input ``N x L`` int64; output ``N x n_classes`` logits.
    """

    def __init__(
        self,
        vocab_size: int,
        n_classes: int,
        embed_dim: int = 64,
        widths: Sequence[int] = (3, 4, 5),
        n_filters: int = 64,
        hidden: int = 64,
        dropout: float = 0.5,
    ) -> None:
        """Build the layers; see the class docstring for the arguments."""
        super().__init__()
        vocab_size = _positive_int(vocab_size, "vocab_size")
        n_classes = _positive_int(n_classes, "n_classes")
        embed_dim = _positive_int(embed_dim, "embed_dim")
        n_filters = _positive_int(n_filters, "n_filters")
        hidden = _positive_int(hidden, "hidden")
        widths = tuple(_positive_int(w, "widths") for w in widths)
        if not widths:
            raise ValueError("widths must name at least one convolution width, got ()")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.widths = widths
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n_filters, width) for width in widths)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(n_filters * len(widths), hidden)
        self.hidden_act = nn.ReLU()
        self.output = nn.Linear(hidden, n_classes)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Return ``N x n_classes`` logits for ``N x L`` int64 token ids."""
        shortfall = max(self.widths) - token_ids.shape[1]
        if shortfall > 0:
            token_ids = F.pad(token_ids, (0, shortfall), value=PAD_ID)
        embedded = self.embedding(token_ids).transpose(1, 2)  # N x embed_dim x L
        pooled = [torch.relu(conv(embedded)).amax(dim=2) for conv in self.convs]
        features = self.dropout(torch.cat(pooled, dim=1))
        return self.output(self.hidden_act(self.hidden(features)))


def _build_cnn(input_shape: tuple[int, ...], n_classes: int, **kwargs: Any) -> nn.Module:
    if len(input_shape) == 2:  # H x W grey images
        input_shape = (1, *input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"'cnn' needs input_shape (C, H, W) or (H, W), got {input_shape!r}")
    channels, height, width = input_shape
    return SmallCNN(channels, (height, width), n_classes, **kwargs)


def _build_mlp(input_shape: tuple[int, ...], n_classes: int, **kwargs: Any) -> nn.Module:
    if not input_shape:
        raise ValueError("'mlp' needs a non-empty input_shape, got ()")
    return MLP(math.prod(input_shape), n_classes, **kwargs)


def _build_textcnn(input_shape: tuple[int, ...], n_classes: int, **kwargs: Any) -> nn.Module:
    if len(input_shape) != 1:
        raise ValueError(f"'textcnn' needs input_shape (L,) of token ids, got {input_shape!r}")
    if "vocab_size" not in kwargs:
        raise TypeError("'textcnn' needs vocab_size=... (number of token ids, pad id 0)")
    return TextCNN(n_classes=n_classes, **kwargs)


#: Proxy models by name: ``name -> builder(input_shape, n_classes, **kwargs)``.
PROXY_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": _build_cnn,
    "mlp": _build_mlp,
    "textcnn": _build_textcnn,
}


def build_proxy(
    name: ProxyName, input_shape: Sequence[int], n_classes: int, **kwargs: Any
) -> nn.Module:
    """Build a proxy model by name.

    Args:
        name: ``"cnn"`` (:class:`SmallCNN`; ``input_shape`` ``(C, H, W)`` or ``(H, W)``),
            ``"mlp"`` (:class:`MLP`; any shape, flattened) or ``"textcnn"``
            (:class:`TextCNN`; ``input_shape`` ``(L,)``, needs ``vocab_size=``).
        input_shape: Shape of one sample, without the batch dimension.
        n_classes: Number of output classes.
        **kwargs: Passed to the model's constructor (e.g. ``hidden=``); unknown names raise
            ``TypeError``.

    Returns:
        A freshly initialised model (seed it with :func:`acgate.torch.train.seeded_model`).

    Raises:
        ValueError: Unknown ``name`` or an ``input_shape`` the model cannot take.
        TypeError: A keyword the model does not accept.
    """
    if name not in PROXY_BUILDERS:
        raise ValueError(f"unknown proxy model {name!r}; choose one of {sorted(PROXY_BUILDERS)}")
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    if any(v < 1 for v in shape):
        raise ValueError(f"input_shape must hold positive sizes, got {shape!r}")
    return PROXY_BUILDERS[name](shape, n_classes, **kwargs)
