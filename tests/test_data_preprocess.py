"""Pure numpy preprocessing: scaling, one-hot labels, the Keras-style holdout split."""

import numpy as np
import pytest

from mnist_jax.data import flatten_and_scale, holdout_split, one_hot
from mnist_jax.errors import ConfigError


def test_flatten_and_scale_gives_float32_rows_in_unit_interval():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = flatten_and_scale(images)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.2, 0.4]], rtol=1e-6)


def test_flatten_and_scale_leaves_its_input_untouched():
    images = np.full((2, 3, 3), 255, np.uint8)
    flatten_and_scale(images)
    assert images.dtype == np.uint8 and images.max() == 255


def test_one_hot():
    out = one_hot(np.array([2, 0], np.uint8), 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0]])


def test_one_hot_rejects_labels_out_of_range():
    with pytest.raises(ValueError):
        one_hot(np.array([3]), 3)


def test_holdout_split_holds_out_the_last_examples_like_keras_validation_split():
    images = np.arange(10).reshape(5, 2)
    labels = np.arange(5)
    train_x, train_y, val_x, val_y = holdout_split(images, labels, 2)
    np.testing.assert_array_equal(train_y, [0, 1, 2])
    np.testing.assert_array_equal(val_y, [3, 4])
    np.testing.assert_array_equal(val_x, images[3:])
    assert len(train_x) == 3


@pytest.mark.parametrize("size", [0, 5, -1, 2.5, True])
def test_holdout_size_must_leave_both_parts_non_empty(size):
    with pytest.raises(ConfigError, match="1..4"):
        holdout_split(np.zeros((5, 2)), np.zeros(5), size)


def test_holdout_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError)
