"""Figures of one training run: loss and accuracy curves per epoch, the learning rate per epoch,
and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mnist_jax.plots.images import _class_names


def _epochs(history: Sequence[Mapping[str, float]]) -> tuple[list, np.ndarray]:
    """The records of `history` and their epochs: each one's ``epoch`` where every record has
    one, else 1..E."""
    records = list(history)
    if not records:
        raise ValueError("history is empty: nothing to plot")
    if all("epoch" in record for record in records):
        return records, np.asarray([record["epoch"] for record in records])
    return records, np.arange(1, len(records) + 1)


def _per_epoch(ax, title: str, ylabel: str) -> None:
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def plot_training_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Loss and accuracy per epoch, training vs validation, side by side.

    `history` is a list of per-epoch dicts with keys ``train_loss``, ``train_accuracy``,
    ``val_loss`` and ``val_accuracy`` (accuracies as fractions in [0, 1]); epochs are
    taken from an ``epoch`` key when every entry has one, else numbered 1..E. A metric
    missing from every entry (e.g. no validation set) is left out of its panel.
    """
    records, epochs = _epochs(history)
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        keys = [f"{split}_{metric}" for split in ("train", "val")]
        if not any(key in record for key in keys for record in records):
            raise ValueError(f"history has neither train_{metric} nor val_{metric}")
        for key, label, colour in zip(keys, ("training", "validation"), ("tab:blue", "tab:orange")):
            if any(key in record for record in records):
                values = np.asarray([record.get(key, np.nan) for record in records], dtype=float)
                ax.plot(epochs, values, marker="o", markersize=4, label=label, color=colour)
        _per_epoch(ax, metric, metric)
        ax.legend()
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return fig


def plot_learning_rate(history: Sequence[Mapping[str, float]]) -> Figure:
    """The learning rate per epoch: each record's ``learning_rate`` (the rate of the epoch's last
    step), against its ``epoch`` (or 1..E where a record has none). Records without a rate (an
    optimizer that keeps none, a run recorded before rates were) are left out; where none has
    one, the figure says so instead of drawing a line.
    """
    records, epochs = _epochs(history)
    known = [i for i, record in enumerate(records) if record.get("learning_rate") is not None]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    _per_epoch(ax, "learning rate", "learning rate (last step of the epoch)")
    if not known:
        ax.text(
            0.5, 0.5, "no learning rate recorded", ha="center", va="center", transform=ax.transAxes
        )
        return fig
    rates = np.asarray([records[i]["learning_rate"] for i in known], dtype=float)
    ax.plot(epochs[known].astype(float), rates, marker="o", markersize=4, color="tab:green")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
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

    # A seaborn-style annotated heatmap drawn with matplotlib alone (importing seaborn brings pandas
    # and scipy.stats, over a second of every run's start-up on a small CPU): square cells split by
    # white lines, row 0 at the top, a NaN cell left blank as seaborn leaves it.
    side = max(4.5, 0.55 * num_classes + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
    values = np.ma.masked_invalid(values)
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    mesh = ax.pcolormesh(values, cmap="Blues", norm=norm, linewidths=0.5, edgecolors="white")
    ax.set(xlim=(0, num_classes), ylim=(0, num_classes), aspect="equal")
    ax.invert_yaxis()
    for spine in ax.spines.values():
        spine.set_visible(False)
    percent = PercentFormatter(xmax=1.0) if normalize else None
    fig.colorbar(mesh, ax=ax, label=colour_label, format=percent).outline.set_linewidth(0)
    mesh.update_scalarmappable()
    # dark text on a light cell, white on a dark one: the cell's W3C relative luminance
    rgb = mesh.get_facecolors()[:, :3]
    rgb = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    light = rgb @ np.array([0.2126, 0.7152, 0.0722]) > 0.408
    blank = np.ma.getmaskarray(values).flat
    cells = zip(np.ndindex(num_classes, num_classes), values.data.flat, blank, light)
    for (row, column), value, masked, on_light in cells:
        if not masked:
            ax.text(
                column + 0.5,
                row + 0.5,
                format(value, fmt),
                ha="center",
                va="center",
                fontsize=9 if num_classes <= 10 else 7,
                color=".15" if on_light else "w",
            )
    ax.set_xticks(np.arange(num_classes) + 0.5, names)
    ax.set_yticks(np.arange(num_classes) + 0.5, names, va="center")
    ax.set(xlabel="predicted label", ylabel="true label")
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0 if max(len(n) for n in names) <= 3 else 45)
    ax.set_title(f"confusion matrix{' (row-normalised)' if normalize else ''}: {accuracy}")
    return fig
