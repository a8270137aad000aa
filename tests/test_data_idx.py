"""IDX reading and writing, and the validation of a dataset folder's content."""

import errno
import gzip
import os

import numpy as np
import pytest

from mnist_jax import fileio
from mnist_jax.data import read_dataset_dir, read_idx, write_idx
from mnist_jax.data.fake import write_fake_dataset
from mnist_jax.errors import DataError, OutputError


def header(code, *dims):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_uint8_round_trip_raw_and_gzip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 3, 4)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_of_other_idx_dtypes(tmp_path, dtype):
    array = np.arange(-6, 6).astype(dtype).reshape(3, 4)
    out = read_idx(write_idx(tmp_path / "a", array))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    array = np.arange(12, dtype=np.uint8)
    gz_without_suffix = write_idx(tmp_path / "labels", array, compress=True)
    raw_with_suffix = write_idx(tmp_path / "labels.gz", array, compress=False)
    np.testing.assert_array_equal(read_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_suffix), array)


def test_header_matches_the_mnist_layout(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((2, 28, 28), np.uint8))
    assert path.read_bytes()[:16] == header(0x08, 2, 28, 28)


def test_write_rejects_a_dtype_idx_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint64))


def test_write_leaves_no_temporary_file(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros(3, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]


def test_a_failed_write_is_an_output_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    old = write_idx(tmp_path / "x.gz", np.zeros(3, np.uint8)).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OutputError, match="x.gz: No space left on device"):
        write_idx(tmp_path / "x.gz", np.ones(3, np.uint8))
    assert (tmp_path / "x.gz").read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]


# --- corrupt files: each is a DataError whose message names the file ----------------------------


def write_bytes(tmp_path, data, name="broken-idx1-ubyte"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_data_error(path, *fragments):
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_bad_magic_number(tmp_path):
    path = write_bytes(tmp_path, b"<html>not found</html>")
    assert_data_error(path, "magic")


def test_unknown_dtype_code(tmp_path):
    path = write_bytes(tmp_path, header(0x07, 3) + b"abc")
    assert_data_error(path, "dtype code 0x07")


def test_zero_dimensions(tmp_path):
    path = write_bytes(tmp_path, bytes([0, 0, 8, 0]))
    assert_data_error(path, "0 dimensions")


def test_header_cut_short_of_its_dimensions(tmp_path):
    path = write_bytes(tmp_path, header(0x08, 60000, 28, 28)[:10])
    assert_data_error(path, "truncated IDX header")


def test_truncated_payload(tmp_path):
    path = write_bytes(tmp_path, header(0x08, 2, 3) + bytes(5))
    assert_data_error(path, "truncated", "(2, 3)")


def test_trailing_bytes(tmp_path):
    path = write_bytes(tmp_path, header(0x08, 2, 3) + bytes(8))
    assert_data_error(path, "2 unexpected trailing bytes")


def test_truncated_payload_inside_gzip(tmp_path):
    path = write_bytes(tmp_path, gzip.compress(header(0x08, 10) + bytes(4)), "labels.gz")
    assert_data_error(path, "truncated")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(header(0x08, 1000) + bytes(range(250)) * 4)
    path = write_bytes(tmp_path, good[:10] + b"garbage!" * 4 + good[42:], "labels.gz")
    assert_data_error(path, "gzip")


def test_gzip_cut_off_mid_stream(tmp_path):
    good = gzip.compress(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    path = write_bytes(tmp_path, good[: len(good) // 2], "labels.gz")
    assert_data_error(path, "gzip")


def test_missing_file(tmp_path):
    assert_data_error(tmp_path / "nothing-here", "not found")


@pytest.mark.parametrize("ndim", [5, 65])
def test_more_dimensions_than_a_dataset_file_has(tmp_path, ndim):
    # 65 is past numpy's limit of 64, which used to end in a ValueError traceback.
    path = write_bytes(tmp_path, header(0x08, *[1] * ndim) + b"x")
    assert_data_error(path, f"declares {ndim} dimensions")


def test_raw_file_far_larger_than_memory_is_refused_before_reading_it(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    os.truncate(path, 200 * 2**30)  # sparse: takes no disk space; reading it used to MemoryError
    assert_data_error(path, f"{200 * 2**30 - 16 - 1568} unexpected trailing bytes", "declares 1568")


@pytest.mark.parametrize("cut", [False, True])
def test_gzip_holding_more_than_declared_is_refused_without_decompressing_it_all(tmp_path, cut):
    compressed = gzip.compress(header(0x08, 10) + bytes(2**20))
    # Cut, the stream is damaged only far past the declared data, which must not be read.
    path = write_bytes(tmp_path, compressed[: len(compressed) // 2] if cut else compressed, "l.gz")
    message = assert_data_error(path, "declares 10 data bytes, more follow")
    assert "corrupt" not in message


def test_gzip_declaring_more_data_than_memory_can_hold(tmp_path):
    path = write_bytes(tmp_path, gzip.compress(header(0x08, *[2**32 - 1] * 3)), "images.gz")
    assert_data_error(path, "more than fits in memory")


# --- content of a dataset folder ----------------------------------------------------------------


def test_label_out_of_range_names_the_labels_file(tmp_path):
    write_fake_dataset(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], np.uint8))
    with pytest.raises(DataError, match=r"label 10 \(1 of 10 examples\) is outside 0..9") as info:
        read_dataset_dir(tmp_path, "kmnist")  # a known name: 10 classes
    assert str(labels) in str(info.value)


def test_unknown_dataset_takes_its_class_count_from_the_labels(tmp_path):
    write_fake_dataset(tmp_path, num_classes=3)
    ds = read_dataset_dir(tmp_path, "my_digits")
    assert ds.num_classes == 3 and ds.class_names == ("0", "1", "2")


def replace_labels(folder, stem, labels, dtype=np.uint8):
    """Overwrite one labels file of a fake dataset folder; return its path."""
    return write_idx(folder / f"{stem}.gz", np.asarray(labels, dtype))


TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def test_one_stray_label_is_refused_instead_of_making_a_201_class_problem(tmp_path):
    """The issue: the digits 0..9 and one label 200 silently became 201 classes."""
    write_fake_dataset(tmp_path, num_train=20)
    labels = replace_labels(tmp_path, TRAIN_LABELS, [*range(10), *range(9), 200])
    with pytest.raises(DataError) as info:
        read_dataset_dir(tmp_path, "my_digits")
    message = str(info.value)
    assert message.startswith(f"{labels}: the labels must number the classes 0..K-1")
    assert "label 200 (1 of 20 examples) lies beyond 190 classes without any (10..199)" in message
    assert "201 classes" in message and "\n" not in message


def test_a_stray_label_is_refused_through_load_dataset_too(tmp_path):
    from mnist_jax.data import load_dataset

    write_fake_dataset(tmp_path, num_train=20)
    replace_labels(tmp_path, TRAIN_LABELS, [*range(10), *range(9), 200])
    with pytest.raises(DataError, match="label 200"):
        load_dataset("my_digits", tmp_path, download=False)


def test_labels_counted_from_one_get_a_hint(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    replace_labels(tmp_path, TRAIN_LABELS, [i % 10 + 1 for i in range(20)])
    with pytest.raises(DataError) as info:
        read_dataset_dir(tmp_path, "my_digits")
    message = str(info.value)
    assert "labels 1, 2, 3, 4, 5 and 5 more (20 of 20 examples) lie beyond 1 class" in message
    assert "counted from 1" in message


def test_several_gaps_are_listed_as_ranges(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    replace_labels(tmp_path, TRAIN_LABELS, [*[0, 1, 2] * 5, 5, 5, 9, 9, 9])
    with pytest.raises(
        DataError,
        match=r"labels 5, 9 \(5 of 20 examples\) lie beyond 5 classes "
        r"without any \(3\.\.4, 6\.\.8\), which would make 10 classes",
    ):
        read_dataset_dir(tmp_path, "my_digits")


def test_labels_beyond_256_classes_are_refused(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    labels = replace_labels(tmp_path, TRAIN_LABELS, [*range(18), 300, 300], np.int16)
    with pytest.raises(DataError) as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(info.value).startswith(f"{labels}: label 300 (2 of 20 examples) is above 255")


def test_negative_labels_are_refused(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    labels = replace_labels(tmp_path, TRAIN_LABELS, [*range(19), -1], np.int8)
    with pytest.raises(DataError) as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(info.value).startswith(f"{labels}: label -1 (1 of 20 examples) is negative")


def test_all_256_classes_present_is_the_largest_accepted_dataset(tmp_path):
    write_fake_dataset(tmp_path, num_train=256, num_classes=256)
    ds = read_dataset_dir(tmp_path, "my_bytes")
    assert ds.num_classes == 256 and ds.class_names[-1] == "255"


def test_a_test_label_of_a_class_never_seen_in_training_is_refused(tmp_path):
    write_fake_dataset(tmp_path, num_train=20, num_classes=5)
    labels = replace_labels(tmp_path, TEST_LABELS, [*range(5), 0, 1, 2, 3, 7])
    with pytest.raises(DataError) as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(info.value).startswith(
        f"{labels}: label 7 (1 of 10 examples) is outside 0..4 for 5 classes"
    )


def test_image_and_label_count_mismatch_names_both_files(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but .* 19 labels") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(labels) in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_images_must_be_three_dimensional(tmp_path):
    write_fake_dataset(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(images, np.zeros((20, 16), np.uint8))
    with pytest.raises(DataError, match="height, width") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(images) in str(info.value)


def test_images_of_no_pixels_are_refused_by_name(tmp_path):
    # They reached the model check, which said "ZeroDivisionError: division by zero".
    write_fake_dataset(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(images, np.zeros((20, 28, 0), np.uint8))
    with pytest.raises(DataError, match="28x0 pixels: empty") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(images) in str(info.value)


def test_labels_must_be_one_dimensional(tmp_path):
    write_fake_dataset(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros((10, 1), np.uint8))
    with pytest.raises(DataError, match="1-D") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(labels) in str(info.value)


def test_colour_images_are_read_and_refused_as_colour_not_as_damaged(tmp_path):
    # A (N, 32, 32, 3) IDX file is valid IDX: it used to be called damaged.
    write_fake_dataset(tmp_path, shape=(4, 4))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    colour = np.zeros((10, 32, 32, 3), np.uint8)
    write_idx(images, colour)
    assert read_idx(images).shape == colour.shape
    with pytest.raises(DataError, match=r"colour images of shape \(10, 32, 32, 3\)") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert "damaged" not in str(info.value) and "greyscale" in str(info.value)


def test_train_and_test_images_must_have_one_shape(tmp_path):
    write_fake_dataset(tmp_path, shape=(4, 4))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 5, 4), np.uint8))
    with pytest.raises(DataError, match=r"\(4, 4\).*\(5, 4\)"):
        read_dataset_dir(tmp_path, "my_digits")


def test_gzip_and_raw_files_give_the_same_fingerprint(tmp_path):
    write_fake_dataset(tmp_path / "gz", compress=True, seed=1)
    write_fake_dataset(tmp_path / "raw", compress=False, seed=1)
    write_fake_dataset(tmp_path / "other", compress=True, seed=2)
    fingerprints = [read_dataset_dir(tmp_path / d, "x").fingerprint for d in ("gz", "raw", "other")]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_a_single_class_is_refused_rather_than_trained_to_100_percent(tmp_path):
    write_fake_dataset(tmp_path, num_train=20)
    labels = replace_labels(tmp_path, TRAIN_LABELS, [0] * 20)
    with pytest.raises(DataError, match="every training label is 0, one class") as info:
        read_dataset_dir(tmp_path, "my_digits")
    assert str(info.value).startswith(f"{labels}:")
