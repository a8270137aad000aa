"""The real MNIST files, from $MNIST_JAX_DATA (the `mnist` fixture of conftest.py)."""

import os

import numpy as np
import pytest

from mnist_jax.data import load_dataset


def test_counts_and_shapes(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.uint8
    assert mnist.num_classes == 10 and mnist.class_names == tuple("0123456789")


def test_class_counts(mnist):
    assert np.bincount(mnist.train_labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(mnist.test_labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_first_labels(mnist):
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_pixels_span_the_full_uint8_range(mnist):
    assert mnist.train_images.min() == 0 and mnist.train_images.max() == 255


DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # apt package dataset-fashion-mnist


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST), reason="Debian's dataset-fashion-mnist not installed"
)
def test_fashion_mnist_checksums_match_the_debian_package():
    ds = load_dataset("fashion_mnist", DEBIAN_FASHION_MNIST)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
