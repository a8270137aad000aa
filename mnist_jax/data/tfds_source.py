"""Optional source: a dataset already prepared by tensorflow-datasets, read WITHOUT TensorFlow.

Only `tfds.data_source` on an array_record dataset works without TensorFlow, so this module only
reads, never downloads or prepares (offline, TFDS retries a download for minutes). It decodes
image by image through PIL, far slower than the IDX files: load once and keep the arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from mnist_jax.data.dataset import Dataset, fingerprint_of, make_dataset
from mnist_jax.data.idx import idx_bytes
from mnist_jax.errors import DataError

SPLITS = ("train", "test")


def load_tfds(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Splits 'train' and 'test' of the prepared TFDS dataset `name` (in `data_dir`, default
    TFDS's own), which has an 'image' feature (H, W) or (H, W, 1) and a 'label' feature."""
    try:
        import tensorflow_datasets as tfds  # optional extra, and slow to import
    except ImportError:
        raise DataError(
            f"reading tfds:{name} needs tensorflow-datasets: pip install 'mnist-jax[tfds]', "
            "or use the IDX files with --data-dir."
        ) from None

    data_dir = None if data_dir is None else os.fspath(os.path.expanduser(data_dir))
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"tfds:{name}: tensorflow-datasets knows no dataset {name!r}; check the name."
        ) from None
    except Exception as error:  # TFDS raises ValueError, AssertionError... for malformed names
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]  # then a tutorial
        raise DataError(
            f"tfds:{name}: not a dataset name tensorflow-datasets accepts ({first}); the form is "
            "dataset_name[/config_name][:version]"
        ) from None
    where = f"tfds:{name}@{builder.data_dir}"

    try:
        # download=False: never download or prepare here (no TensorFlow, and no long retry loop).
        sources = tfds.data_source(name, split=list(SPLITS), data_dir=data_dir, download=False)
    # TFDS raises assorted types here (NotImplementedError, FileNotFoundError, ...).
    except Exception as e:
        if not builder.is_prepared():
            raise DataError(
                f"{where}: dataset not prepared; prepare it once in array_record format on a "
                f"machine with TensorFlow (tfds build {name} --file_format=array_record "
                "--data_dir DIR) or use the IDX files with --data-dir."
            ) from None
        raise DataError(
            f"{where}: cannot be read as a data source ({type(e).__name__}: {e}); it must be "
            "prepared in array_record format."
        ) from None

    arrays, names = {}, {}
    for split, src in zip(SPLITS, sources):
        images, labels = _read_split(src, f"{where}/{split}")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
        names[f"{split}_images"] = f"{where}/{split} images"
        names[f"{split}_labels"] = f"{where}/{split} labels"

    class_names = tuple(getattr(builder.info.features["label"], "names", None) or ()) or None
    dataset = make_dataset(
        name, arrays, names, fingerprint="", source=where, class_names=class_names
    )
    # Over the validated (uint8) arrays' IDX encoding: the files' scheme, so that the same content
    # gives the same fingerprint.
    arrays = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
    hashes = [hashlib.sha256(idx_bytes(array)).hexdigest() for array in arrays]
    return dataclasses.replace(dataset, fingerprint=fingerprint_of(hashes))


def _read_split(src, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A data source's uint8 images (N, H, W) and labels (N,), by `len(src)` and `src[i]` only:
    batch access and `info.splits` do not work under `tfds.testing.mock_data`."""
    n = len(src)
    if n == 0:
        raise DataError(f"{what}: the split is empty.")
    first = src[0]
    if "image" not in first or "label" not in first:
        raise DataError(
            f"{what}: examples have features {sorted(first)}, expected 'image' and 'label'."
        )
    image = np.asarray(first["image"])
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]  # grayscale stored with a channel axis
    if image.ndim != 2 or image.dtype != np.uint8:
        raise DataError(
            f"{what}: images are {image.dtype} of shape {image.shape}, expected uint8 grayscale."
        )
    images = np.empty((n, *image.shape), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        example = first if i == 0 else src[i]
        images[i] = np.asarray(example["image"]).reshape(image.shape)
        labels[i] = int(example["label"])
    return images, labels
