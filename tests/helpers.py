"""Helpers shared by tests: bitwise comparison of pytrees and a tiny learnable dataset."""

import jax
import numpy as np

from mnist_jax.fit import DeviceData


def assert_bitwise_equal(a, b):
    """Same tree structure, and every leaf the same bytes (shape and dtype included)."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def teacher_data(num_train: int = 160, num_test: int = 64, seed: int = 0) -> DeviceData:
    """Flat 784-pixel images labelled by a fixed random linear teacher, on the device; the test
    split doubles as the validation split."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(784, 10))
    images = rng.uniform(size=(num_train + num_test, 784)).astype(np.float32)
    labels = np.argmax(images @ teacher, axis=1).astype(np.int32)
    train = [images[:num_train], labels[:num_train]]
    test = [images[num_train:], labels[num_train:]]
    return DeviceData(*jax.device_put(train + test + test), num_classes=10)


def prototype_data(num_train: int = 256, num_test: int = 64, seed: int = 0) -> DeviceData:
    """Tiny learnable 28x28 images, flat (the MLP's layout): noisy copies of 10 prototypes, on the
    device; the test split doubles as the validation split."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(size=(10, 784))
    labels = rng.integers(0, 10, size=num_train + num_test).astype(np.int32)
    images = np.clip(prototypes[labels] + 0.3 * rng.normal(size=(len(labels), 784)), 0, 1)
    images = images.astype(np.float32)
    train = [images[:num_train], labels[:num_train]]
    test = [images[num_train:], labels[num_train:]]
    return DeviceData(*jax.device_put(train + test + test), num_classes=10)


def run_command(main, prog, argv, capsys):
    """Runs a command's `main` in this process as `python -m` would: (exit status, printed)."""
    import pytest

    from experiments.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, prog, [str(a) for a in argv])
    return exit_info.value.code, capsys.readouterr()
