"""Figures of one training run: loss and accuracy curves per epoch, and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from mnist_jax.plots._common import _class_names

__all__ = ["plot_training_curves", "plot_confusion_matrix"]


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
        for split, label, colour in (
            ("train", "training", "tab:blue"),
            ("val", "validation", "tab:orange"),
        ):
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
