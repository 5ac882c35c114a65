"""Image and text datasets: typed in-memory form and Parquet files (schema ``dataset/1``).

An image dataset file has an integer ``label`` column (no nulls, non-negative) and an
``image`` column in one of three encodings:

* a Hugging Face–style struct ``{bytes: binary, path: string}`` holding PNG or JPEG bytes
  (what ``datasets`` writes; ``write_image_dataset(..., image_format="png")`` writes it too);
* plain ``binary`` PNG or JPEG bytes;
* ``fixed_size_list<float32>[C*H*W]`` with the image shape ``[C, H, W]`` as JSON in the
  schema metadata entry ``acgate.image_shape`` (``image_format="array"``, lossless).

A text dataset file has a ``text`` string column (no nulls, no empty strings) and a
``label`` column. Any other column (ground truth such as ``is_poison`` and ``source_label``)
comes back in :attr:`ImageDataset.columns`; free-form metadata (a trigger spec) is stored as
``acgate.<key>`` JSON entries. The row number is the sample id.

Column names (:class:`Columns`): the readers take the user's names of the label, image, text and
(optional) id columns and map them to the canonical ``label`` / ``image`` / ``text`` right
here, so nothing downstream knows the file's names. A label column of strings, floats or
booleans is mapped to the classes ``0..k-1`` in the sorted order of its distinct values
(:attr:`ImageDataset.label_names` keeps the original value of each class); an id column's
values (unique, non-null) ride along as :attr:`ImageDataset.ids`. The writers write the
columns back under the names and label values they were read with.

Images are decoded with Pillow, restricted to PNG and JPEG, and refused above
:data:`MAX_IMAGE_PIXELS` pixels (a decompression-bomb guard).

Channel rule (encoded images): every image of a dataset ends with the same channel count,
chosen from the image headers before anything is decoded. When every image is greyscale
(Pillow modes ``1``, ``L``, ``LA``, ``I``, ``I;16``) the dataset is ``1 x H x W``; when any
image has colour (``RGB``, ``RGBA``, ``P``, ``PA``, ``CMYK``, ``YCbCr``, ...) every image
becomes ``3 x H x W`` RGB and greyscale images are repeated into the three channels. Alpha
(transparency) is dropped, not composited: the stored colour values are kept, as
``Image.convert("RGB")`` and torchvision's default image loader do. 16-bit greyscale is
scaled by ``1/65535``, everything else by ``1/255``. Any other mode is refused, naming the
row and the mode.

Memory budget: before decoding, the readers estimate from the image headers (or, for the
array encoding, the ``acgate.image_shape`` entry) what the dataset will cost: the decoded
``float32`` images plus training the default proxy CNN on images of that size (see
:func:`estimate_image_memory`). Above ``max_decoded_bytes`` (default
:data:`DEFAULT_MAX_DECODED_BYTES`, 8 GiB) the file is refused with a ``ValueError`` that gives
the figure, the limit and how to raise it; ``max_decoded_bytes=None`` turns the check off.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa

from acgate.core.validation import MAX_LABEL
from acgate.io.schema import (
    METADATA_PREFIX,
    decode_metadata,
    encode_metadata,
    float_matrix,
    id_column,
    label_column,
    open_parquet,
    read_parquet,
    write_parquet,
)

__all__ = [
    "COLUMN_OPTIONS",
    "DEFAULT_COLUMNS",
    "DEFAULT_MAX_DECODED_BYTES",
    "Columns",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "ImageDataset",
    "MemoryEstimate",
    "TextDataset",
    "dataset_fingerprint",
    "dataset_modality",
    "estimate_image_memory",
    "read_dataset",
    "require_dataset_columns",
    "read_image_dataset",
    "read_text_dataset",
    "write_image_dataset",
    "write_text_dataset",
]

PathLike = str | os.PathLike[str]
ImageFormat = Literal["array", "png"]
Modality = Literal["image", "text"]

#: Largest image (width x height) the decoder accepts: a decompression-bomb guard.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Encodings Pillow may decode from a dataset file (others, e.g. EPS, are never tried).
IMAGE_FORMATS = ("PNG", "JPEG")
#: Default memory budget of an image dataset: decoded float32 images + proxy training (8 GiB).
DEFAULT_MAX_DECODED_BYTES = 8 * 1024**3
#: How a caller raises the budget (quoted in the refusal).
_RAISE_BUDGET_HINT = "max_decoded_bytes=... (acgate scan --max-decoded-gb)"
#: Pillow modes decoded as one greyscale channel.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N"})
#: Pillow modes decoded as three RGB channels (alpha dropped).
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB",
                           "HSV"})

_SHAPE_KEY = METADATA_PREFIX + "image_shape"
_NAME_KEY = METADATA_PREFIX + "name"
_PIL_MODE_BY_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}


# --------------------------------------------------------------------------- column names

#: The option that names each column (quoted in errors): the CLI flag of the scan's setting
#: ``<role>_column`` (:class:`acgate.scan.ScanConfig`).
COLUMN_OPTIONS: Mapping[str, str] = MappingProxyType({
    "label": "--label-column", "image": "--image-column", "text": "--text-column",
    "id": "--id-column"})


@dataclass(frozen=True)
class Columns:
    """Which column of a dataset file holds what: the user's names of the canonical columns.

    Attributes:
        label: The label column (integers; or strings, floats, booleans, mapped to classes).
        image: The image column of an image dataset.
        text: The text column of a text dataset.
        id: A column of unique row ids carried to every per-row output; ``None``: the row
            number is the id.
    """

    label: str = "label"
    image: str = "image"
    text: str = "text"
    id: str | None = None

    def __post_init__(self) -> None:  # noqa: D105
        for role in ("label", "image", "text", "id"):
            name = getattr(self, role)
            if role == "id" and name is None:
                continue
            if not isinstance(name, str):
                raise TypeError(f"{role}_column must be a column name (a string), got "
                                f"{type(name).__name__} {name!r}")
            if not name:
                raise ValueError(f"{role}_column must be a non-empty column name, got {name!r}")
        used = [(role, getattr(self, role)) for role in ("label", "image", "text", "id")
                if getattr(self, role) is not None]
        for position, (role, name) in enumerate(used):
            for other, other_name in used[position + 1:]:
                if name == other_name:
                    raise ValueError(f"{role}_column and {other}_column are both {name!r}; each "
                                     f"role needs its own column")

    def describe(self, role: str) -> str:
        """``'<name>' (--<role>-column)``: a column as errors quote it."""
        return f"{getattr(self, role)!r} ({COLUMN_OPTIONS[role]})"


#: The canonical names: ``label``, ``image``, ``text`` and no id column.
DEFAULT_COLUMNS = Columns()


def require_dataset_columns(path: PathLike, present: Sequence[str], columns: Columns,
                            roles: Iterable[str]) -> None:
    """Refuse a dataset file that lacks one of the columns the given roles name.

    Raises:
        ValueError: ``dataset <path> has no column 'target' (--label-column); its columns
            are: ...``.
    """
    for role in roles:
        name = getattr(columns, role)
        if name is not None and name not in present:
            raise ValueError(f"dataset {path} has no column {name!r} ({COLUMN_OPTIONS[role]}); "
                             f"its columns are: {', '.join(map(repr, present)) or 'none'}")


# --------------------------------------------------------------------------- validation


def _validated_labels(labels: Any, n_rows: int, owner: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{owner}.labels must be 1-D, got shape {array.shape}")
    if len(array) != n_rows:
        raise ValueError(f"{owner}.labels has length {len(array)}, expected {n_rows}")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or len(array) == 0):
        raise TypeError(f"{owner}.labels must be integers, got dtype {array.dtype}")
    array = np.array(array, dtype=np.int64, copy=True)
    if len(array) and array.min() < 0:
        row = int(np.flatnonzero(array < 0)[0])
        raise ValueError(f"{owner}.labels has negative value {array[row]} in row {row}")
    if len(array) and array.max() > MAX_LABEL:
        row = int(np.flatnonzero(array > MAX_LABEL)[0])
        raise ValueError(f"{owner}.labels has value {array[row]} in row {row}, above the "
                         f"largest supported label {MAX_LABEL}")
    array.setflags(write=False)
    return array


def _validated_columns(
    columns: Mapping[str, Any] | None, n_rows: int, owner: str, reserved: tuple[str, ...]
) -> Mapping[str, np.ndarray]:
    checked: dict[str, np.ndarray] = {}
    for name, values in (columns or {}).items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{owner}.columns names must be non-empty strings, got {name!r}")
        if name in reserved:
            raise ValueError(f"{owner}.columns may not use the reserved name {name!r}")
        array = np.array(values, copy=True)
        if array.ndim != 1 or len(array) != n_rows:
            raise ValueError(
                f"{owner}.columns[{name!r}] has shape {array.shape}, expected ({n_rows},)"
            )
        array.setflags(write=False)
        checked[name] = array
    return MappingProxyType(checked)


def _validated_row_ids(ids: Any, n_rows: int, names: Columns, owner: str) -> np.ndarray | None:
    if (ids is None) != (names.id is None):
        raise ValueError(f"{owner}.ids and column_names.id go together: ids "
                         f"{'missing' if ids is None else 'given'}, id column {names.id!r}")
    if ids is None:
        return None
    array = np.array(ids, copy=True)
    if array.ndim != 1 or len(array) != n_rows:
        raise ValueError(f"{owner}.ids has shape {array.shape}, expected ({n_rows},)")
    seen: dict[Any, int] = {}
    for row, value in enumerate(array.tolist()):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{owner}.ids has a missing id ({value!r}) in row {row}")
        if value in seen:
            raise ValueError(f"{owner}.ids must be unique, but id {value!r} is in rows "
                             f"{seen[value]} and {row}")
        seen[value] = row
    array.setflags(write=False)
    return array


def _validated_label_names(names: Any, labels: np.ndarray, owner: str) -> tuple[Any, ...] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)):
        raise TypeError(f"{owner}.label_names must be a sequence of values, not one string")
    names = tuple(v.item() if isinstance(v, np.generic) else v for v in names)
    for name in names:
        if not isinstance(name, (str, int, float, bool)):
            raise TypeError(f"{owner}.label_names must be strings, numbers or booleans, got "
                            f"{type(name).__name__} {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}.label_names must be distinct, got {list(names)!r}")
    if len(labels) and int(labels.max()) >= len(names):
        raise ValueError(f"{owner}.label_names names {len(names)} classes, but the labels go "
                         f"up to {int(labels.max())}")
    return names


def _validated_metadata(metadata: Mapping[str, Any] | None, owner: str) -> Mapping[str, Any]:
    encode_metadata(metadata, what=f"{owner}.metadata")  # raises on bad keys / values
    return MappingProxyType(dict(metadata or {}))


def _set_row_fields(dataset: Any, n_rows: int, owner: str, roles: tuple[str, ...]) -> None:
    """Validate and freeze the fields both dataset classes share (after ``labels``)."""
    names = dataset.column_names
    if not isinstance(names, Columns):
        raise TypeError(f"{owner}.column_names must be a Columns, got {type(names).__name__}")
    reserved = tuple(getattr(names, role) for role in roles if getattr(names, role) is not None)
    object.__setattr__(dataset, "columns",
                       _validated_columns(dataset.columns, n_rows, owner, reserved))
    object.__setattr__(dataset, "metadata", _validated_metadata(dataset.metadata, owner))
    object.__setattr__(dataset, "name", str(dataset.name))
    object.__setattr__(dataset, "ids", _validated_row_ids(dataset.ids, n_rows, names, owner))
    object.__setattr__(dataset, "label_names",
                       _validated_label_names(dataset.label_names, dataset.labels, owner))


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images with labels, extra per-row columns and metadata.

    The row number is the sample id.

    Attributes:
        images: ``float32`` array ``N x C x H x W`` with values in ``[0, 1]`` (a read-only
            view; the array passed in is not copied).
        labels: ``int64`` array of length ``N``, non-negative.
        columns: Extra per-row arrays of length ``N``, e.g. ground truth ``is_poison``
            (bool) and ``source_label`` (int) of a poisoned dataset.
        metadata: JSON-serialisable information, e.g. ``{"poison": {...}}``; stored as
            ``acgate.<key>`` entries in Parquet.
        name: A short name (``"digits"``, ``"mnist-train"``).
        ids: The values of the file's id column, one per row (unique, non-null), or ``None``
            (the row number is the id).
        label_names: ``label_names[c]`` is the original label of class ``c`` when the file's
            labels were not integers (mapped in sorted order), else ``None``.
        column_names: The file's names of the label, image and id columns (what the writers
            write them back as).
    """

    images: np.ndarray
    labels: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    name: str = "dataset"
    ids: np.ndarray | None = None
    label_names: tuple[Any, ...] | None = None
    column_names: Columns = DEFAULT_COLUMNS

    def __post_init__(self) -> None:  # noqa: D105
        images = np.ascontiguousarray(self.images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(
                f"ImageDataset.images must be N x C x H x W, got shape {images.shape}"
            )
        if images.size:
            if not np.isfinite(images).all():
                row = int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(1))[0])
                raise ValueError(f"ImageDataset.images has NaN or inf values in row {row}")
            low, high = float(images.min()), float(images.max())
            if low < 0.0 or high > 1.0:
                bad = (images < 0) | (images > 1)
                row = int(np.flatnonzero(bad.reshape(len(images), -1).any(1))[0])
                raise ValueError(
                    f"ImageDataset.images must lie in [0, 1], got range [{low}, {high}] "
                    f"(first offending row {row})"
                )
        view = images.view()
        view.setflags(write=False)
        n_rows = len(images)
        object.__setattr__(self, "images", view)
        object.__setattr__(
            self, "labels", _validated_labels(self.labels, n_rows, "ImageDataset")
        )
        _set_row_fields(self, n_rows, "ImageDataset", ("image", "label", "id"))

    def __len__(self) -> int:  # noqa: D105
        return int(len(self.labels))

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return len(self)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        _, channels, height, width = self.images.shape
        return int(channels), int(height), int(width)

    @property
    def classes(self) -> np.ndarray:
        """Sorted distinct labels."""
        return np.unique(self.labels)


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Texts with labels, extra per-row columns and metadata.

    Attributes:
        texts: One non-empty string per row (stored as a tuple).
        labels: ``int64`` array of length ``N``, non-negative.
        columns: Extra per-row arrays of length ``N`` (e.g. ``is_poison``).
        metadata: JSON-serialisable information, stored as ``acgate.<key>`` entries.
        name: A short name (``"rotten_tomatoes"``).
        ids: The file's id column, or ``None`` (see :class:`ImageDataset`).
        label_names: The original labels of mapped classes, or ``None`` (see
            :class:`ImageDataset`).
        column_names: The file's names of the label, text and id columns.
    """

    texts: Sequence[str]
    labels: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    name: str = "dataset"
    ids: np.ndarray | None = None
    label_names: tuple[Any, ...] | None = None
    column_names: Columns = DEFAULT_COLUMNS

    def __post_init__(self) -> None:  # noqa: D105
        if isinstance(self.texts, (str, bytes)):
            raise TypeError("TextDataset.texts must be a sequence of strings, not one string")
        texts = tuple(self.texts)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"TextDataset.texts[{row}] must be a string, got {type(text).__name__}"
                )
            if not text.strip():
                raise ValueError(f"TextDataset.texts[{row}] is empty")
        object.__setattr__(self, "texts", texts)
        object.__setattr__(
            self, "labels", _validated_labels(self.labels, len(texts), "TextDataset")
        )
        _set_row_fields(self, len(texts), "TextDataset", ("text", "label", "id"))

    def __len__(self) -> int:  # noqa: D105
        return int(len(self.labels))

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return len(self)

    @property
    def classes(self) -> np.ndarray:
        """Sorted distinct labels."""
        return np.unique(self.labels)


# --------------------------------------------------------------------------- decoding


class MemoryEstimate(NamedTuple):
    """Estimated memory of an image dataset in a scan, in bytes.

    Attributes:
        decoded_bytes: The decoded ``float32`` images, ``N x C x H x W x 4``.
        proxy_bytes: Training the default proxy CNN on images of that size (see
            :func:`estimate_image_memory`).
    """

    decoded_bytes: int
    proxy_bytes: int

    @property
    def total(self) -> int:
        """``decoded_bytes + proxy_bytes``."""
        return self.decoded_bytes + self.proxy_bytes


def _proxy_bytes(shape: tuple[int, int, int], batch_size: int, hidden: int) -> int:
    channels, height, width = shape
    half_h, half_w = -(-height // 2), -(-width // 2)  # MaxPool2d(2, ceil_mode=True)
    quarter_h, quarter_w = -(-half_h // 2), -(-half_w // 2)
    full, half, quarter = height * width, half_h * half_w, quarter_h * quarter_w
    # Values kept per sample for the backward pass: the input, conv1 and its ReLU (32 maps),
    # the pooled maps with their int64 indices (2 float32 slots), conv2 + ReLU (64 maps),
    # the pooled maps with indices, the hidden layer.
    per_sample = (channels * full + 2 * 32 * full + 3 * 32 * half + 2 * 64 * half
                  + 3 * 64 * quarter + 2 * hidden)
    activations = batch_size * per_sample * 4 * 2  # x2: the gradients of the backward pass
    parameters = (32 * (9 * channels + 1) + 64 * (9 * 32 + 1) + (64 * quarter + 1) * hidden
                  + (hidden + 1) * 10)
    return activations + parameters * 4 * 4  # weights, gradients and Adam's two moments


def estimate_image_memory(
    n_images: int,
    image_shape: Sequence[int],
    *,
    batch_size: int = 64,
    hidden: int = 128,
) -> MemoryEstimate:
    """Estimate what ``n_images`` images of ``image_shape`` cost a scan, before decoding them.

    The decoded images are ``N x C x H x W`` ``float32``. The proxy estimate is for the default
    proxy (:class:`acgate.torch.models.SmallCNN`, trained with Adam): per batch, the
    activations its two conv blocks keep for the backward pass (twice over, for their
    gradients), plus four copies of its weights (weights, gradients, Adam's two moments) —
    the hidden layer alone has ``64 * ceil(H/4) * ceil(W/4) * hidden`` weights. It is an
    estimate of the peak, good to a small factor, not a measurement.

    Args:
        n_images: Number of images ``N``.
        image_shape: ``(C, H, W)`` of one image.
        batch_size: Training batch size (the scan's default 64).
        hidden: Width of the proxy's hidden layer (the scan's default 128).

    Returns:
        The :class:`MemoryEstimate`.

    Raises:
        ValueError: When ``image_shape`` is not three positive sizes or a count is negative.
    """
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) positive sizes, got {image_shape!r}")
    if int(n_images) < 0 or int(batch_size) < 1 or int(hidden) < 1:
        raise ValueError(f"n_images must be >= 0 and batch_size, hidden >= 1; got {n_images!r}, "
                         f"{batch_size!r}, {hidden!r}")
    channels, height, width = shape
    decoded = int(n_images) * channels * height * width * 4
    return MemoryEstimate(decoded, _proxy_bytes((channels, height, width), int(batch_size),
                                                int(hidden)))


def _checked_budget(value: Any) -> int | None:
    """``max_decoded_bytes`` as a positive int, or ``None`` (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"max_decoded_bytes must be a number of bytes or None, got {value!r}")
    if not math.isfinite(float(value)) or value < 1:
        raise ValueError(f"max_decoded_bytes must be a positive number of bytes, got {value!r}")
    return int(value)


def _size_text(n_bytes: int) -> str:
    if n_bytes >= 1024**3:
        return f"{n_bytes / 1024**3:.1f} GiB"
    return f"{n_bytes / 1024**2:.1f} MiB"


def _check_budget(
    path: PathLike,
    column: str,
    shapes: Mapping[tuple[int, int, int], int],
    max_decoded_bytes: int | None,
) -> None:
    """Refuse a column whose estimated memory (see :func:`estimate_image_memory`) is too big.

    Args:
        path: The file (named in the message).
        column: The image column (named in the message).
        shapes: Number of images of each ``(C, H, W)`` shape.
        max_decoded_bytes: The budget in bytes; ``None``: no limit.
    """
    if max_decoded_bytes is None or not shapes:
        return
    decoded = sum(estimate_image_memory(n, shape).decoded_bytes for shape, n in shapes.items())
    largest = max(shapes, key=lambda shape: shape[0] * shape[1] * shape[2])
    proxy = max(estimate_image_memory(0, shape).proxy_bytes for shape in shapes)
    total = decoded + proxy
    if total <= max_decoded_bytes:
        return
    n_images = sum(shapes.values())
    what = "x".join(str(v) for v in largest)
    described = f"of {what}" if len(shapes) == 1 else f"(the largest {what})"
    raise ValueError(
        f"{path}: column {column!r}: {n_images} image(s) {described} (C x H x W) would need "
        f"about {_size_text(total)} ({_size_text(decoded)} of decoded float32 images + "
        f"{_size_text(proxy)} to train the proxy CNN at batch 64), above the limit of "
        f"{_size_text(max_decoded_bytes)} ({max_decoded_bytes} bytes); downscale the images, "
        f"or raise the limit with {_RAISE_BUDGET_HINT} if the machine has the memory"
    )


class _Header(NamedTuple):
    width: int
    height: int
    mode: str


def _decode_error(path: PathLike, column: str, row: int, error: BaseException) -> ValueError:
    return ValueError(
        f"{path}: column {column!r} row {row}: cannot decode the image bytes as "
        f"{' or '.join(IMAGE_FORMATS)}: {error}"
    )


def _open_image(blob: bytes, path: PathLike, column: str, row: int) -> Any:
    """Open (lazily: only the header is read) one PNG / JPEG image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns on large images at open; the readers' pixel limit decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(blob), formats=list(IMAGE_FORMATS))
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"{path}: column {column!r} row {row}: image refused as a decompression bomb: {error}"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise _decode_error(path, column, row, error) from error


def _checked_header(
    image: Any, path: PathLike, column: str, row: int, max_pixels: int
) -> _Header:
    """Size and mode of an opened (not yet decoded) image, refusing oversized or odd ones."""
    width, height = image.size
    mode = image.mode
    if width * height > max_pixels:
        raise ValueError(
            f"{path}: column {column!r} row {row}: image of {width}x{height} "
            f"pixels exceeds the limit of {max_pixels} pixels (decompression-bomb guard)"
        )
    if mode not in _GREY_MODES and mode not in _COLOUR_MODES:
        raise ValueError(
            f"{path}: column {column!r} row {row}: unsupported image mode {mode!r} (supported: "
            f"{sorted(_GREY_MODES | _COLOUR_MODES)})"
        )
    return _Header(int(width), int(height), mode)


def _image_header(
    blob: Any, path: PathLike, column: str, row: int, max_pixels: int
) -> _Header:
    """Size and mode of one encoded image from its header alone (no pixel is decoded).

    Raises:
        ValueError: Null bytes, bytes that are not PNG / JPEG, an image above ``max_pixels``
            pixels or of an unsupported mode (naming the file, column and row).
    """
    if blob is None:
        raise ValueError(f"{path}: column {column!r} row {row} has no image bytes (null)")
    png = _png_header(blob)
    if png is not None:  # the common case, without Pillow's per-image overhead
        return _checked_header(png, path, column, row, max_pixels)
    with _open_image(blob, path, column, row) as image:
        return _checked_header(image, path, column, row, max_pixels)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG IHDR colour type -> the Pillow mode it opens as (grey depth decides 1 / L / I;16).
_PNG_MODES = {2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


class _PngHeader(NamedTuple):
    size: tuple[int, int]
    mode: str


def _png_header(blob: bytes) -> _PngHeader | None:
    """Width, height and Pillow mode from a PNG's IHDR chunk; ``None`` when not plainly PNG.

    Anything unusual (not PNG, a malformed IHDR) returns ``None`` and goes through Pillow.
    """
    if len(blob) < 33 or blob[:8] != _PNG_SIGNATURE or blob[12:16] != b"IHDR":
        return None
    width = int.from_bytes(blob[16:20], "big")
    height = int.from_bytes(blob[20:24], "big")
    depth, colour = blob[24], blob[25]
    if width < 1 or height < 1:
        return None
    if colour == 0:
        mode = {1: "1", 16: "I;16"}.get(depth, "L")
    elif colour in _PNG_MODES:
        mode = _PNG_MODES[colour]
    else:
        return None
    return _PngHeader((width, height), mode)


def _dataset_channels(modes: Iterable[str]) -> int:
    """The channel rule: 3 (RGB) when any image has colour, else 1 (greyscale)."""
    return 3 if any(mode in _COLOUR_MODES for mode in modes) else 1


def _image_to_array(image: Any, channels: int | None = None) -> np.ndarray | None:
    """Pillow image -> ``C x H x W`` float32 in [0, 1]; ``None`` for unsupported modes.

    Greyscale modes give one channel, colour modes three (alpha dropped); with
    ``channels=3`` a greyscale image is repeated into three channels.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        array = np.clip(np.asarray(image).astype(np.float32) / 65535.0, 0.0, 1.0)
    elif mode in _GREY_MODES:
        array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    elif mode == "RGB":
        array = np.asarray(image, dtype=np.float32) / 255.0
    elif mode in _COLOUR_MODES:
        with warnings.catch_warnings():
            # "Palette images with Transparency ... should be converted to RGBA": alpha is
            # dropped on purpose (the channel rule), so the advice does not apply.
            warnings.simplefilter("ignore", UserWarning)
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    else:
        return None
    if array.ndim == 2:
        array = array[None, :, :]
        if channels == 3:
            array = np.repeat(array, 3, axis=0)
    else:
        array = np.transpose(array, (2, 0, 1))
    return np.ascontiguousarray(array, dtype=np.float32)


def _decode_image(
    blob: bytes,
    path: PathLike,
    column: str,
    row: int,
    max_pixels: int,
    channels: int | None = None,
) -> np.ndarray:
    """Decode one image to ``C x H x W`` float32 (see the module docstring's channel rule).

    Args:
        blob: The encoded PNG / JPEG bytes.
        path: The file (for messages).
        column: The image column (for messages).
        row: The row (for messages).
        max_pixels: Refuse images above this many pixels before decoding them.
        channels: The dataset's channel count (:func:`_dataset_channels`); ``None``: this
            image's own (1 for greyscale, 3 for colour).
    """
    from PIL import Image

    if blob is None:
        raise ValueError(f"{path}: column {column!r} row {row} has no image bytes (null)")
    with _open_image(blob, path, column, row) as image:
        header = _checked_header(image, path, column, row, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                array = _image_to_array(image, channels)
        except Image.DecompressionBombError as error:
            raise ValueError(f"{path}: column {column!r} row {row}: image refused as a "
                             f"decompression bomb: {error}") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise _decode_error(path, column, row, error) from error
    if array is None:
        raise ValueError(
            f"{path}: column {column!r} row {row}: unsupported image mode {header.mode!r}"
        )
    return array


def _decode_images(
    blobs: list[Any], path: PathLike, column: str, max_pixels: int,
    metadata: Mapping[str, str], max_decoded_bytes: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    """Decode a column's images after checking every header, the shapes and the budget.

    ``channels``: the channel count the whole file decodes to, when these are only some of its
    rows (a shard); ``None``: from these images' modes (:func:`_dataset_channels`).
    """
    if not blobs:  # no rows: the shape comes from the metadata, when written by acgate
        if _SHAPE_KEY not in metadata:
            raise ValueError(f"{path}: column {column!r} has no rows and the file has no "
                             f"{_SHAPE_KEY!r} entry; cannot tell the image shape")
        return np.empty((0, *_image_shape_from_metadata(path, metadata)), dtype=np.float32)
    headers = [_image_header(blob, path, column, row, max_pixels)
               for row, blob in enumerate(blobs)]
    if channels is None:
        channels = _dataset_channels(header.mode for header in headers)
    shape = (channels, headers[0].height, headers[0].width)
    for row, header in enumerate(headers):
        if (channels, header.height, header.width) != shape:
            raise ValueError(
                f"{path}: column {column!r} has mixed image shapes: row {row} is "
                f"{(channels, header.height, header.width)} (C, H, W), row 0 is {shape}"
            )
    _check_budget(path, column, {shape: len(headers)}, max_decoded_bytes)
    images = np.empty((len(blobs), *shape), dtype=np.float32)
    for row, blob in enumerate(blobs):
        array = _decode_image(blob, path, column, row, max_pixels, channels)
        if array.shape != shape:  # the header said otherwise (a corrupt file)
            raise ValueError(
                f"{path}: column {column!r} row {row} decodes to {tuple(array.shape)} (C, H, W), "
                f"but its header and row 0 say {shape}"
            )
        images[row] = array
    return images


def _image_shape_from_metadata(path: PathLike, metadata: Mapping[str, str]) -> tuple[int, ...]:
    text = metadata.get(_SHAPE_KEY)
    if text is None:
        raise ValueError(
            f"{path}: an array-encoded image column needs the image shape [C, H, W] as JSON "
            f"in the schema metadata entry {_SHAPE_KEY!r}"
        )
    try:
        shape = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: {_SHAPE_KEY!r} is not valid JSON: {text!r}") from error
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"{path}: {_SHAPE_KEY!r} must be [C, H, W] positive integers, got {text}")
    return tuple(shape)


def _images_from_column(
    path: PathLike,
    column: pa.ChunkedArray,
    name: str,
    metadata: Mapping[str, str],
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    kind = column.type
    if pa.types.is_struct(kind):
        if kind.get_field_index("bytes") < 0:
            raise TypeError(
                f"{path}: struct column {name!r} must have a 'bytes' field "
                f"(Hugging Face image layout {{bytes, path}}), got {kind}"
            )
        array = column.combine_chunks()
        blobs = array.field("bytes").to_pylist()
        row_valid = array.is_valid().to_pylist()
        for row, (valid, blob) in enumerate(zip(row_valid, blobs, strict=True)):
            if not valid or blob is None:
                raise ValueError(
                    f"{path}: column {name!r} row {row} has no image bytes (only a path or "
                    f"null); embed the image bytes in the file"
                )
        return _decode_images(blobs, path, name, max_pixels, metadata, max_decoded_bytes,
                              channels)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _decode_images(column.to_pylist(), path, name, max_pixels, metadata,
                              max_decoded_bytes, channels)
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        shape = _image_shape_from_metadata(path, metadata)
        _check_budget(path, name, {shape: len(column)}, max_decoded_bytes)
        width = int(np.prod(shape))
        flat = float_matrix(path, column, name, width=width)
        if flat.size and not np.isfinite(flat).all():
            row = int(np.flatnonzero(~np.isfinite(flat).all(axis=1))[0])
            raise ValueError(f"{path}: column {name!r} has NaN or inf values, first in row {row}")
        outside = (flat < 0) | (flat > 1)
        if outside.any():
            row = int(np.flatnonzero(outside.any(axis=1))[0])
            raise ValueError(
                f"{path}: column {name!r} has pixel values outside [0, 1], first in row {row}"
            )
        return flat.reshape(len(flat), *shape)
    raise TypeError(
        f"{path}: column {name!r} has type {kind}; expected a struct {{bytes, path}}, binary "
        f"PNG/JPEG bytes or fixed_size_list<float32> with {_SHAPE_KEY!r} metadata"
    )


def _extra_columns(table: pa.Table, skip: tuple[str, ...]) -> dict[str, np.ndarray]:
    extras: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name in skip:
            continue
        column = table.column(name)
        try:
            extras[name] = np.asarray(column.to_numpy())
        except (pa.ArrowException, TypeError, ValueError):
            extras[name] = np.array(column.to_pylist() + [None], dtype=object)[:-1]
    return extras


def _dataset_name(path: PathLike, metadata: Mapping[str, str]) -> str:
    return metadata.get(_NAME_KEY, Path(path).stem)


# --------------------------------------------------------------------------- read / write


def read_image_dataset(
    path: PathLike,
    *,
    image_column: str = "image",
    label_column: str = "label",
    id_column: str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    rows: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageDataset:
    """Read an image dataset from Parquet (any of the three image encodings).

    Encoded (PNG / JPEG) images are checked in three passes, the first two reading only the
    image headers: every header (decodable, at most ``max_pixels`` pixels, a supported mode),
    then one shape for the whole column and the memory budget, and only then are the pixels
    decoded. Channel rule: when every image is greyscale the dataset has one channel; when any
    image has colour every image becomes 3-channel RGB (greyscale images repeated into the
    three channels). Alpha is dropped (the stored colour values kept, not composited), as
    ``Image.convert("RGB")`` does: RGBA -> RGB, LA -> L, P / PA -> RGB, CMYK / YCbCr -> RGB.
    16-bit greyscale is scaled by ``1/65535``, everything else by ``1/255``.

    Args:
        path: The Parquet file.
        image_column: Name of the image column.
        label_column: Name of the label column: integers, or strings / floats / booleans
            mapped to ``0..k-1`` in sorted order (see :attr:`ImageDataset.label_names`).
        id_column: Name of a column of unique, non-null row ids (see
            :attr:`ImageDataset.ids`); ``None``: the row number is the id.
        max_pixels: Refuse any encoded image larger than this many pixels.
        max_decoded_bytes: Refuse the file, before decoding it, when the decoded ``float32``
            images plus the estimated memory of training the proxy CNN on them (see
            :func:`estimate_image_memory`) exceed this many bytes. Default
            :data:`DEFAULT_MAX_DECODED_BYTES` (8 GiB); ``None``: no limit.
        rows: Only the rows ``[first, stop)`` (a shard): labels are mapped and ids checked
            over the whole file, as a whole read would, and only these images are decoded
            (and counted against the budget). ``None``: every row.
        channels: Decode encoded images to this many channels (1 or 3): what the whole file
            decodes to, for a shard whose own images might all be greyscale. ``None``: by the
            channel rule above.

    Returns:
        The dataset; every column other than the image, label and id columns lands in
        ``columns``, ``acgate.<key>`` metadata entries in ``metadata``.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Not a regular file, not Parquet, duplicate column names, newer schema,
            missing column (named with its option, e.g. ``--label-column``), null / negative
            labels, null or repeated ids, undecodable or oversized images, an unsupported
            image mode, mixed image sizes, over the memory budget (the message names the
            file, the column and the row or the figures).
        TypeError: When the label column is of an unsupported type (lists, dates, ...) or
            the image column has an unsupported type.
    """
    budget = _checked_budget(max_decoded_bytes)
    names = Columns(label=label_column, image=image_column, id=id_column)
    table, metadata, labels, label_names, ids = _read_rows(path, names, ("label", "image", "id"),
                                                           rows)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    images = _images_from_column(path, table.column(image_column), image_column, metadata,
                                 max_pixels, budget, channels)
    return ImageDataset(
        images=images,
        labels=labels,
        columns=_extra_columns(table, (image_column, label_column, id_column)),
        metadata=decode_metadata(path, metadata),
        name=_dataset_name(path, metadata),
        ids=ids,
        label_names=label_names,
        column_names=names,
    )


def _read_dataset_table(path: PathLike, names: Columns,
                        roles: tuple[str, ...]) -> tuple[pa.Table, dict[str, str]]:
    """The dataset file's table, after checking that the roles' columns exist."""
    present = open_parquet(path).schema_arrow.names
    require_dataset_columns(path, present, names, roles)
    return read_parquet(path, "dataset")


def _labels(path: PathLike, table: pa.Table,
                    names: Columns) -> tuple[np.ndarray, tuple[Any, ...] | None]:
    """The label column as classes (and the mapping, for labels that are not integers)."""
    return label_column(path, table.column(names.label), names.label, max_value=MAX_LABEL,
                        option=COLUMN_OPTIONS["label"])


def _ids(path: PathLike, table: pa.Table, names: Columns) -> np.ndarray | None:
    if names.id is None:
        return None
    return id_column(path, table.column(names.id), names.id, option=COLUMN_OPTIONS["id"])


def _read_rows(path: PathLike, names: Columns, roles: tuple[str, ...],
               rows: tuple[int, int] | None) -> tuple[pa.Table, dict[str, str], np.ndarray,
                                                      tuple[Any, ...] | None, np.ndarray | None]:
    """The table, metadata, classes, label names and ids of every row or of ``rows``.

    For ``rows`` (a shard ``[first, stop)``) the label and id columns are read whole, so labels
    are mapped and ids checked as a whole read would, and the other columns only from the row
    groups that hold those rows.
    """
    if rows is None:
        table, metadata = _read_dataset_table(path, names, roles)
        labels, label_names = _labels(path, table, names)
        return table, metadata, labels, label_names, _ids(path, table, names)
    present = open_parquet(path).schema_arrow.names
    require_dataset_columns(path, present, names, roles)
    small = [name for name in (names.label, names.id) if name is not None]
    whole, metadata = read_parquet(path, "dataset", columns=small)
    labels, label_names = _labels(path, whole, names)
    ids = _ids(path, whole, names)
    table, _ = read_parquet(path, "dataset", row_range=rows,
                            columns=[name for name in present if name not in small])
    first, stop = rows
    return (table, metadata, labels[first:stop], label_names,
            None if ids is None else ids[first:stop])


def _label_and_id_arrays(dataset: ImageDataset | TextDataset) -> dict[str, pa.Array]:
    """The label column (original values when they were mapped) and the id column, by name."""
    names = dataset.column_names
    if dataset.label_names is None:
        labels = pa.array(dataset.labels, type=pa.int64())
    else:
        labels = pa.array([dataset.label_names[int(c)] for c in dataset.labels])
    arrays = {names.label: labels}
    if names.id is not None and dataset.ids is not None:
        arrays[names.id] = pa.array(dataset.ids.tolist())
    return arrays


def _extra_arrays(columns: Mapping[str, np.ndarray]) -> dict[str, pa.Array]:
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise TypeError(
                f"column {name!r} (dtype {values.dtype}) cannot be stored in Parquet: {error}"
            ) from error
    return arrays


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    channels = image.shape[0]
    pixels = np.rint(image * 255.0).astype(np.uint8)
    if channels == 1:
        picture = Image.fromarray(pixels[0])  # uint8 H x W -> mode "L"
    else:  # uint8 H x W x 3 / 4 -> mode "RGB" / "RGBA"
        picture = Image.fromarray(np.ascontiguousarray(np.transpose(pixels, (1, 2, 0))))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_dataset(
    dataset: ImageDataset, path: PathLike, *, image_format: ImageFormat = "array"
) -> Path:
    """Write an image dataset to Parquet atomically (schema ``dataset/1``).

    The image shape is stored as ``acgate.image_shape`` in either format. The label, image
    and id columns get the names the dataset was read with (:attr:`ImageDataset.column_names`)
    and mapped labels their original values, so the file reads back as it was read.

    Args:
        dataset: The dataset.
        path: Destination file (its folder is created when missing).
        image_format: ``"array"`` (default): lossless ``fixed_size_list<float32>`` with the
            shape in ``acgate.image_shape``. ``"png"``: a Hugging Face–style struct
            ``{bytes, path}`` of PNG bytes; pixels are quantised to 8 bits (``k / 255``), and
            only 1, 3 or 4 channels are allowed. A 4-channel image is written as RGBA but read
            back as RGB: the readers drop alpha (see :func:`read_image_dataset`).

    Returns:
        The written path.

    Raises:
        ValueError: Unknown ``image_format`` or a channel count PNG cannot hold.
    """
    n_rows = len(dataset)
    channels, height, width = dataset.image_shape
    if image_format == "array":
        flat = pa.array(dataset.images.reshape(-1), type=pa.float32())
        image_array: pa.Array = pa.FixedSizeListArray.from_arrays(flat, channels * height * width)
    elif image_format == "png":
        if channels not in _PIL_MODE_BY_CHANNELS:
            raise ValueError(
                f"PNG holds 1, 3 or 4 channels; dataset {dataset.name!r} has {channels} "
                f"(use image_format='array')"
            )
        blobs = [_encode_png(image) for image in dataset.images]
        image_array = pa.StructArray.from_arrays(
            [pa.array(blobs, type=pa.binary()), pa.nulls(n_rows, type=pa.string())],
            names=["bytes", "path"],
        )
    else:
        raise ValueError(f"image_format must be 'array' or 'png', got {image_format!r}")
    names = dataset.column_names
    arrays = {names.image: image_array, **_label_and_id_arrays(dataset)}
    arrays.update(_extra_arrays(dataset.columns))
    table = pa.table(arrays)
    extra = {_NAME_KEY: dataset.name, _SHAPE_KEY: json.dumps([channels, height, width])}
    return write_parquet(table, path, "dataset", metadata=dataset.metadata, extra=extra)


def read_text_dataset(
    path: PathLike, *, text_column: str = "text", label_column: str = "label",
    id_column: str | None = None, rows: tuple[int, int] | None = None,
) -> TextDataset:
    """Read a text dataset from Parquet (a string column + a label column).

    Labels and ids as :func:`read_image_dataset` reads them.

    Args:
        path: The Parquet file.
        text_column: Name of the text column.
        label_column: Name of the label column (integers, or values mapped to classes).
        id_column: Name of a column of unique, non-null row ids, or ``None``.
        rows: Only the rows ``[first, stop)`` (labels mapped and ids checked over the whole
            file); ``None``: every row.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Not a regular file, not Parquet, duplicate column names, newer schema,
            missing column (named with its option), null / negative labels, null or repeated
            ids, null or empty texts (the message names the file, the column and the row).
        TypeError: When the text column is not a string column or the label column is of an
            unsupported type.
    """
    names = Columns(label=label_column, text=text_column, id=id_column)
    table, metadata, labels, label_names, ids = _read_rows(path, names, ("label", "text", "id"),
                                                           rows)
    column = table.column(text_column)
    kind = column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)):
        raise TypeError(f"{path}: column {text_column!r} must be a string column, got {kind}")
    texts = column.to_pylist()
    for row, text in enumerate(texts):
        if text is None:
            raise ValueError(f"{path}: column {text_column!r} row {row} is null")
        if not text.strip():
            raise ValueError(f"{path}: column {text_column!r} row {row} is an empty text")
    return TextDataset(
        texts=texts,
        labels=labels,
        columns=_extra_columns(table, (text_column, label_column, id_column)),
        metadata=decode_metadata(path, metadata),
        name=_dataset_name(path, metadata),
        ids=ids,
        label_names=label_names,
        column_names=names,
    )


def write_text_dataset(dataset: TextDataset, path: PathLike) -> Path:
    """Write a text dataset to Parquet atomically (schema ``dataset/1``).

    Columns are named, and mapped labels written, as the dataset was read (see
    :func:`write_image_dataset`).

    Returns:
        The written path.
    """
    arrays = {
        dataset.column_names.text: pa.array(list(dataset.texts), type=pa.string()),
        **_label_and_id_arrays(dataset),
    }
    arrays.update(_extra_arrays(dataset.columns))
    return write_parquet(
        pa.table(arrays), path, "dataset", metadata=dataset.metadata,
        extra={_NAME_KEY: dataset.name},
    )


def dataset_modality(path: PathLike, modality: Modality | None = None,
                     columns: Columns = DEFAULT_COLUMNS) -> Modality:
    """``"image"`` or ``"text"``: the given one, or the one the file's columns say.

    A file with the image column is an image dataset, one with only the text column a text
    dataset; one with neither is taken as an image dataset (its reader then names the missing
    image column).

    Raises:
        ValueError: An unknown modality, or a file with both columns and no ``modality``.
    """
    if modality is None:
        names = set(open_parquet(path).schema_arrow.names)
        if columns.image in names and columns.text in names:
            raise ValueError(
                f"{path} has both an {columns.image!r} and a {columns.text!r} column; pass "
                f"modality='image' or modality='text' (--modality image / text)")
        modality = "text" if columns.text in names else "image"
    if modality not in ("image", "text"):
        raise ValueError(f"{path}: modality must be 'image' or 'text', got {modality!r}")
    return modality


def read_dataset(
    path: PathLike,
    modality: Modality | None = None,
    *,
    max_decoded_bytes: int | None = DEFAULT_MAX_DECODED_BYTES,
    columns: Columns = DEFAULT_COLUMNS,
    rows: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageDataset | TextDataset:
    """Read an image or a text dataset, choosing by the columns present.

    Args:
        path: The Parquet file.
        modality: ``"image"`` or ``"text"``; ``None`` picks from the columns (see
            :func:`dataset_modality`).
        max_decoded_bytes: Memory budget of an image dataset (see
            :func:`read_image_dataset`); ignored for text.
        columns: The file's names of the label, image, text and id columns.
        rows: Only the rows ``[first, stop)`` (a shard; see :func:`read_image_dataset`).
        channels: An image dataset's channel count (see :func:`read_image_dataset`).

    Raises:
        ValueError: Unknown modality, both columns present with ``modality=None``, or any
            error of the reader.
    """
    if modality is None:
        present = open_parquet(path).schema_arrow.names
        if columns.image not in present and columns.text not in present:
            raise ValueError(
                f"{path} has neither an {columns.image!r} nor a {columns.text!r} column "
                f"({COLUMN_OPTIONS['image']}, {COLUMN_OPTIONS['text']}); its columns are: "
                f"{', '.join(map(repr, present)) or 'none'}")
    modality = dataset_modality(path, modality, columns)
    if modality == "image":
        return read_image_dataset(path, image_column=columns.image, label_column=columns.label,
                                  id_column=columns.id, max_decoded_bytes=max_decoded_bytes,
                                  rows=rows, channels=channels)
    return read_text_dataset(path, text_column=columns.text, label_column=columns.label,
                             id_column=columns.id, rows=rows)


# --------------------------------------------------------------------------- fingerprint


def dataset_fingerprint(dataset: ImageDataset | TextDataset) -> str:
    """SHA-256 (hex) of a dataset's labels and content, stable across runs and machines.

    Covers the image shape, the labels (little-endian int64) and the image values
    (little-endian float32, C order) — or, for text, every text as length-prefixed UTF-8.
    Extra columns, metadata and the name are not covered.
    """
    if not isinstance(dataset, (ImageDataset, TextDataset)):
        raise TypeError(
            "dataset_fingerprint takes an ImageDataset or TextDataset, "
            f"got {type(dataset).__name__}"
        )
    digest = hashlib.sha256()
    labels = np.ascontiguousarray(dataset.labels, dtype="<i8")
    if isinstance(dataset, ImageDataset):
        digest.update(b"acgate-dataset-fingerprint/1\x00image\x00")
        digest.update(json.dumps(list(dataset.images.shape)).encode())
        digest.update(memoryview(labels).cast("B"))
        images = np.ascontiguousarray(dataset.images, dtype="<f4")
        digest.update(memoryview(images).cast("B"))
    else:
        digest.update(b"acgate-dataset-fingerprint/1\x00text\x00")
        digest.update(len(dataset).to_bytes(8, "little"))
        digest.update(memoryview(labels).cast("B"))
        for text in dataset.texts:
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()
