"""Small random datasets written as real IDX files, for tests and offline demos: a complete dataset
folder in milliseconds, without the 11 MB of real MNIST."""

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
    """Random uint8 images and labels cycling through 0..num_classes-1, keyed by file stem."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for images, labels, n in zip(FILE_STEMS[::2], FILE_STEMS[1::2], (num_train, num_test)):
        arrays[images] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[labels] = (np.arange(n) % num_classes).astype(np.uint8)
    return arrays


def write_fake_dataset(
    folder: str | os.PathLike, *, compress: bool = True, **kwargs
) -> dict[str, str]:
    """Write `fake_arrays(**kwargs)` as IDX files into `folder` (created if needed); returns each
    decompressed file's SHA-256 by file stem, as `DatasetSpec.sha256` takes them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for stem, array in fake_arrays(**kwargs).items():
        write_idx(folder / (f"{stem}.gz" if compress else stem), array, compress=compress)
        hashes[stem] = hashlib.sha256(idx_bytes(array)).hexdigest()
    return hashes
