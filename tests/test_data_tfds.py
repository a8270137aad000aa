"""The optional tensorflow-datasets source, exercised without TensorFlow and offline."""

import sys
import time

import numpy as np
import pytest

from mnist_jax.data import load_dataset, load_tfds
from mnist_jax.errors import DataError


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def test_mock_mnist_gives_uint8_images_without_channel_axis(tfds):
    with tfds.testing.mock_data(num_examples=7):
        ds = load_tfds("mnist")
    assert ds.train_images.shape == (7, 28, 28) and ds.test_images.shape == (7, 28, 28)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.uint8
    assert ds.train_labels.shape == (7,) and ds.train_labels.max() < 10
    assert ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    assert ds.source.startswith("tfds:mnist@") and len(ds.fingerprint) == 64


def test_class_names_come_from_the_tfds_label_feature(tfds):
    with tfds.testing.mock_data(num_examples=3):
        ds = load_tfds("fashion_mnist")
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10


def test_load_dataset_dispatches_the_tfds_prefix(tfds):
    with tfds.testing.mock_data(num_examples=4):
        ds = load_dataset("tfds:mnist")
    assert ds.name == "mnist" and len(ds.train_images) == 4


def test_unprepared_dataset_is_a_quick_error_not_a_download(tfds, tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError, match="not prepared"):
        load_tfds("mnist", data_dir=tmp_path)
    # A bound against a download attempt, which retries for minutes offline; the refusal itself
    # takes well under a second.
    assert time.monotonic() - start < 60
    assert not any(tmp_path.rglob("*.gz"))  # nothing was downloaded


def test_unknown_tfds_name(tfds, tmp_path):
    with pytest.raises(DataError, match="knows no dataset 'no_such_dataset_xyz'"):
        load_tfds("no_such_dataset_xyz", data_dir=tmp_path)


@pytest.mark.parametrize("name", ["", "../../etc"])
def test_a_malformed_tfds_name_is_one_line(tfds, tmp_path, name):
    with pytest.raises(DataError, match="not a dataset name") as error:
        load_tfds(name, data_dir=tmp_path)
    assert "\n" not in str(error.value)  # TFDS's message goes on with a tutorial


def test_missing_tensorflow_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DataError, match=r"pip install 'mnist-jax\[tfds\]'"):
        load_tfds("mnist")
