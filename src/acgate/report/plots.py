"""PNG plots of a scan: flag shares, silhouettes, 3-D projections, sprites, difference maps.

Every function returns PNG bytes and draws on its own :class:`matplotlib.figure.Figure` with the
Agg canvas (no pyplot, no global state, no display needed). Nothing here writes files;
:mod:`acgate.report.html` does, atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from acgate.core.result import DetectionResult

VERDICT_COLOURS: Mapping[str, str] = {
    "clean": "#1e8449",
    "poisoned": "#c0392b",
    "skipped": "#95a5a6",
}
#: Cluster colours of the 3-D projection; the suspicious cluster is always red.
CLUSTER_COLOURS: tuple[str, ...] = ("#2e86c1", "#f39c12", "#8e44ad", "#16a085", "#7f8c8d")
SUSPICIOUS_COLOUR = "#c0392b"
#: Colours of the projection by final flag, and of a near miss's bar.
FLAGGED_COLOUR = "#c0392b"
KEPT_COLOUR = "#5d6d7e"
NEAR_MISS_COLOUR = "#d68910"

_PNG_METADATA = {"Software": None}  # no version string: same input, same bytes


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=_PNG_METADATA)
    return buffer.getvalue()


def silhouette_chart(result: DetectionResult, *, threshold: float | None = None) -> bytes:
    """Bar chart of the silhouette score per class, coloured by verdict.

    Args:
        result: The detection result.
        threshold: Global silhouette threshold, drawn as a dashed line (``None``: no line).
            Per-class thresholds (``ClassReport.thresholds["silhouette"]``) that differ from it
            are drawn as short black ticks on their bars.

    Returns:
        PNG bytes.
    """
    labels = [str(report.label) for report in result.classes]
    values = [report.silhouette if report.silhouette is not None else 0.0
              for report in result.classes]
    colours = [VERDICT_COLOURS.get(report.verdict, "#34495e") for report in result.classes]
    figure = _figure(max(4.0, 0.6 * len(labels) + 2.0), 3.2)
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    axes.bar(positions, values, color=colours)
    for position, report in zip(positions, result.classes, strict=True):
        if report.verdict == "skipped":
            axes.text(position, 0.0, "skipped", rotation=90, ha="center", va="bottom",
                      fontsize=8, color="#555555")
        own = report.thresholds.get("silhouette")
        if own is not None and (threshold is None or not math.isclose(own, threshold)):
            axes.hlines(own, position - 0.4, position + 0.4, colors="black", linewidth=2)
    if threshold is not None:
        axes.axhline(threshold, color="black", linestyle="--", linewidth=1,
                     label=f"threshold {threshold:g}")
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xticks(positions, labels)
    axes.set_xlabel("class")
    axes.set_ylabel("silhouette score")
    axes.set_title("Silhouette of the clustering, per class")
    axes.axhline(0.0, color="#333333", linewidth=0.5)
    figure.tight_layout()
    return _png(figure)


def flagged_chart(result: DetectionResult, *, near_misses: Sequence[int] = ()) -> bytes:
    """Bar chart of the share of each class flagged, coloured by verdict (near misses orange).

    Args:
        result: The detection result.
        near_misses: Labels of clean classes that came close to being flagged (their bar is
            drawn orange at a minimal height, so that they show).

    Returns:
        PNG bytes.
    """
    labels = [report.label for report in result.classes]
    shares = []
    for report in result.classes:
        rows = result.segments == report.label
        shares.append(float(result.is_poison[rows].mean()) if rows.any() else 0.0)
    near = set(near_misses)
    colours = [NEAR_MISS_COLOUR if label in near
               else VERDICT_COLOURS.get(report.verdict, "#34495e")
               for label, report in zip(labels, result.classes, strict=True)]
    heights = [max(share, 0.005) if label in near else share
               for label, share in zip(labels, shares, strict=True)]
    figure = _figure(max(4.0, 0.45 * len(labels) + 1.5), 3.2)
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    axes.bar(positions, heights, color=colours)
    for position, share in zip(positions, shares, strict=True):
        if share > 0:
            axes.text(position, share, f"{share:.1%}", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(positions, [str(label) for label in labels],
                    fontsize=8 if len(labels) <= 30 else 6)
    axes.set_xlabel("class")
    axes.set_ylabel("share of the class flagged")
    axes.set_ylim(0, max(0.05, max(shares, default=0.0) * 1.2))
    axes.set_title("Flagged rows per class (red: poisoned, green: clean, orange: near miss, "
                   "grey: skipped)", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def project_3d(activations: np.ndarray) -> np.ndarray:
    """PCA of ``activations`` (``n x d``) to 3 components, deterministic signs.

    Fewer than 3 available components are padded with zeros.
    """
    data = np.asarray(activations, dtype=np.float64)
    centred = data - data.mean(axis=0, keepdims=True)
    if len(centred) < 2:
        return np.zeros((len(centred), 3))
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:3]
    signs = np.sign(components[np.arange(len(components)),
                               np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    projected = centred @ (components * signs[:, None]).T
    if projected.shape[1] < 3:
        projected = np.hstack([projected, np.zeros((len(projected), 3 - projected.shape[1]))])
    return projected


def class_projection(
    activations: np.ndarray,
    clusters: np.ndarray,
    *,
    label: int,
    suspicious_cluster: int | None = None,
    max_points: int = 4000,
    random_state: int = 0,
) -> bytes:
    """3-D PCA projection of one class's activations, coloured by cluster (Chen et al. Fig. 2).

    Args:
        activations: The class's activations, ``n x d``.
        clusters: Cluster id of each row, shape ``(n,)``.
        label: The class (for the title).
        suspicious_cluster: Cluster drawn in red and named in the legend.
        max_points: Rows drawn at most (a seeded sample of larger classes).
        random_state: Seed of that sample.

    Returns:
        PNG bytes.
    """
    points, clusters = _projected_sample(activations, np.asarray(clusters), max_points,
                                         random_state)
    groups = []
    for rank, cluster in enumerate(np.unique(clusters)):
        suspicious = suspicious_cluster is not None and cluster == suspicious_cluster
        colour = SUSPICIOUS_COLOUR if suspicious else CLUSTER_COLOURS[rank % len(CLUSTER_COLOURS)]
        name = f"cluster {cluster}" + (" (suspicious)" if suspicious else "")
        groups.append((clusters == cluster, colour, name))
    return _scatter_3d(points, groups, f"Class {label}: activations, PCA to 3, by cluster")


def flag_projection(
    activations: np.ndarray,
    flagged: np.ndarray,
    *,
    label: int,
    max_points: int = 4000,
    random_state: int = 0,
) -> bytes:
    """3-D PCA projection of one class's activations, coloured by the final flag.

    The same projection and sample as :func:`class_projection`, so the two views line up.

    Args:
        activations: The class's activations, ``n x d``.
        flagged: Whether each row was flagged, shape ``(n,)``.
        label: The class (for the title).
        max_points: Rows drawn at most (a seeded sample of larger classes).
        random_state: Seed of that sample.

    Returns:
        PNG bytes.
    """
    points, flagged = _projected_sample(activations, np.asarray(flagged, dtype=bool),
                                        max_points, random_state)
    # Kept rows first, so that the flagged ones are drawn on top.
    return _scatter_3d(points, [(~flagged, KEPT_COLOUR, "kept"),
                                (flagged, FLAGGED_COLOUR, "flagged")],
                       f"Class {label}: activations, PCA to 3, by final flag")


def _projected_sample(activations: np.ndarray, values: np.ndarray, max_points: int,
                      random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA-to-3 points and their per-row values, a seeded sample of at most ``max_points``."""
    points = project_3d(activations)
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(random_state).choice(
            len(points), size=max_points, replace=False))
        points, values = points[keep], values[keep]
    return points, values


def _scatter_3d(points: np.ndarray, groups: Sequence[tuple[np.ndarray, str, str]],
                title: str) -> bytes:
    """A 3-D scatter of ``(mask, colour, name)`` groups (empty ones left out), as PNG bytes."""
    figure = _figure(5.0, 4.4)
    axes = figure.add_subplot(projection="3d")
    for members, colour, name in groups:
        if members.any():
            axes.scatter(points[members, 0], points[members, 1], points[members, 2], s=6,
                         color=colour, alpha=0.7, label=f"{name}, n={int(members.sum())}")
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_zlabel("PC 3")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def difference_map(difference: np.ndarray, *, title: str) -> bytes:
    """A mean image difference on a symmetric scale (:func:`acgate.report.shared.mean_difference`).

    One channel (or channels other than three, averaged): red brighter than the reference,
    blue darker, white the same, with a colour bar. Three channels: the difference itself as
    colour around mid-grey (grey the same; a tint shows which channels changed, so a trigger
    of colour alone, invisible in the channels' mean, is seen).

    Args:
        difference: ``C x H x W`` or ``H x W`` finite values.
        title: The plot's title.

    Returns:
        PNG bytes.

    Raises:
        ValueError: On a wrong shape or non-finite values.
    """
    values = np.asarray(difference, dtype=np.float64)
    colour = values.ndim == 3 and values.shape[0] == 3
    if values.ndim == 3 and not colour:
        values = values.mean(axis=0)
    if (values.ndim != (3 if colour else 2) or not values.size
            or not np.isfinite(values).all()):
        raise ValueError(f"difference must be a finite C x H x W or H x W array, got shape "
                         f"{np.asarray(difference).shape}")
    limit = float(np.abs(values).max()) or 1.0
    figure = _figure(3.8, 3.2)
    figure.set_layout_engine("constrained")  # room for the colour bar's labels
    axes = figure.add_subplot()
    if colour:
        axes.imshow(np.clip(0.5 + values.transpose(1, 2, 0) / (2.0 * limit), 0.0, 1.0),
                    interpolation="nearest")
    else:
        shown = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit,
                            interpolation="nearest")
        figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    return _png(figure)


def sprite_sheet(images: np.ndarray, *, columns: int = 12, min_tile_px: int = 32) -> bytes:
    """Grid of images as one PNG (nearest-neighbour upscaled, 1-px gaps).

    Args:
        images: ``n x C x H x W`` (``C`` = 1 or 3) or ``n x H x W`` floats in ``[0, 1]``.
        columns: Images per row.
        min_tile_px: Small images are upscaled by an integer factor to at least this size.

    Returns:
        PNG bytes.

    Raises:
        ValueError: On an empty stack, a wrong shape or values outside ``[0, 1]``.
    """
    from PIL import Image

    stack = np.asarray(images, dtype=np.float64)
    if stack.ndim == 3:
        stack = stack[:, None]
    if stack.ndim != 4 or stack.shape[1] not in (1, 3) or len(stack) == 0:
        raise ValueError(
            f"images must be a non-empty n x C x H x W stack with C = 1 or 3, got shape "
            f"{np.asarray(images).shape}"
        )
    if not np.isfinite(stack).all() or stack.min() < 0.0 or stack.max() > 1.0:
        raise ValueError(
            f"image values must be finite and in [0, 1], got range "
            f"[{np.nanmin(stack):g}, {np.nanmax(stack):g}]"
        )
    n, channels, height, width = stack.shape
    scale = max(1, math.ceil(min_tile_px / max(height, width)))
    tiles = stack.repeat(scale, axis=2).repeat(scale, axis=3)
    tile_h, tile_w = height * scale, width * scale
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    sheet = np.ones((channels, rows * (tile_h + 1) + 1, columns * (tile_w + 1) + 1))
    for i, tile in enumerate(tiles):
        top = 1 + (i // columns) * (tile_h + 1)
        left = 1 + (i % columns) * (tile_w + 1)
        sheet[:, top:top + tile_h, left:left + tile_w] = tile
    pixels = np.round(sheet * 255).astype(np.uint8)
    if channels == 1:
        image = Image.fromarray(pixels[0])  # 2-D uint8: mode L
    else:
        image = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))  # RGB
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def seeded_sample(indices: Sequence[int] | np.ndarray, size: int, random_state: int) -> np.ndarray:
    """Up to ``size`` of ``indices``, chosen with a seeded generator, in ascending order."""
    indices = np.asarray(indices)
    if len(indices) <= size:
        return np.sort(indices)
    chosen = np.random.default_rng(random_state).choice(indices, size=size, replace=False)
    return np.sort(chosen)
