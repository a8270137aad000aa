"""Figures of images: one example per class, the most confidently wrong predictions, and one
prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from mnist_jax.plots._common import (
    _OTHER,
    _RIGHT,
    _TRUE,
    _WRONG,
    _class_names,
    _grey_range,
    _grid,
    _images,
    _labels,
    _name,
    _show_image,
    _square,
)

__all__ = ["plot_samples_per_class", "plot_top_errors", "plot_sample_prediction"]


def plot_samples_per_class(
    images: Any, labels: Any, class_names: Sequence[str] | None = None
) -> Figure:
    """One example of each class: the first image with that label, titled with the class name.

    Classes are shown in order, wrapping after 10 per row. A class with no image in the
    data keeps its place as an empty panel titled with its name and "(none)", so a
    missing class is visible rather than silently dropped. The number of classes is
    ``len(class_names)`` if given, else the largest label + 1.
    """
    batch = _images(images)
    targets = _labels(labels)
    if len(batch) != len(targets):
        raise ValueError(f"{len(batch)} images but {len(targets)} labels")
    if class_names is not None:
        num_classes = len(class_names)
    else:
        num_classes = int(targets.max()) + 1 if targets.size else 0
    names = _class_names(class_names, num_classes)
    if num_classes == 0:
        fig = Figure(figsize=(4, 1.5), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)
        return fig

    vmin, vmax = _grey_range(batch)
    fig, axes = _grid(num_classes, panel_size=1.3, title_lines=1)
    for cls, ax in enumerate(axes):
        found = np.flatnonzero(targets == cls)
        if found.size:
            _show_image(ax, batch[found[0]], vmin, vmax)
            ax.set_title(names[cls])
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{names[cls]} (none)", color=_WRONG)
            ax.text(
                0.5,
                0.5,
                "no\nexample",
                ha="center",
                va="center",
                color="0.5",
                transform=ax.transAxes,
            )
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
    entries = _error_rows(errors)
    if not entries:
        fig = Figure(figsize=(4, 1.5), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(
            0.5, 0.5, "no misclassified examples", ha="center", va="center", transform=ax.transAxes
        )
        return fig

    batch = _images(images)
    largest = max(max(int(e["true"]), int(e["predicted"])) for e in entries)
    names = (
        _class_names(class_names, 0)
        if class_names is not None
        else [str(i) for i in range(largest + 1)]
    )
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


def _error_rows(errors: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A list of per-error dicts, from either that list or a dict of equal-length arrays."""
    if not isinstance(errors, Mapping):
        return list(errors)
    columns = {key: np.asarray(values).ravel() for key, values in errors.items()}
    valid = columns.pop("valid", None)
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    if valid is not None:
        rows = [row for row, ok in zip(rows, valid) if ok]
    return rows


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
    vmin, vmax = _grey_range(picture)
    _show_image(image_ax, picture, vmin, vmax)
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
    bar_ax.set_xlabel("class")
    bar_ax.set_ylabel("probability")
    bar_ax.set_ylim(0, 1.12)
    bar_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    bar_ax.set_title("class probabilities")
    bar_ax.annotate(
        f"{probs[predicted]:.1%}",
        (predicted, probs[predicted]),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        fontsize=9,
    )
    if right:
        handles = [Patch(color=_RIGHT, label="predicted = true")]
    else:
        handles = [Patch(color=_WRONG, label="predicted (wrong)"), Patch(color=_TRUE, label="true")]
        # The true class's bar is often too short to see: a mark at its foot and its value on top.
        bar_ax.plot(true, 0, marker="^", color=_TRUE, markersize=9, clip_on=False, zorder=3)
        bar_ax.annotate(
            f"{probs[true]:.1%}",
            (true, probs[true]),
            xytext=(0, 10),  # above the mark
            textcoords="offset points",
            ha="center",
            fontsize=9,
            color=_TRUE,
        )
    bar_ax.legend(
        handles=handles, loc="upper right" if predicted < num_classes / 2 else "upper left"
    )
    bar_ax.grid(True, axis="y", alpha=0.3)
    return fig
