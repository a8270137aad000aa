"""Calibration of one model or ensemble: the reliability diagram of its confidence bins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from mnist_jax.plots.sweeps import _wrap

_BIN_KEYS = ("lower", "upper", "count", "confidence", "accuracy")


def _bins(bins: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`bins` as 1-D float arrays of one length, checked."""
    missing = [key for key in _BIN_KEYS if key not in bins]
    if missing:
        raise ValueError(f"bins has no {', '.join(missing)}")
    out = {key: np.asarray(bins[key], dtype=float) for key in _BIN_KEYS}
    shapes = {key: a.shape for key, a in out.items()}
    if any(a.ndim != 1 for a in out.values()) or len(set(shapes.values())) != 1:
        text = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"bins must be 1-D arrays of one length, got {text}")
    if not out["count"].size:
        raise ValueError("bins is empty: nothing to plot")
    lower, upper, count = out["lower"], out["upper"], out["count"]
    if not (np.all(lower >= 0) and np.all(upper <= 1) and np.all(lower < upper)):
        raise ValueError("bin edges must satisfy 0 <= lower < upper <= 1")
    if not np.all(np.isfinite(count) & (count >= 0)):
        raise ValueError("bin counts must be finite and >= 0")
    if count.sum() == 0:
        raise ValueError("every bin is empty: no examples to plot")
    for key in ("confidence", "accuracy"):
        values = out[key][count > 0]
        if not np.all(np.isfinite(values) & (values >= 0) & (values <= 1)):
            raise ValueError(f"the {key} of a non-empty bin must lie in [0, 1]")
    return out


def plot_reliability_diagram(
    bins: Mapping[str, Any], *, ece: float | None = None, label: str | None = None
) -> Figure:
    """Accuracy against confidence per confidence bin, and how many examples each bin holds.

    `bins` holds equal-length arrays ``"lower"`` and ``"upper"`` (bin edges in [0, 1]),
    ``"count"`` (examples per bin), ``"confidence"`` (mean confidence in the bin) and
    ``"accuracy"`` (accuracy in the bin), NaN for an empty bin, as `stats.calibration_bins`
    returns. The top panel draws each non-empty bin's accuracy as a bar next to the diagonal of
    perfect calibration, with the gap from its accuracy to its mean confidence hatched: red above
    the bar where the bin is over-confident, orange inside its top where it is under-confident,
    each with its own legend entry drawn as it appears. Each bar is labelled with the examples it
    holds (a bin of 2 images at 100% says little), and the bottom panel counts them on a log scale
    (a good MNIST model puts nearly all of them in the top bin). The title names `label` and the
    expected calibration error `ece` (a fraction) when given.
    """
    values = _bins(bins)
    filled = values["count"] > 0
    lower = values["lower"][filled]
    width = values["upper"][filled] - lower
    accuracy = values["accuracy"][filled]
    gap = values["confidence"][filled] - accuracy
    counts = values["count"][filled]
    bars = {"align": "edge", "linewidth": 0.5}

    fig = Figure(figsize=(6.0, 6.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
    top.bar(lower, accuracy, width, color="tab:blue", edgecolor="white", label="accuracy", **bars)
    for chosen, colour, alpha, text in (
        (gap > 0, "tab:red", 0.3, "gap to mean confidence: over-confident"),
        (gap < 0, "tab:orange", 1.0, "gap to mean confidence: under-confident"),
    ):
        if np.any(chosen):
            # Opaque where it lies on the blue bar, so that it looks as its legend entry does.
            top.bar(
                lower[chosen],
                gap[chosen],
                bottom=accuracy[chosen],
                width=width[chosen],
                color=colour,
                alpha=alpha,
                edgecolor=colour if alpha < 1 else "white",
                hatch="//",
                label=text,
                **bars,
            )
    for left, size, height, count in zip(
        lower, width, np.maximum(accuracy, accuracy + gap), counts
    ):
        top.text(
            left + size / 2,
            min(height + 0.01, 0.99),
            f"{int(count):,}",
            ha="center",
            va="bottom",
            fontsize=6.5,
            rotation=90 if size < 0.1 else 0,
            color="0.25",
        )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=9)
    title = "reliability diagram"
    if ece is not None:
        title += f", ECE {ece:.2%}" if np.isfinite(ece) else ", ECE n/a"
    if label:
        title += "\n" + _wrap(str(label), 56)
    top.set_title(title, fontsize=11)
    # The fullest bin's gap is often too small to see (MNIST: ~99% of examples at ~99.5%
    # confidence), so its numbers are written out.
    full = int(np.argmax(counts))
    low, high = lower[full], lower[full] + width[full]
    top.annotate(
        f"fullest bin, {100 * low:.3g}%-{100 * high:.3g}%: {int(counts[full]):,} examples\n"
        f"accuracy {accuracy[full]:.2%}, mean confidence {accuracy[full] + gap[full]:.2%}",
        xy=(low + width[full] / 2, accuracy[full]),
        xytext=(0.03, 0.74),
        textcoords="axes fraction",
        fontsize=8.5,
        va="top",
        arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 0.8},
    )

    bottom.bar(lower, counts, width=width, align="edge", color="0.5", edgecolor="white")
    bottom.set(yscale="log", ylabel="examples", xlabel="confidence")
    bottom.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    bottom.grid(True, axis="y", alpha=0.3)
    return fig
