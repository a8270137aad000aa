"""Figures across seeds or ensemble members: the test accuracy distribution and learning-curve
bands."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

__all__ = ["plot_accuracy_distribution", "plot_learning_curves_band"]


def _t_critical(dof: int) -> float:
    """The two-sided 95% critical value of Student's t with `dof` degrees of freedom."""
    from scipy import stats  # scipy comes with jax; imported lazily, only the sweep plots need it

    return float(stats.t.ppf(0.975, dof))


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
    # matplotlib's own box plot: seaborn 0.13's boxplot passes the `vert` argument that
    # matplotlib 3.11 deprecates
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
    sns.stripplot(
        x=xs,
        y=ys,
        ax=ax,
        order=positions,
        color="tab:blue",
        size=5,
        alpha=0.7,
        jitter=0.12,
        zorder=3,
    )

    tick_labels = []
    for i, values in enumerate(samples):
        mean = float(values.mean())
        if values.size > 1:
            half = _t_critical(values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
            ax.errorbar(
                i + 0.3,
                mean,
                yerr=half,
                fmt="D",
                color="black",
                markersize=5,
                capsize=4,
                zorder=4,
                label="mean ± 95% CI" if i == 0 else None,
            )
            tick_labels.append(f"{labels[i]}\nn={values.size}, {mean:.2%} ± {half:.2%}")
        else:
            ax.plot(
                i + 0.3,
                mean,
                "D",
                color="black",
                markersize=5,
                zorder=4,
                label="mean" if i == 0 else None,
            )
            tick_labels.append(f"{labels[i]}\nn=1, {mean:.2%}")
    ax.set_xticks(positions, tick_labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("configuration")
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("test accuracy across seeds")
    seed_marker = Line2D(
        [], [], linestyle="", marker="o", color="tab:blue", alpha=0.7, label="per seed"
    )
    handles = [seed_marker, *ax.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="best", fontsize=9)
    return fig


def plot_learning_curves_band(
    curves: Mapping[str, Any], metric_name: str = "validation accuracy"
) -> Figure:
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
            raise ValueError(
                f"curves[{label!r}] must have shape (members, epochs), got {runs.shape}"
            )
        epochs = np.arange(1, runs.shape[1] + 1)
        mean = runs.mean(axis=0)
        ax.plot(
            epochs,
            mean,
            marker="o",
            markersize=3,
            color=colour,
            label=f"{label} (n={runs.shape[0]})",
        )
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
