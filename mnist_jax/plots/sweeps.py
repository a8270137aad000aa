"""Figures across seeds, ensemble members or trials of a sweep: the test accuracy distribution,
learning-curve bands, ensembles of growing size and the expected best result after n trials.

Configurations are told apart by their labels (`sweep.config_labels` keeps them short); the figures
stay readable from 1 to a dozen configurations (and beyond) and with long labels: labels are
wrapped, figures widen up to a limit, tick labels turn on end when columns get too narrow even so,
lines past the tenth colour get other markers and dashes, and a legend of many or long labels
moves outside the axes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter

_MAX_WIDTH = 16.0  # inches: a figure wider than a screen is no easier to read
_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", ":", "-.")
# A legend with more entries than this, or longer labels, goes outside the axes: at the right, or
# below in three columns for more than six entries. Each place's legend, and the width its labels
# are wrapped to.
_INSIDE_LEGEND_ENTRIES = 4
_INSIDE_LEGEND_CHARS = 32
_OUTSIDE = dict(fontsize=8, borderaxespad=0)
_LEGENDS = {
    "inside": dict(fontsize=9),
    "right": dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), **_OUTSIDE),
    "below": dict(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=3, **_OUTSIDE),
}
_LEGEND_WRAP = {"inside": _INSIDE_LEGEND_CHARS + 8, "right": 30, "below": 42}  # room for " (n=16)"


def _t_critical(dof: int) -> float:
    """The two-sided 95% critical value of Student's t with `dof` degrees of freedom."""
    from scipy import special  # scipy comes with jax; scipy.stats would take most of a second

    return float(special.stdtrit(dof, 0.975))


def _wrap(label: str, width: int) -> str:
    """`label` on lines of at most `width` characters, broken at spaces (a longer word is cut)."""
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def _styles(count: int) -> list[dict[str, Any]]:
    """Line styles for `count` lines that stay apart: matplotlib's ten colours (tab10), then the
    same colours again with another marker and dash pattern."""
    colours = list(matplotlib.colormaps["tab10"].colors)[: min(count, 10)]
    return [
        {
            "color": colours[i % len(colours)],
            "marker": _MARKERS[(i // len(colours)) % len(_MARKERS)],
            "linestyle": _LINESTYLES[(i // len(colours)) % len(_LINESTYLES)],
        }
        for i in range(count)
    ]


def _count_axis(ax, highest: float, steps: Sequence[float] | None = None) -> None:
    """An x axis of counts from 1 to `highest`: whole-number ticks (each one up to 12, where
    MaxNLocator would tick one point alone at fractions) and room on both sides."""
    pad = max(0.5, 0.04 * (highest - 1))
    ax.set_xlim(1 - pad, highest + pad)
    if highest <= 12:
        ax.set_xticks(np.arange(1, int(highest) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=steps))


def _legend_place(labels: Sequence[str]) -> str:
    """Where the legend of one line per label goes: a key of `_LEGENDS`."""
    if len(labels) <= _INSIDE_LEGEND_ENTRIES and max(map(len, labels)) <= _INSIDE_LEGEND_CHARS:
        return "inside"
    return "right" if len(labels) <= 6 else "below"


def _lines_layout(labels: Sequence[str], width: float, height: float):
    """The size of a one-axes figure of one line per label, with room for its legend, and the
    width to wrap the labels to."""
    place = _legend_place(labels)
    wrap = _LEGEND_WRAP[place]
    if place != "inside":
        width += 3.0
    if place == "below":  # each entry's lines 0.16 inch apart
        lines = max(_wrap(label, wrap).count("\n") + 1 for label in labels)
        height = height + 0.4 + 0.16 * math.ceil(len(labels) / 3) * lines
    return (width, height), wrap


def _series(
    curves: Mapping[str, Mapping[str, Any]], names: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, dict[str, np.ndarray | None]]:
    """Each label's `names` (and, when present and not None, `optional`) as 1-D float arrays of one
    common, non-zero length; a ValueError names what is missing or mismatched."""
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    out = {}
    for label, entry in curves.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"curves[{label!r}] must be a mapping of {', '.join(names)}")
        missing = [name for name in names if name not in entry]
        if missing:
            raise ValueError(f"curves[{label!r}] has no {', '.join(missing)}")
        arrays = {
            name: None if entry.get(name) is None else np.asarray(entry[name], dtype=float)
            for name in [*names, *optional]
        }
        for name, array in arrays.items():
            if array is not None and array.ndim != 1:
                raise ValueError(f"curves[{label!r}][{name!r}] must be 1-D, got {array.shape}")
        lengths = {name: a.size for name, a in arrays.items() if a is not None}
        if len(set(lengths.values())) != 1:
            text = ", ".join(f"{name} {size}" for name, size in lengths.items())
            raise ValueError(f"curves[{label!r}] has values of different lengths: {text}")
        if not next(iter(lengths.values())):
            raise ValueError(f"curves[{label!r}] is empty: nothing to plot")
        out[str(label)] = arrays
    return out


def plot_accuracy_distribution(results: Mapping[str, Sequence[float]]) -> Figure:
    """Test accuracy across seeds, one column per configuration.

    Each seed is a dot over a light box plot; a black diamond marks the mean with a
    bar for its 95% confidence interval over seeds with the test set fixed (Student's t,
    mean ± t·s/√n; no bar for a single seed): it does not count the test images' own sampling.
    Tick labels give the number of seeds and the mean ± half-width, the half-width in percentage
    points. Accuracies are fractions in [0, 1], shown as percent.
    """
    labels = [str(label) for label in results]
    samples = [np.asarray(values, dtype=float).ravel() for values in results.values()]
    if not labels:
        raise ValueError("results is empty: nothing to plot")
    for label, values in zip(labels, samples):
        if values.size == 0:
            raise ValueError(f"configuration {label!r} has no accuracies")

    # Each column's tick label is wrapped to the column's width (widening the figure up to
    # _MAX_WIDTH); a column too narrow for even short lines turns its label on end.
    count = len(labels)
    width = min(_MAX_WIDTH, max(6.0, 2.2 * count + 1.2))
    fontsize = 9 if count <= 6 else 8
    chars = int((width - 1.2) / count / (0.6 * fontsize / 72)) - 1  # ~0.6 em per character
    upright = chars >= 12
    wrap = min(chars, 26) if upright else 30
    wrapped = [_wrap(label, wrap) for label in labels]
    if upright:  # the labels' lines and two of numbers below the axes, 1.3 em apart
        below = (max(text.count("\n") for text in wrapped) + 3) * 1.3 * fontsize / 72
    else:
        below = (wrap + 4) * 0.6 * fontsize / 72
    fig = Figure(figsize=(width, max(5.0, 3.8 + below)), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(count))
    grey = {"color": "0.5"}
    # matplotlib's own box plot: seaborn 0.13's boxplot passes the `vert` argument that
    # matplotlib 3.11 deprecates
    ax.boxplot(
        samples,
        positions=positions,
        widths=0.5,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "0.92", "edgecolor": "0.5"},
        medianprops=grey,
        whiskerprops=grey,
        capprops=grey,
        zorder=1,
    )
    # Each seed a dot, jittered sideways (seeded: the same figure each time) so equal values show.
    xs = np.concatenate([np.full(values.size, i) for i, values in enumerate(samples)])
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, xs.size)
    ys = np.concatenate(samples)
    ax.scatter(xs + jitter, ys, color="tab:blue", s=25, alpha=0.7, zorder=3, linewidths=0)

    tick_labels = []
    for i, values in enumerate(samples):
        mean, diamond = float(values.mean()), {"color": "black", "markersize": 5, "zorder": 4}
        if values.size == 1:
            ax.plot(i + 0.3, mean, "D", label="mean" if i == 0 else None, **diamond)
            stats = f"n=1, {mean:.2%}"
        else:
            half = _t_critical(values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
            label = "mean ± 95% CI over seeds (test set fixed)" if i == 0 else None
            ax.errorbar(i + 0.3, mean, yerr=half, fmt="D", capsize=4, label=label, **diamond)
            stats = f"n={values.size}, {mean:.2%} ± {100 * half:.2f} pts"
        if upright and len(stats) > wrap:
            stats = stats.replace(", ", "\n")
        tick_labels.append(f"{wrapped[i]}\n{stats}")
    on_end = {} if upright else {"rotation": 90, "multialignment": "right"}
    ax.set_xticks(positions, tick_labels, fontsize=fontsize, **on_end)
    ax.set_xlim(-0.6, count - 0.4)
    ax.set(xlabel="configuration", ylabel="test accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("test accuracy across seeds", loc="left")
    seed_marker = Line2D(
        [], [], linestyle="", marker="o", color="tab:blue", alpha=0.7, label="per seed"
    )
    handles = [seed_marker, *ax.get_legend_handles_labels()[0]]
    # above the axes and their title (constrained layout keeps the room): inside, it would cover
    # seeds of some column; beside the title, the interval's long label ran into it
    fig.legend(
        handles=handles,
        loc="outside upper right",
        ncols=len(handles),
        fontsize=9,
        frameon=False,
        borderaxespad=0.1,
        handletextpad=0.3,
        columnspacing=1.0,
    )
    return fig


def plot_learning_curves_band(
    curves: Mapping[str, Any], metric_name: str = "validation accuracy"
) -> Figure:
    """A metric per epoch across ensemble members or seeds, one line and band per configuration.

    Each value is an array ``(members, epochs)`` (a 1-D array counts as one member);
    the line is the mean over members and the band ± one standard deviation (ddof=1;
    no band for a single member; error bars where there is a single epoch, which a band cannot
    show). The title promises the band only where one is drawn. NaN marks an epoch a member did
    not train (it stopped early): each epoch's mean and band are over the members that trained
    it, and the label gives how many trained the last epoch when that is fewer. Epochs are
    numbered from 1. When `metric_name` mentions accuracy and the values lie in [0, 1] the y axis
    is shown as percent.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    table = {}
    for label, values in curves.items():
        runs = np.asarray(values, dtype=float)
        if runs.ndim == 1:
            runs = runs[None, :]
        if runs.ndim != 2 or runs.shape[1] == 0:
            raise ValueError(
                f"curves[{label!r}] must have shape (members, epochs), got {runs.shape}"
            )
        trained = np.sum(~np.isnan(runs), axis=0)  # members per epoch
        if np.any(trained == 0):
            raise ValueError(f"curves[{label!r}] has an epoch no member trained")
        # Besides the members' count (room for it is kept), how many trained to the end.
        fewer = f", {trained[-1]} at epoch {runs.shape[1]}" if trained[-1] < len(runs) else ""
        table[f"{label}{fewer}"] = (f"{label} (n={len(runs)}{fewer})", runs, trained)
    labels = list(table)
    size, wrap = _lines_layout(labels, 7.0, 4.5)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    in_unit_range, spread_drawn = True, False
    for (shown, runs, trained), style in zip(table.values(), _styles(len(table))):
        epochs = np.arange(1, runs.shape[1] + 1)
        mean = np.nanmean(runs, axis=0)
        ax.plot(epochs, mean, markersize=3, label=_wrap(shown, wrap), **style)
        if runs.shape[0] > 1:
            # ddof=1 over the members that trained each epoch; 0 where one is left
            std = np.sqrt(np.nansum((runs - mean) ** 2, axis=0) / np.maximum(trained - 1, 1))
            if runs.shape[1] > 1:
                ax.fill_between(
                    epochs, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0
                )
            else:  # one epoch: a band would have no width
                ax.errorbar(epochs, mean, yerr=std, color=style["color"], capsize=4, fmt="none")
            spread_drawn = True
        in_unit_range &= bool(np.nanmin(runs) >= 0.0 and np.nanmax(runs) <= 1.0)
    ax.set(xlabel="epoch", ylabel=metric_name)
    _count_axis(ax, max(runs.shape[1] for _, runs, _ in table.values()))
    if "accuracy" in metric_name.lower() and in_unit_range:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{metric_name} (mean ± 1 std)" if spread_drawn else f"{metric_name} (mean)")
    ax.legend(**_LEGENDS[_legend_place(labels)])
    return fig


def plot_ensemble_curves(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Accuracy, negative log-likelihood and expected calibration error of ensembles against their
    size, three panels side by side, one line per configuration.

    `curves` maps a configuration's label to equal-length sequences ``"size"`` (members averaged,
    e.g. 1, 2, 4, 8, 16), ``"accuracy"`` and ``"ece"`` (fractions, shown as percent) and
    ``"nll"`` (as `stats.ensemble_curve` returns; other keys are ignored). Sizes are drawn on a
    log2 axis with a tick at each size given.
    """
    series = _series(curves, ("size", "accuracy", "nll", "ece"))
    sizes = np.unique(np.concatenate([s["size"] for s in series.values()]))
    if not np.all((sizes >= 1) & (sizes == np.round(sizes))):
        raise ValueError(f"ensemble sizes must be whole numbers >= 1, got {sizes.tolist()}")
    labels = list(series)
    # The legend below the panels: up to four columns of short labels or three of long ones
    # (wrapped to the column), the figure taller by its height.
    wide = max(len(label) for label in labels) > _INSIDE_LEGEND_CHARS
    wrap, ncols = (48, min(len(labels), 3)) if wide else (_INSIDE_LEGEND_CHARS, min(len(labels), 4))
    texts = [_wrap(label, wrap) for label in labels]
    rows = math.ceil(len(labels) / ncols)
    lines = max(text.count("\n") + 1 for text in texts)
    fig = Figure(figsize=(13.0, 4.2 + 0.19 * rows * lines), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("accuracy", "accuracy", "accuracy (higher is better)"),
        ("nll", "negative log-likelihood", "NLL, nats (lower is better)"),
        ("ece", "expected calibration error", "ECE (lower is better)"),
    )
    for values, text, style in zip(series.values(), texts, _styles(len(labels))):
        for ax, (name, _, _) in zip(axes, panels):
            ax.plot(values["size"], values[name], markersize=5, label=text, **style)
    for ax, (name, title, ylabel) in zip(axes, panels):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{size:g}" for size in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="ensemble size (members)", ylabel=ylabel, title=title)
        ax.grid(True, alpha=0.3)
        if name != "nll":
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    handles, _ = axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=ncols, fontsize=9)
    return fig


def plot_expected_max(
    curves: Mapping[str, Mapping[str, Any]],
    metric_name: str = "validation accuracy",
    *,
    by_configuration: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """The expected best `metric_name` of n trials of a search, one line per label.

    `curves` maps a label (a search, e.g. a model) to ``"trials"`` (1..N), ``"expected"`` (the
    expected best value of that many trials) and optionally ``"low"`` and ``"high"`` (a band of
    that best, drawn where both are given), as `stats.expected_max` returns (its ``"std"`` is not
    drawn: mean ± std can leave the observed range). The estimate equals the observed best at
    n = N by construction, so the x axis stops at N and the title says so.
    `by_configuration`, with the same keys, adds a right panel whose trials are configurations
    judged by their mean over seeds. When `metric_name` mentions accuracy and the values lie in
    [0, 1] the y axis is shown as percent.
    """
    sources = [curves, by_configuration] if by_configuration else [curves]
    panels = [_series(source, ("trials", "expected"), ("std", "low", "high")) for source in sources]
    for panel in panels:
        for label, values in panel.items():
            if not np.all(values["trials"] >= 1):
                raise ValueError(f"curves[{label!r}]['trials'] must count from 1")
    (width, height), wrap = _lines_layout(list(panels[0]), 7.0, 4.5)
    if len(panels) > 1:
        fig = Figure(figsize=(width + 5.5, height), layout="constrained")
        axes = list(fig.subplots(1, 2, sharey=True, width_ratios=(width, 5.5)))
    else:
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = [fig.add_subplot()]
    texts = (
        ("trials (a configuration and a seed each)", f"expected best {metric_name} of n trials"),
        ("configurations (each by its mean over seeds)", "expected best configuration"),
    )
    in_unit_range = True
    for panel, source, ax, (xlabel, title) in zip(panels, sources, axes, texts):
        for (label, values), style in zip(panel.items(), _styles(len(panel))):
            trials, expected = values["trials"], values["expected"]
            ax.plot(trials, expected, markersize=3, label=_wrap(label, wrap), **style)
            if values["low"] is not None and values["high"] is not None:
                ax.fill_between(
                    trials, values["low"], values["high"], color=style["color"], alpha=0.15, lw=0
                )
            in_unit_range &= bool(np.nanmin(expected) >= 0.0 and np.nanmax(expected) <= 1.0)
        ax.set(xlabel=xlabel, ylabel=f"expected best {metric_name}")
        _count_axis(ax, max(v["trials"].max() for v in panel.values()), steps=[1, 2, 5, 10])
        ax.grid(True, alpha=0.3)
        banded = any(v["low"] is not None for v in panel.values())
        low, high = next(iter(source.values())).get("band") or (0.1, 0.9)
        ax.set_title(
            title
            + (f"\n(band: the best's {low:.0%}-{high:.0%} quantiles)" if banded else "")
            + "\nat n = N it is the observed best; nothing past N",
            fontsize=10,
        )
        ax.legend(**_LEGENDS[_legend_place(list(panel))])
    if "accuracy" in metric_name.lower() and in_unit_range:
        for ax in axes:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    return fig
