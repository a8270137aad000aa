"""Figures for MNIST experiments, as pure functions from arrays to `matplotlib.figure.Figure`.

Nothing here trains, loads data or touches pyplot: every function builds a fresh
`Figure` (no global state, no GUI backend, safe to call from scripts and threads),
so a notebook can show the result (a Figure returned by a cell displays as a PNG once
`%matplotlib inline` has run) and an experiment can write it with `save_figure`.

Inputs are numpy-like (jax arrays work: everything goes through `np.asarray`).
Images may be square, ``(N, 28, 28)``, or flattened, ``(N, 784)``; uint8 images are
drawn on a 0..255 grey scale, floats in [0, 1] on 0..1, anything else auto-scaled.
Functions that show classes take ``class_names`` (default ``"0"``, ``"1"``, ...).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

__all__ = [
    "plot_samples_per_class",
    "plot_training_curves",
    "plot_confusion_matrix",
    "plot_top_errors",
    "plot_sample_prediction",
    "plot_accuracy_distribution",
    "plot_learning_curves_band",
    "save_figure",
]

_MAX_COLUMNS = 10  # image grids wrap after this many panels
_WRONG = "tab:red"
_TRUE = "tab:blue"
_RIGHT = "tab:green"
_OTHER = "0.75"


# --------------------------------------------------------------------------- helpers


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """The names to show for classes 0..num_classes-1 (defaults to their numbers)."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) < num_classes:
        raise ValueError(f"class_names has {len(names)} names but the data has {num_classes} classes")
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


def _show_image(ax: Axes, image: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> None:
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
        raise ValueError(f"expected labels of shape (N,) or one-hot (N, C), got {np.asarray(labels).shape}")
    return array.astype(np.int64)


def _t_critical(dof: int) -> float:
    """The two-sided 95% critical value of Student's t with `dof` degrees of freedom."""
    from scipy import stats  # scipy comes with jax; imported lazily, only the sweep plots need it

    return float(stats.t.ppf(0.975, dof))


# --------------------------------------------------------------------------- figures


def plot_samples_per_class(images: Any, labels: Any, class_names: Sequence[str] | None = None) -> Figure:
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
            ax.text(0.5, 0.5, "no\nexample", ha="center", va="center", color="0.5", transform=ax.transAxes)
    fig.suptitle("one example per class")
    return fig


def plot_training_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Loss and accuracy per epoch, training vs validation, side by side.

    `history` is a list of per-epoch dicts with keys ``train_loss``, ``train_accuracy``,
    ``val_loss`` and ``val_accuracy`` (accuracies as fractions in [0, 1]); epochs are
    taken from an ``epoch`` key when every entry has one, else numbered 1..E. A metric
    missing from every entry (e.g. no validation set) is left out of its panel.
    """
    records = list(history)
    if not records:
        raise ValueError("history is empty: nothing to plot")
    if all("epoch" in record for record in records):
        epochs = np.asarray([record["epoch"] for record in records])
    else:
        epochs = np.arange(1, len(records) + 1)

    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        drawn = 0
        for split, label, colour in (("train", "training", "tab:blue"), ("val", "validation", "tab:orange")):
            key = f"{split}_{metric}"
            if not any(key in record for record in records):
                continue
            values = np.asarray([record.get(key, np.nan) for record in records], dtype=float)
            ax.plot(epochs, values, marker="o", markersize=4, label=label, color=colour)
            drawn += 1
        if not drawn:
            raise ValueError(f"history has neither train_{metric} nor val_{metric}")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return fig


def plot_confusion_matrix(
    confusion: Any, class_names: Sequence[str] | None = None, normalize: bool = False
) -> Figure:
    """A heatmap of the confusion matrix (rows: true label, columns: predicted label).

    Each cell is annotated with its count (or, with ``normalize=True``, its share of the
    true class's row, as a percentage with one decimal). The title gives the overall accuracy,
    trace / sum, always computed from the counts. Colours use a square-root scale so
    the few off-diagonal errors stay visible next to a diagonal of thousands.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {counts.shape}")
    num_classes = counts.shape[0]
    names = _class_names(class_names, num_classes)
    counts = counts.astype(float)
    integral = bool(np.all(np.isfinite(counts))) and np.array_equal(counts, np.round(counts))

    total = counts.sum()
    if total > 0:
        correct = np.trace(counts)
        amount = f" ({int(correct)}/{int(total)})" if integral else ""
        accuracy = f"accuracy {correct / total:.2%}{amount}"
    else:
        accuracy = "accuracy n/a (empty matrix)"

    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
        fmt, colour_label = ".1%", "share of the true class"
    elif integral:
        values, fmt, colour_label = counts.astype(np.int64), "d", "count"
    else:
        values, fmt, colour_label = counts, ".3g", "count"

    from matplotlib.colors import PowerNorm

    side = max(4.5, 0.55 * num_classes + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
    sns.heatmap(
        values,
        ax=ax,
        annot=True,
        fmt=fmt,
        cmap="Blues",
        norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax),
        square=True,
        linewidths=0.5,
        linecolor="white",
        cbar=True,
        cbar_kws={"label": colour_label},
        annot_kws={"fontsize": 9 if num_classes <= 10 else 7},
        xticklabels=names,
        yticklabels=names,
    )
    if normalize:
        ax.collections[0].colorbar.formatter = PercentFormatter(xmax=1.0)
        ax.collections[0].colorbar.update_ticks()
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0 if max(len(n) for n in names) <= 3 else 45)
    ax.set_title(f"confusion matrix{' (row-normalised)' if normalize else ''}: {accuracy}")
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
        ax.text(0.5, 0.5, "no misclassified examples", ha="center", va="center", transform=ax.transAxes)
        return fig

    batch = _images(images)
    largest = max(max(int(e["true"]), int(e["predicted"])) for e in entries)
    names = _class_names(class_names, 0) if class_names is not None else [str(i) for i in range(largest + 1)]
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
    blue (a correct prediction is one green bar), the others grey, with a legend.
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
    bar_ax.set_xticks(positions, names, rotation=45 if long_names else 0, ha="right" if long_names else "center",
                      rotation_mode="anchor")
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
    bar_ax.legend(handles=handles, loc="upper right" if predicted < num_classes / 2 else "upper left")
    bar_ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_accuracy_distribution(results: Mapping[str, Sequence[float]]) -> Figure:
    """Test accuracy across seeds, one column per configuration.

    Each seed is a dot over a light box plot; a black diamond marks the mean with a
    bar for its 95% confidence interval (Student's t, mean ± t·s/√n; no bar for a
    single seed). Tick labels give the number of seeds and the mean ± half-width.
    Accuracies are fractions in [0, 1], shown as percent.
    """
    labels = [str(label) for label in results]
    samples = [np.asarray(values, dtype=float).ravel() for values in results.values()]
    if not labels:
        raise ValueError("results is empty: nothing to plot")
    for label, values in zip(labels, samples):
        if values.size == 0:
            raise ValueError(f"configuration {label!r} has no accuracies")

    xs = np.concatenate([np.full(values.size, i) for i, values in enumerate(samples)])
    ys = np.concatenate(samples)
    fig = Figure(figsize=(max(5.0, 1.8 * len(labels) + 1.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    # matplotlib's own box plot: seaborn 0.13's boxplot passes the `vert` argument matplotlib 3.11 deprecates
    ax.boxplot(
        samples,
        positions=positions,
        widths=0.5,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "0.92", "edgecolor": "0.5"},
        medianprops={"color": "0.5"},
        whiskerprops={"color": "0.5"},
        capprops={"color": "0.5"},
        zorder=1,
    )
    sns.stripplot(x=xs, y=ys, ax=ax, order=positions, color="tab:blue", size=5, alpha=0.7, jitter=0.12, zorder=3)

    tick_labels = []
    for i, values in enumerate(samples):
        mean = float(values.mean())
        if values.size > 1:
            half = _t_critical(values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
            ax.errorbar(
                i + 0.3, mean, yerr=half, fmt="D", color="black", markersize=5, capsize=4, zorder=4,
                label="mean ± 95% CI" if i == 0 else None,
            )
            tick_labels.append(f"{labels[i]}\nn={values.size}, {mean:.2%} ± {half:.2%}")
        else:
            ax.plot(i + 0.3, mean, "D", color="black", markersize=5, zorder=4, label="mean" if i == 0 else None)
            tick_labels.append(f"{labels[i]}\nn=1, {mean:.2%}")
    ax.set_xticks(positions, tick_labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("configuration")
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("test accuracy across seeds")
    seed_marker = Line2D([], [], linestyle="", marker="o", color="tab:blue", alpha=0.7, label="per seed")
    handles = [seed_marker, *ax.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="best", fontsize=9)
    return fig


def plot_learning_curves_band(curves: Mapping[str, Any], metric_name: str = "validation accuracy") -> Figure:
    """A metric per epoch across ensemble members or seeds, one line and band per configuration.

    Each value is an array ``(members, epochs)`` (a 1-D array counts as one member);
    the line is the mean over members and the band ± one standard deviation (ddof=1;
    no band for a single member). Epochs are numbered from 1. When `metric_name`
    mentions accuracy and the values lie in [0, 1] the y axis is shown as percent.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    in_unit_range = True
    palette = sns.color_palette(n_colors=len(curves))
    for (label, values), colour in zip(curves.items(), palette):
        runs = np.asarray(values, dtype=float)
        if runs.ndim == 1:
            runs = runs[None, :]
        if runs.ndim != 2 or runs.shape[1] == 0:
            raise ValueError(f"curves[{label!r}] must have shape (members, epochs), got {runs.shape}")
        epochs = np.arange(1, runs.shape[1] + 1)
        mean = runs.mean(axis=0)
        ax.plot(epochs, mean, marker="o", markersize=3, color=colour, label=f"{label} (n={runs.shape[0]})")
        if runs.shape[0] > 1:
            std = runs.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        in_unit_range &= bool(np.nanmin(runs) >= 0.0 and np.nanmax(runs) <= 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if "accuracy" in metric_name.lower() and in_unit_range:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{metric_name} (mean ± 1 std)")
    ax.legend()
    return fig


# --------------------------------------------------------------------------- files


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write `fig` to `path` atomically and return the path.

    Parent directories are created. The image goes to a hidden temporary file in the
    same directory, which then replaces `path` with `os.replace`, so a reader never
    sees a half-written file and a crash leaves the old file intact. The format follows
    the suffix (PNG when there is none or it is ``.png``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = target.suffix[1:].lower() or "png"
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as handle:  # a normal open, so the file gets the usual umask permissions
            fig.savefig(handle, format=fmt, dpi=dpi)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
