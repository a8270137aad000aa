"""Tests of mnist_jax.plots' sweep figures on small synthetic arrays: the accuracy distribution
over seeds, learning-curve bands, ensembles by size, the reliability diagram and the expected best
after n trials, and that they stay readable with many and long labels."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from mnist_jax import plots


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


# --------------------------------------------------------------------------- accuracy distribution


def test_accuracy_distribution_has_a_column_per_configuration_in_order():
    results = {"mlp": [0.980, 0.982, 0.981], "cnn": [0.990, 0.991, 0.989, 0.992]}
    ax = plots.plot_accuracy_distribution(results).axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert [tick.split("\n")[0] for tick in ticks] == ["mlp", "cnn"]
    assert "n=3" in ticks[0] and "n=4" in ticks[1]


def test_accuracy_distribution_plots_every_seed():
    results = {"mlp": [0.980, 0.982, 0.981], "cnn": [0.990, 0.991, 0.989, 0.992]}
    ax = plots.plot_accuracy_distribution(results).axes[0]
    points = np.concatenate(
        [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    )
    np.testing.assert_allclose(
        np.sort(points[:, 1]), np.sort(np.concatenate(list(results.values())))
    )


def test_accuracy_distribution_marks_mean_and_t_confidence_interval():
    values = np.array([0.980, 0.982, 0.981, 0.985])
    fig = plots.plot_accuracy_distribution({"mlp": values})
    ax = fig.axes[0]
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1
    assert markers[0].get_ydata()[0] == pytest.approx(values.mean())
    half = 3.182446305284263 * values.std(ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    # a half-width of a difference of accuracies is in points, not percent
    assert f"± {100 * half:.2f} pts" in ax.get_xticklabels()[0].get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "mean ± 95% CI over seeds (test set fixed)" in legend


def test_accuracy_distribution_y_axis_is_test_accuracy_in_percent():
    ax = plots.plot_accuracy_distribution({"a": [0.9, 0.95], "b": [0.97]}).axes[0]
    assert ax.get_ylabel() == "test accuracy"
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)


# --------------------------------------------------------------------------- learning curve bands


def test_learning_curves_band_draws_mean_line_from_epoch_one_and_a_band_per_configuration():
    runs = np.array([[0.90, 0.95, 0.97], [0.92, 0.96, 0.98]])
    curves = {"mlp": runs, "cnn": runs + 0.01}
    ax = plots.plot_learning_curves_band(curves).axes[0]
    lines = ax.get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(lines[0].get_ydata(), runs.mean(axis=0))
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mlp (n=2)", "cnn (n=2)"]


def test_learning_curves_band_of_members_that_stopped_apart_averages_those_that_trained():
    runs = np.array([[0.90, 0.94, np.nan], [0.92, 0.96, 0.97], [0.94, np.nan, np.nan]])
    ax = plots.plot_learning_curves_band({"lr=0.01": runs}).axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [0.92, 0.95, 0.97])
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    vertices = band.get_paths()[0].vertices
    upper = [vertices[vertices[:, 0] == epoch, 1].max() for epoch in (1, 2, 3)]
    # std (ddof=1) of 0.90, 0.92, 0.94; of 0.94, 0.96; none for one member left
    np.testing.assert_allclose(upper, [0.94, 0.95 + 0.02 / np.sqrt(2), 0.97])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lr=0.01 (n=3, 1 at epoch 3)"]


def test_learning_curves_band_refuses_an_epoch_no_member_trained():
    with pytest.raises(ValueError, match="no member trained"):
        plots.plot_learning_curves_band({"a": np.array([[0.9, np.nan], [0.9, np.nan]])})


def test_learning_curves_band_single_member_has_no_band():
    ax = plots.plot_learning_curves_band({"one": np.array([0.9, 0.95])}).axes[0]
    assert len(ax.get_lines()) == 1
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    assert "std" not in ax.get_title()  # no band, so the title promises none


def test_learning_curves_of_one_epoch_draw_their_spread_as_error_bars():
    # After one epoch a band has no width: the promised ± 1 std is drawn as an error bar.
    runs = np.array([[0.90], [0.92], [0.94]])
    ax = plots.plot_learning_curves_band({"a": runs}).axes[0]
    assert ax.get_title().endswith("(mean ± 1 std)")
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    (bar,) = [c for c in ax.collections if c.get_segments()]
    np.testing.assert_allclose(bar.get_segments()[0][:, 1], [0.90, 0.94])


def test_learning_curves_band_labels_the_metric():
    ax = plots.plot_learning_curves_band(
        {"a": np.ones((2, 3))}, metric_name="validation loss"
    ).axes[0]
    assert ax.get_ylabel() == "validation loss"
    assert ax.get_xlabel() == "epoch"


# --------------------------------------------------------------------------- many and long labels

LONG = "cnn sgd warmup-cosine lr=0.003 momentum=0.8 wd=0.0005 warmup=1 dropout=0.1"


def _labels(count: int, long: bool) -> list[str]:
    return [f"{LONG if long else 'cnn'} #{i}" for i in range(count)]


def _drawn(fig: Figure) -> Figure:
    """`fig` laid out and drawn, so that its texts have their extents."""
    FigureCanvasAgg(fig).draw()
    return fig


def _inside_figure(fig: Figure, artist) -> bool:
    box, page = artist.get_window_extent(), fig.bbox
    return box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("count", [2, 4, 12])
@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
def test_accuracy_distribution_tick_labels_do_not_overlap_nor_leave_the_figure(count, long):
    rng = np.random.default_rng(count)
    results = {label: 0.98 + 0.002 * rng.random(3) for label in _labels(count, long)}
    fig = _drawn(plots.plot_accuracy_distribution(results))
    assert fig.get_figwidth() <= 16
    ticks = fig.axes[0].get_xticklabels()
    boxes = [tick.get_window_extent() for tick in ticks]
    for left, right in zip(boxes, boxes[1:]):
        assert not _overlap(left, right)
    assert all(_inside_figure(fig, tick) for tick in ticks)
    # the whole label is there, wrapped at spaces, above the numbers
    for tick, label in zip(ticks, results):
        assert " ".join(tick.get_text().split("\n")).startswith(label)


@pytest.mark.parametrize("count", [4, 12])
def test_learning_curves_band_puts_a_legend_of_many_or_long_labels_outside_the_axes(count):
    curves = {label: np.full((2, 3), 0.9) for label in _labels(count, long=True)}
    fig = _drawn(plots.plot_learning_curves_band(curves))
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert not _overlap(legend.get_window_extent(), ax.get_window_extent())
    assert _inside_figure(fig, legend)
    assert fig.get_figwidth() <= 16
    texts = [t.get_text() for t in legend.get_texts()]
    assert all(max(len(line) for line in text.split("\n")) <= 42 for text in texts)
    assert " ".join(texts[0].split("\n")) == f"{LONG} #0 (n=2)"


def test_learning_curves_band_twelve_lines_have_twelve_different_styles():
    curves = {label: np.full((2, 3), 0.9) for label in _labels(12, long=False)}
    lines = plots.plot_learning_curves_band(curves).axes[0].get_lines()
    styles = {(tuple(line.get_color()), line.get_marker(), line.get_linestyle()) for line in lines}
    assert len(styles) == 12


# --------------------------------------------------------------------------- ensemble curves


def _ensemble(offset: float = 0.0, sizes=(1, 2, 4, 8, 16)) -> dict:
    size = np.asarray(sizes, dtype=float)
    return {
        "size": list(sizes),
        "accuracy": 0.98 + offset + 0.004 * (1 - 1 / size),
        "nll": 0.06 - 0.02 * (1 - 1 / size),
        "ece": 0.006 / np.sqrt(size),
        "subsets": [1] * len(sizes),  # ignored
    }


def test_ensemble_curves_have_three_panels_of_one_line_per_configuration():
    curves = {"mlp": _ensemble(), "cnn": _ensemble(0.01)}
    fig = plots.plot_ensemble_curves(curves)
    assert len(fig.axes) == 3
    assert _titles(fig) == ["accuracy", "negative log-likelihood", "expected calibration error"]
    for ax, name in zip(fig.axes, ("accuracy", "nll", "ece")):
        lines = ax.get_lines()
        assert len(lines) == 2
        np.testing.assert_allclose(lines[1].get_ydata(), curves["cnn"][name])
        assert list(lines[0].get_xdata()) == [1, 2, 4, 8, 16]
        assert ax.get_xscale() == "log"
        assert list(ax.get_xticks()) == [1, 2, 4, 8, 16]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "16"]
    assert isinstance(fig.axes[0].yaxis.get_major_formatter(), PercentFormatter)
    assert isinstance(fig.axes[2].yaxis.get_major_formatter(), PercentFormatter)
    assert not isinstance(fig.axes[1].yaxis.get_major_formatter(), PercentFormatter)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["mlp", "cnn"]


def test_ensemble_curves_tick_every_size_given_and_keep_the_legend_off_the_panels():
    curves = {label: _ensemble(sizes=(1, 2, 4, 8, 12)) for label in _labels(12, long=True)}
    fig = _drawn(plots.plot_ensemble_curves(curves))
    assert list(fig.axes[0].get_xticks()) == [1, 2, 4, 8, 12]
    legend = fig.legends[0]
    assert len(legend.get_texts()) == 12
    assert _inside_figure(fig, legend)
    for ax in fig.axes:
        assert not _overlap(legend.get_window_extent(), ax.get_window_extent())


def test_ensemble_curves_refuse_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_ensemble_curves({})
    with pytest.raises(ValueError, match=r"'a'.* different lengths: size 5, accuracy 4"):
        plots.plot_ensemble_curves({"a": {**_ensemble(), "accuracy": [0.9] * 4}})
    with pytest.raises(ValueError, match=r"curves\['a'\] has no ece"):
        plots.plot_ensemble_curves({"a": {k: v for k, v in _ensemble().items() if k != "ece"}})
    with pytest.raises(ValueError, match=r"curves\['a'\] is empty"):
        plots.plot_ensemble_curves({"a": {"size": [], "accuracy": [], "nll": [], "ece": []}})
    with pytest.raises(ValueError, match="whole numbers >= 1"):
        plots.plot_ensemble_curves({"a": {**_ensemble(sizes=(1, 2)), "size": [0, 1]}})


# --------------------------------------------------------------------------- reliability diagram


def _bins() -> dict[str, np.ndarray]:
    edges = np.linspace(0.0, 1.0, 6)
    count = np.array([0, 0, 3, 10, 987])
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": np.array([np.nan, np.nan, 0.55, 0.72, 0.99]),
        "accuracy": np.array([np.nan, np.nan, 0.33, 0.8, 0.995]),
    }


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_reliability_diagram_draws_accuracy_bars_their_gaps_the_diagonal_and_counts():
    bins = _bins()
    fig = plots.plot_reliability_diagram(bins, ece=0.0123, label="cnn lr=0.001")
    top, bottom = fig.axes
    bars = _bars(top)
    assert len(bars) == 6  # an accuracy bar and a gap for each of the 3 non-empty bins
    heights = [bar.get_height() for bar in bars]
    np.testing.assert_allclose(heights[:3], [0.33, 0.8, 0.995])
    # the over-confident gap first, then the under-confident ones
    np.testing.assert_allclose(heights[3:], [0.55 - 0.33, 0.72 - 0.8, 0.99 - 0.995])
    np.testing.assert_allclose([bar.get_y() for bar in bars[3:]], [0.33, 0.8, 0.995])
    # each bin's bar says how many images it holds
    texts = [t.get_text() for t in top.texts]
    assert {"3", "10", "987"} <= set(texts)
    diagonal = top.get_lines()[0]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert top.get_xlim() == (0, 1) and top.get_ylim() == (0, 1)
    assert bottom.get_yscale() == "log"
    assert [bar.get_height() for bar in _bars(bottom)] == [3, 10, 987]
    assert top.get_title() == "reliability diagram, ECE 1.23%\ncnn lr=0.001"
    assert any("987 examples" in text for text in texts)


def test_reliability_diagram_legend_draws_each_gap_as_it_appears():
    # Over-confident gaps lie above the blue bar (on white), under-confident ones on it: each
    # has its own legend entry whose patch has the colour and opacity of its bars.
    top = plots.plot_reliability_diagram(_bins()).axes[0]
    legend = top.get_legend()
    entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    over = entries["gap to mean confidence: over-confident"]
    under = entries["gap to mean confidence: under-confident"]
    bars = _bars(top)
    np.testing.assert_allclose(over.get_facecolor(), bars[3].get_facecolor())
    np.testing.assert_allclose(under.get_facecolor(), bars[4].get_facecolor())
    assert under.get_facecolor()[3] == 1.0  # opaque: it looks the same on the blue bar
    only_over = plots.plot_reliability_diagram(
        {**_bins(), "accuracy": [np.nan, np.nan, 0.3, 0.7, 0.9]}
    )
    texts = [t.get_text() for t in only_over.axes[0].get_legend().get_texts()]
    assert "gap to mean confidence: under-confident" not in texts


def test_reliability_diagram_title_without_ece_or_label():
    assert plots.plot_reliability_diagram(_bins()).axes[0].get_title() == "reliability diagram"


def test_reliability_diagram_refuses_bad_input():
    bins = _bins()
    with pytest.raises(ValueError, match="bins has no accuracy"):
        plots.plot_reliability_diagram({k: v for k, v in bins.items() if k != "accuracy"})
    with pytest.raises(ValueError, match="one length"):
        plots.plot_reliability_diagram({**bins, "count": bins["count"][:4]})
    with pytest.raises(ValueError, match="empty"):
        plots.plot_reliability_diagram({k: [] for k in bins})
    with pytest.raises(ValueError, match="every bin is empty"):
        plots.plot_reliability_diagram({**bins, "count": np.zeros(5)})
    with pytest.raises(ValueError, match="0 <= lower < upper <= 1"):
        plots.plot_reliability_diagram({**bins, "upper": bins["upper"] * 2})
    with pytest.raises(ValueError, match="accuracy of a non-empty bin"):
        plots.plot_reliability_diagram({**bins, "accuracy": np.full(5, np.nan)})


# --------------------------------------------------------------------------- expected max


def _expected(n: int = 6, band: bool = True) -> dict:
    trials = np.arange(1, n + 1)
    out = {"trials": trials, "expected": 0.98 - 0.01 / trials}
    if band:
        out["low"] = out["expected"] - 0.002 / trials
        out["high"] = np.minimum(out["expected"] + 0.002 / trials, 0.98)
    return out


def test_expected_max_draws_a_line_per_label_and_a_band_where_one_is_given():
    curves = {
        "mlp": _expected(),
        "cnn": _expected(band=False),
        "other": {**_expected(), "low": None},
    }
    ax = plots.plot_expected_max(curves).axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), curves["mlp"]["expected"])
    assert list(lines[0].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    assert ax.get_xlabel() == "trials (a configuration and a seed each)"
    assert ax.get_ylabel() == "expected best validation accuracy"
    assert "nothing past N" in ax.get_title()
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)
    assert list(ax.get_xticks()) == [1, 2, 3, 4, 5, 6]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mlp", "cnn", "other"]


def test_expected_max_band_stays_within_the_observed_trials():
    from mnist_jax import stats

    values = np.random.default_rng(0).normal(0.97, 0.003, 18)
    ax = plots.plot_expected_max({"a": stats.expected_max(values)}).axes[0]
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() <= values.max() and ys.min() >= values.min()


def test_expected_max_by_configuration_is_a_second_panel():
    fig = plots.plot_expected_max(
        {"members": _expected(8)}, by_configuration={"by the mean over 2 seeds": _expected(4)}
    )
    left, right = fig.axes
    assert right.get_xlabel() == "configurations (each by its mean over seeds)"
    assert "expected best configuration" in right.get_title()
    assert len(right.get_lines()) == 1 and list(right.get_lines()[0].get_xdata()) == [1, 2, 3, 4]


def test_expected_max_of_another_metric_is_not_in_percent():
    ax = plots.plot_expected_max({"a": _expected()}, metric_name="validation loss").axes[0]
    assert ax.get_ylabel() == "expected best validation loss"
    assert not isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)


def test_expected_max_refuses_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_expected_max({})
    with pytest.raises(ValueError, match="different lengths: trials 6, expected 5"):
        plots.plot_expected_max({"a": {**_expected(band=False), "expected": [0.9] * 5}})
    with pytest.raises(ValueError, match="low 3"):
        plots.plot_expected_max({"a": {**_expected(), "low": [0.1] * 3}})
    with pytest.raises(ValueError, match=r"curves\['a'\] has no expected"):
        plots.plot_expected_max({"a": {"trials": [1, 2]}})
    with pytest.raises(ValueError, match="count from 1"):
        plots.plot_expected_max({"a": {"trials": [0, 1], "expected": [0.9, 0.95]}})


def test_the_new_figures_are_exported():
    for name in ("plot_ensemble_curves", "plot_reliability_diagram", "plot_expected_max"):
        assert name in plots.__all__ and callable(getattr(plots, name))
