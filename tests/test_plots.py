"""Tests of mnist_jax.plots: a run's figures on small synthetic arrays, and save_figure (the sweep
figures: test_plots_sweeps.py)."""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

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


def test_sample_prediction_when_wrong_marks_and_labels_the_true_class_however_small():
    # The true class's bar of a confident mistake was invisible and unlabelled.
    probabilities = np.full(10, 0.0001)
    probabilities[7] = 1 - probabilities.sum() + 0.0001
    bar_ax = plots.plot_sample_prediction(_images(1)[0], probabilities, true_label=2).axes[1]
    labels = {text.get_text(): text.xy[0] for text in bar_ax.texts}
    assert labels == {f"{probabilities[7]:.1%}": 7, "0.0%": 2}
    (mark,) = [line for line in bar_ax.get_lines() if line.get_marker() == "^"]
    assert list(mark.get_xdata()) == [2]


def test_sample_prediction_when_right_highlights_one_bar():
    bar_ax = plots.plot_sample_prediction(_images(1)[0], _probabilities(4), true_label=4).axes[1]
    assert len(set(_bar_colours(bar_ax))) == 2
    assert [t.get_text() for t in bar_ax.get_legend().get_texts()] == ["predicted = true"]


def test_sample_prediction_accepts_a_flat_image():
    image = _images(1)[0]
    fig = plots.plot_sample_prediction(image.reshape(-1), _probabilities(1), true_label=1)
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), image)


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
