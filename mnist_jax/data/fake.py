"""Small random datasets written as real IDX files, for tests and offline demos.

Tests of loading, training or the command-line tools can build a complete dataset folder in
milliseconds instead of needing the 11 MB of real MNIST.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mnist_jax.data.catalog import FILE_STEMS
from mnist_jax.data.idx import idx_bytes, write_idx


def fake_arrays(
    num_train: int = 20,
    num_test: int = 10,
    shape: tuple[int, int] = (4, 4),
    num_classes: int = 10,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random uint8 images and labels, keyed by file stem.

    Labels cycle through 0..num_classes-1, so every class appears in a split of at least
    `num_classes` examples.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for stem, n in zip(FILE_STEMS[::2], (num_train, num_test)):
        arrays[stem] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    for stem, n in zip(FILE_STEMS[1::2], (num_train, num_test)):
        arrays[stem] = (np.arange(n) % num_classes).astype(np.uint8)
    return arrays


def write_fake_dataset(
    folder: str | os.PathLike, *, compress: bool = True, **kwargs
) -> dict[str, str]:
    """Write a random dataset's four IDX files into `folder` (created if needed).

    kwargs go to `fake_arrays`. Returns the SHA-256 of each decompressed file, keyed by file stem,
    in the form `DatasetSpec.sha256` expects.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for stem, array in fake_arrays(**kwargs).items():
        write_idx(folder / (f"{stem}.gz" if compress else stem), array, compress=compress)
        hashes[stem] = hashlib.sha256(idx_bytes(array)).hexdigest()
    return hashes
