"""Figures of images: one example per class, the most confidently wrong predictions, and one
prediction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

_MAX_COLUMNS = 10  # image grids wrap after this many panels
_WRONG, _TRUE, _RIGHT, _OTHER = "tab:red", "tab:blue", "tab:green", "0.75"


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
    """One grey scale for the whole batch, so panels are comparable: uint8 on 0..255, floats in
    [0, 1] on 0..1, anything else auto-scaled (None)."""
    if images.dtype == np.uint8:
        return 0.0, 255.0
    if images.size and np.issubdtype(images.dtype, np.floating):
        low, high = float(np.nanmin(images)), float(np.nanmax(images))
        if low >= 0.0 and high <= 1.0:
            return 0.0, 1.0
    return None, None


def _show_image(ax: Axes, image: np.ndarray, vmin: float | None, vmax: float | None) -> None:
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


def _message(text: str) -> Figure:
    """A small figure that says `text` instead of showing nothing."""
    fig = Figure(figsize=(4, 1.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig


def plot_samples_per_class(
    images: Any, labels: Any, class_names: Sequence[str] | None = None
) -> Figure:
    """One example of each class: the first image with that label, titled with the class name.

    Classes are shown in order, wrapping after 10 per row. A class with no image in the
    data keeps its place as an empty panel titled with its name and "(none)", so a
    missing class is visible rather than silently dropped. The number of classes is
    ``len(class_names)`` if given, else the largest label + 1. Labels may be one-hot.
    """
    batch = _images(images)
    targets = np.asarray(labels)
    if targets.ndim == 2:
        targets = targets.argmax(axis=1)
    if targets.ndim != 1:
        raise ValueError(
            f"expected labels of shape (N,) or one-hot (N, C), got {np.asarray(labels).shape}"
        )
    targets = targets.astype(np.int64)
    if len(batch) != len(targets):
        raise ValueError(f"{len(batch)} images but {len(targets)} labels")
    if class_names is not None:
        num_classes = len(class_names)
    else:
        num_classes = int(targets.max()) + 1 if targets.size else 0
    names = _class_names(class_names, num_classes)
    if num_classes == 0:
        return _message("no images")

    vmin, vmax = _grey_range(batch)
    fig, axes = _grid(num_classes, panel_size=1.3, title_lines=1)
    for cls, ax in enumerate(axes):
        found = np.flatnonzero(targets == cls)
        if found.size:
            _show_image(ax, batch[found[0]], vmin, vmax)
            ax.set_title(names[cls])
        else:
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"{names[cls]} (none)", color=_WRONG)
            centre = {"ha": "center", "va": "center", "transform": ax.transAxes}
            ax.text(0.5, 0.5, "no\nexample", color="0.5", **centre)
    fig.suptitle("one example per class")
    return fig


def plot_top_errors(
    images: Any,
    errors: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The misclassified images in `errors`, in the given order (most confidently wrong first).

    Each error is a dict ``{"index", "true", "predicted", "confidence"}`` (confidence in
    [0, 1], the probability given to the wrong prediction), as in the ``top_errors`` list
    of `metrics.classification_report`; the dict of arrays returned by `metrics.top_errors`
    works too (rows whose ``valid`` is False are skipped). Panel ``i`` shows ``images[index]``
    titled ``"pred P (conf%)\\ntrue T"`` with the image's index below it.
    With no errors the figure just says "no misclassified examples".
    """
    if isinstance(errors, Mapping):  # a dict of equal-length arrays: one dict per row
        columns = {key: np.asarray(values).ravel() for key, values in errors.items()}
        valid = columns.pop("valid", None)
        entries = [dict(zip(columns, values)) for values in zip(*columns.values())]
        if valid is not None:
            entries = [row for row, ok in zip(entries, valid) if ok]
    else:
        entries = list(errors)
    if not entries:
        return _message("no misclassified examples")

    batch = _images(images)
    if class_names is None:
        largest = max(max(int(e["true"]), int(e["predicted"])) for e in entries)
        class_names = [str(i) for i in range(largest + 1)]
    names = _class_names(class_names, 0)
    vmin, vmax = _grey_range(batch)
    fig, axes = _grid(len(entries), panel_size=1.5, title_lines=2)
    for entry, ax in zip(entries, axes):
        index = int(entry["index"])
        _show_image(ax, batch[index], vmin, vmax)
        predicted = _name(names, int(entry["predicted"]))
        true = _name(names, int(entry["true"]))
        confidence = float(entry["confidence"])
        ax.set_title(f"pred {predicted} ({confidence:.1%})\ntrue {true}", fontsize=9)
        ax.set_xlabel(f"#{index}", fontsize=8, color="0.4")
    fig.suptitle("most confidently wrong predictions")
    return fig


def plot_sample_prediction(
    image: Any, probabilities: Any, true_label: int, class_names: Sequence[str] | None = None
) -> Figure:
    """One image and the model's class probabilities for it.

    Left: the image titled ``"predicted P (conf%) / true T"``. Right: a bar per class;
    the predicted bar is green when right and red when wrong, the true class's bar is
    blue, marked at its foot and labelled with its probability however short it is (a correct
    prediction is one green bar), the others grey, with a legend.
    """
    picture = _square(np.asarray(image))
    probs = np.asarray(probabilities, dtype=float).ravel()
    num_classes = probs.size
    true = int(true_label)
    if not 0 <= true < num_classes:
        raise ValueError(f"true_label {true} is not a class of the {num_classes} probabilities")
    names = _class_names(class_names, num_classes)[:num_classes]
    predicted = int(np.argmax(probs))
    right = predicted == true

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    image_ax, bar_ax = fig.subplots(1, 2, width_ratios=[1, 2])
    _show_image(image_ax, picture, *_grey_range(picture))
    image_ax.set_title(
        f"predicted {names[predicted]} ({probs[predicted]:.1%}) / true {names[true]}",
        color="black" if right else _WRONG,
        fontsize=10,
    )

    colours = [_OTHER] * num_classes
    colours[true] = _TRUE
    colours[predicted] = _RIGHT if right else _WRONG
    positions = np.arange(num_classes)
    bar_ax.bar(positions, probs, color=colours)
    long_names = max(len(name) for name in names) > 3
    bar_ax.set_xticks(
        positions,
        names,
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
        rotation_mode="anchor",
    )
    bar_ax.set(xlabel="class", ylabel="probability", ylim=(0, 1.12), title="class probabilities")
    bar_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    value_label = {"textcoords": "offset points", "ha": "center", "fontsize": 9}
    bar_ax.annotate(
        f"{probs[predicted]:.1%}", (predicted, probs[predicted]), xytext=(0, 3), **value_label
    )
    if right:
        handles = [Patch(color=_RIGHT, label="predicted = true")]
    else:
        handles = [Patch(color=_WRONG, label="predicted (wrong)"), Patch(color=_TRUE, label="true")]
        # The true class's bar is often too short to see: a mark at its foot and its value on top.
        bar_ax.plot(true, 0, marker="^", color=_TRUE, markersize=9, clip_on=False, zorder=3)
        bar_ax.annotate(  # above the mark
            f"{probs[true]:.1%}", (true, probs[true]), xytext=(0, 10), color=_TRUE, **value_label
        )
    bar_ax.legend(
        handles=handles, loc="upper right" if predicted < num_classes / 2 else "upper left"
    )
    bar_ax.grid(True, axis="y", alpha=0.3)
    return fig
