"""The data layer: IDX files, the in-memory `Dataset`, where files come from, preprocessing.

ds = load_dataset("mnist", data_dir=None)  # --data-dir, $MNIST_JAX_DATA, cache, download
x = flatten_and_scale(ds.train_images)
"""

from mnist_jax.data.catalog import FILE_STEMS, KNOWN_DATASETS, DatasetSpec
from mnist_jax.data.dataset import (
    Dataset,
    flatten_and_scale,
    holdout_split,
    one_hot,
    scale_to_layout,
)
from mnist_jax.data.idx import read_idx, write_idx
from mnist_jax.data.sources import ENV_VAR, cache_folder, load_dataset, read_dataset_dir
from mnist_jax.data.tfds_source import load_tfds

__all__ = [
    "Dataset",
    "DatasetSpec",
    "ENV_VAR",
    "FILE_STEMS",
    "KNOWN_DATASETS",
    "cache_folder",
    "flatten_and_scale",
    "scale_to_layout",
    "holdout_split",
    "load_dataset",
    "load_tfds",
    "one_hot",
    "read_dataset_dir",
    "read_idx",
    "write_idx",
]
