"""Tests of mnist_jax.plots: each figure function on small synthetic arrays, and save_figure."""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from mnist_jax import fileio, plots
from mnist_jax.errors import OutputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _images(n: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def _all_text(fig: Figure) -> list[str]:
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def _history(epochs: int = 4) -> list[dict[str, float]]:
    return [
        {
            "train_loss": 1.0 / e,
            "train_accuracy": 1 - 0.1 / e,
            "val_loss": 1.2 / e,
            "val_accuracy": 1 - 0.12 / e,
        }
        for e in range(1, epochs + 1)
    ]


def _confusion() -> np.ndarray:
    return np.array([[50, 2, 0], [1, 40, 3], [0, 4, 60]])


# --------------------------------------------------------------------------- samples per class


def test_samples_per_class_shows_first_example_of_each_class_titled_with_its_name():
    images = _images(6)
    labels = np.array([2, 0, 1, 0, 2, 1])
    fig = plots.plot_samples_per_class(images, labels, class_names=["zero", "one", "two"])
    assert isinstance(fig, Figure)
    assert _titles(fig) == ["zero", "one", "two"]
    shown = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    for shown_image, first_index in zip(shown, [1, 2, 0]):
        np.testing.assert_array_equal(shown_image, images[first_index])


def test_samples_per_class_default_names_are_class_numbers():
    fig = plots.plot_samples_per_class(_images(10), np.arange(10))
    assert _titles(fig) == [str(i) for i in range(10)]


def test_samples_per_class_marks_a_missing_class_instead_of_dropping_it():
    labels = np.array([0, 0, 2, 2])
    fig = plots.plot_samples_per_class(_images(4), labels, class_names=["a", "b", "c"])
    assert _titles(fig) == ["a", "b (none)", "c"]
    assert sum(len(ax.get_images()) for ax in fig.axes) == 2


def test_images_have_no_ticks():
    fig = plots.plot_samples_per_class(_images(3), np.arange(3))
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []


def test_flattened_and_square_images_give_the_same_image_data():
    images = _images(5)
    labels = np.arange(5)
    square = plots.plot_samples_per_class(images, labels)
    flat = plots.plot_samples_per_class(images.reshape(5, 784), labels)
    for ax_square, ax_flat in zip(square.axes, flat.axes):
        np.testing.assert_array_equal(
            ax_square.get_images()[0].get_array(), ax_flat.get_images()[0].get_array()
        )
        assert ax_flat.get_images()[0].get_array().shape == (28, 28)


def test_flat_images_of_non_square_length_are_rejected():
    with pytest.raises(ValueError, match="square"):
        plots.plot_samples_per_class(np.zeros((2, 780)), np.array([0, 1]))


def test_images_use_the_grey_colormap():
    fig = plots.plot_samples_per_class(_images(2), np.arange(2))
    assert fig.axes[0].get_images()[0].get_cmap().name == "gray"


# --------------------------------------------------------------------------- training curves


def test_training_curves_have_loss_and_accuracy_panels_with_epoch_labels():
    fig = plots.plot_training_curves(_history())
    assert _titles(fig) == ["loss", "accuracy"]
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch"
        assert [text.get_text() for text in ax.get_legend().get_texts()] == [
            "training",
            "validation",
        ]


def test_training_curves_have_one_point_per_epoch_numbered_from_one():
    fig = plots.plot_training_curves(_history(epochs=7))
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2
        for line in ax.get_lines():
            assert list(line.get_xdata()) == list(range(1, 8))


def test_training_curves_plot_the_history_values():
    history = _history(epochs=3)
    loss_ax, accuracy_ax = plots.plot_training_curves(history).axes
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), [h["val_loss"] for h in history])
    np.testing.assert_allclose(
        accuracy_ax.get_lines()[0].get_ydata(), [h["train_accuracy"] for h in history]
    )


def test_training_curves_use_the_epoch_key_when_present():
    history = [dict(record, epoch=epoch) for record, epoch in zip(_history(3), [5, 6, 7])]
    fig = plots.plot_training_curves(history)
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [5, 6, 7]


def test_training_curves_without_validation_draw_only_training():
    history = [
        {"train_loss": 0.5, "train_accuracy": 0.9},
        {"train_loss": 0.3, "train_accuracy": 0.95},
    ]
    fig = plots.plot_training_curves(history)
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]


def test_training_curves_reject_an_empty_history():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_training_curves([])


# --------------------------------------------------------------------------- confusion matrix


def _cell_texts(ax) -> dict[tuple[int, int], str]:
    """Heatmap annotations keyed by (row, column), read from their positions (cell centres)."""
    return {
        (int(text.get_position()[1]), int(text.get_position()[0])): text.get_text()
        for text in ax.texts
    }


def test_confusion_matrix_annotates_every_cell_with_its_count():
    confusion = _confusion()
    ax = plots.plot_confusion_matrix(confusion).axes[0]
    cells = _cell_texts(ax)
    assert len(ax.texts) == confusion.size
    for (row, column), text in cells.items():
        assert int(text) == confusion[row, column]


def test_confusion_matrix_has_axis_labels_class_names_and_a_colour_bar():
    fig = plots.plot_confusion_matrix(_confusion(), class_names=["cat", "dog", "eel"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted label"
    assert ax.get_ylabel() == "true label"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "eel"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "eel"]
    assert len(fig.axes) == 2  # the heatmap and its colour bar


def test_confusion_matrix_title_gives_accuracy_from_trace_over_sum():
    confusion = _confusion()
    title = plots.plot_confusion_matrix(confusion).axes[0].get_title()
    assert f"{np.trace(confusion) / confusion.sum():.2%}" in title  # 150/160 = 93.75%
    assert "150/160" in title


def test_confusion_matrix_normalized_shows_row_shares_but_accuracy_from_counts():
    confusion = _confusion()
    ax = plots.plot_confusion_matrix(confusion, normalize=True).axes[0]
    shares = confusion / confusion.sum(axis=1, keepdims=True)
    for (row, column), text in _cell_texts(ax).items():
        assert text == f"{shares[row, column]:.1%}"
    assert "93.75%" in ax.get_title()


def test_confusion_matrix_accepts_float_counts():
    ax = plots.plot_confusion_matrix(_confusion().astype(np.float32)).axes[0]
    assert _cell_texts(ax)[(2, 2)] == "60"


def test_confusion_matrix_leaves_a_nan_cell_blank():
    confusion = _confusion().astype(float)
    confusion[0, 1] = np.nan
    cells = _cell_texts(plots.plot_confusion_matrix(confusion).axes[0])
    assert len(cells) == confusion.size - 1 and (0, 1) not in cells


def test_confusion_matrix_rejects_a_non_square_matrix():
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.zeros((3, 4)))


# --------------------------------------------------------------------------- top errors


def _errors() -> list[dict]:
    return [
        {"index": 3, "true": 2, "predicted": 7, "confidence": 0.981},
        {"index": 0, "true": 4, "predicted": 9, "confidence": 0.75},
    ]


def test_top_errors_titles_carry_prediction_confidence_and_truth():
    fig = plots.plot_top_errors(_images(5), _errors())
    assert _titles(fig) == ["pred 7 (98.1%)\ntrue 2", "pred 9 (75.0%)\ntrue 4"]


def test_top_errors_show_the_indexed_images():
    images = _images(5)
    fig = plots.plot_top_errors(images, _errors())
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), images[3])
    np.testing.assert_array_equal(fig.axes[1].get_images()[0].get_array(), images[0])


def test_top_errors_use_class_names():
    names = [f"c{i}" for i in range(10)]
    fig = plots.plot_top_errors(_images(5), _errors()[:1], class_names=names)
    assert _titles(fig) == ["pred c7 (98.1%)\ntrue c2"]


def test_top_errors_accept_the_dict_of_arrays_from_metrics_top_errors_skipping_padding():
    errors = {
        "index": np.array([3, 0, 0]),
        "true": np.array([2, 4, 0]),
        "predicted": np.array([7, 9, 0]),
        "confidence": np.array([0.981, 0.75, 0.0]),
        "valid": np.array([True, True, False]),
    }
    fig = plots.plot_top_errors(_images(5), errors)
    assert _titles(fig) == ["pred 7 (98.1%)\ntrue 2", "pred 9 (75.0%)\ntrue 4"]


def test_top_errors_with_no_errors_say_so():
    fig = plots.plot_top_errors(_images(5), [])
    assert isinstance(fig, Figure)
    assert _all_text(fig) == ["no misclassified examples"]


# --------------------------------------------------------------------------- sample prediction


def _probabilities(predicted: int) -> np.ndarray:
    probabilities = np.full(10, 0.02)
    probabilities[predicted] = 0.82
    return probabilities


def _bar_colours(ax) -> list[tuple]:
    return [tuple(patch.get_facecolor()) for patch in ax.patches]


def test_sample_prediction_title_gives_prediction_confidence_and_truth():
    fig = plots.plot_sample_prediction(_images(1)[0], _probabilities(7), true_label=2)
    assert fig.axes[0].get_title() == "predicted 7 (82.0%) / true 2"


def test_sample_prediction_bars_are_the_probabilities():
    probabilities = _probabilities(7)
    bar_ax = plots.plot_sample_prediction(_images(1)[0], probabilities, true_label=2).axes[1]
    np.testing.assert_allclose([patch.get_height() for patch in bar_ax.patches], probabilities)


def test_sample_prediction_highlights_predicted_and_true_bars_in_different_colours():
    bar_ax = plots.plot_sample_prediction(_images(1)[0], _probabilities(7), true_label=2).axes[1]
    colours = _bar_colours(bar_ax)
    others = {colour for i, colour in enumerate(colours) if i not in (2, 7)}
    assert len(others) == 1
    assert colours[7] != colours[2]
    assert colours[7] not in others and colours[2] not in others
    assert len(bar_ax.get_legend().get_texts()) == 2


def test_sample_prediction_when_right_highlights_one_bar():
    bar_ax = plots.plot_sample_prediction(_images(1)[0], _probabilities(4), true_label=4).axes[1]
    assert len(set(_bar_colours(bar_ax))) == 2
    assert [t.get_text() for t in bar_ax.get_legend().get_texts()] == ["predicted = true"]


def test_sample_prediction_accepts_a_flat_image():
    image = _images(1)[0]
    fig = plots.plot_sample_prediction(image.reshape(-1), _probabilities(1), true_label=1)
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), image)


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
    ax = plots.plot_accuracy_distribution({"mlp": values}).axes[0]
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1
    assert markers[0].get_ydata()[0] == pytest.approx(values.mean())
    half = 3.182446305284263 * values.std(ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    assert f"± {half:.2%}" in ax.get_xticklabels()[0].get_text()


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
    np.testing.assert_allclose(heights[3:], [0.55 - 0.33, 0.72 - 0.8, 0.99 - 0.995])
    np.testing.assert_allclose([bar.get_y() for bar in bars[3:]], [0.33, 0.8, 0.995])
    diagonal = top.get_lines()[0]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert top.get_xlim() == (0, 1) and top.get_ylim() == (0, 1)
    assert bottom.get_yscale() == "log"
    assert [bar.get_height() for bar in _bars(bottom)] == [3, 10, 987]
    assert top.get_title() == "reliability diagram, ECE 1.23%\ncnn lr=0.001"
    assert "987 examples" in top.texts[0].get_text()


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


def _expected(n: int = 6, std: bool = True) -> dict:
    trials = np.arange(1, n + 1)
    out = {"trials": trials, "expected": 0.98 - 0.01 / trials}
    if std:
        out["std"] = 0.002 / trials
    return out


def test_expected_max_draws_a_line_per_label_and_a_band_where_a_std_is_given():
    curves = {
        "mlp": _expected(),
        "cnn": _expected(std=False),
        "other": {**_expected(), "std": None},
    }
    ax = plots.plot_expected_max(curves).axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), curves["mlp"]["expected"])
    assert list(lines[0].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    assert ax.get_xlabel() == "trials"
    assert ax.get_ylabel() == "expected best validation accuracy"
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)
    assert list(ax.get_xticks()) == [1, 2, 3, 4, 5, 6]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mlp", "cnn", "other"]


def test_expected_max_of_another_metric_is_not_in_percent():
    ax = plots.plot_expected_max({"a": _expected()}, metric_name="validation loss").axes[0]
    assert ax.get_ylabel() == "expected best validation loss"
    assert not isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)


def test_expected_max_refuses_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_expected_max({})
    with pytest.raises(ValueError, match="different lengths: trials 6, expected 5"):
        plots.plot_expected_max({"a": {**_expected(std=False), "expected": [0.9] * 5}})
    with pytest.raises(ValueError, match="std 3"):
        plots.plot_expected_max({"a": {**_expected(), "std": [0.1] * 3}})
    with pytest.raises(ValueError, match=r"curves\['a'\] has no expected"):
        plots.plot_expected_max({"a": {"trials": [1, 2]}})
    with pytest.raises(ValueError, match="count from 1"):
        plots.plot_expected_max({"a": {"trials": [0, 1], "expected": [0.9, 0.95]}})


def test_the_new_figures_are_exported():
    for name in ("plot_ensemble_curves", "plot_reliability_diagram", "plot_expected_max"):
        assert name in plots.__all__ and callable(getattr(plots, name))


# --------------------------------------------------------------------------- inputs and files


def test_jax_arrays_are_accepted():
    jnp = pytest.importorskip("jax.numpy")
    images = _images(3)
    fig = plots.plot_samples_per_class(jnp.asarray(images), jnp.arange(3))
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), images[0])


def test_save_figure_writes_a_png_and_returns_its_path(tmp_path):
    target = tmp_path / "figure.png"
    result = plots.save_figure(plots.plot_confusion_matrix(_confusion()), target, dpi=50)
    assert result == target
    assert target.read_bytes()[:8] == PNG_SIGNATURE


def test_save_figure_creates_parent_directories_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "curves.png"
    plots.save_figure(plots.plot_training_curves(_history()), target, dpi=50)
    assert [p.name for p in target.parent.iterdir()] == ["curves.png"]


def test_save_figure_replaces_an_existing_file(tmp_path):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    plots.save_figure(plots.plot_top_errors(_images(2), []), target, dpi=50)
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_save_figure_failure_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    fig = plots.plot_top_errors(_images(2), [])

    def broken_savefig(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_save_figure_on_a_full_disk_is_an_output_error_and_keeps_the_old_file(
    tmp_path, monkeypatch
):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    fig = plots.plot_top_errors(_images(2), [])

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(
        OutputError, match=re.escape(f"cannot write {target}: No space left on device")
    ):
        plots.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
