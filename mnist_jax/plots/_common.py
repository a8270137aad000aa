"""Private helpers shared by the figure modules.

Class names, image shapes, grey scale, panel grids, colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

_MAX_COLUMNS = 10  # image grids wrap after this many panels
_WRONG = "tab:red"
_TRUE = "tab:blue"
_RIGHT = "tab:green"
_OTHER = "0.75"


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """The names to show for classes 0..num_classes-1 (defaults to their numbers)."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) < num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the data has {num_classes} classes"
        )
    return names


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _square(image: np.ndarray) -> np.ndarray:
    """One image as a 2-D array: reshapes a flat vector of square length, drops a channel of 1."""
    if image.ndim == 1:
        side = math.isqrt(image.size)
        if side * side != image.size:
            raise ValueError(f"cannot reshape a flat image of length {image.size} to a square")
        return image.reshape(side, side)
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image (or a flat one), got shape {image.shape}")
    return image


def _images(images: Any) -> np.ndarray:
    """A batch of images as (N, H, W)."""
    array = np.asarray(images)
    if array.ndim == 2:  # (N, H*W)
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise ValueError(f"cannot reshape flat images of length {array.shape[1]} to squares")
        return array.reshape(array.shape[0], side, side)
    if array.ndim == 4 and array.shape[-1] == 1:  # (N, H, W, 1)
        return array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H*W), got {array.shape}")
    return array


def _grey_range(images: np.ndarray) -> tuple[float | None, float | None]:
    """A fixed grey scale for the whole batch, so panels are comparable."""
    if images.dtype == np.uint8:
        return 0.0, 255.0
    if images.size and np.issubdtype(images.dtype, np.floating):
        low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if low >= 0.0 and high <= 1.0:
            return 0.0, 1.0
    return None, None  # auto-scale each image


def _show_image(
    ax: Axes, image: np.ndarray, vmin: float | None = None, vmax: float | None = None
) -> None:
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(num_panels: int, panel_size: float, title_lines: int) -> tuple[Figure, list[Axes]]:
    """A figure with `num_panels` image axes in rows of at most _MAX_COLUMNS."""
    columns = min(num_panels, _MAX_COLUMNS)
    rows = math.ceil(num_panels / columns)
    height = rows * (panel_size + 0.2 * title_lines) + 0.4
    fig = Figure(figsize=(columns * panel_size + 0.2, height), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[num_panels:]:
        ax.set_axis_off()
    return fig, axes[:num_panels]


def _labels(labels: Any) -> np.ndarray:
    """Integer labels; one-hot rows are turned into their class index."""
    array = np.asarray(labels)
    if array.ndim == 2:
        array = array.argmax(axis=1)
    if array.ndim != 1:
        raise ValueError(
            f"expected labels of shape (N,) or one-hot (N, C), got {np.asarray(labels).shape}"
        )
    return array.astype(np.int64)
