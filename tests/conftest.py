"""Shared fixtures: the real MNIST from $MNIST_JAX_DATA.

CI sets MNIST_JAX_DATA (to ../shared/data/mnist) and CI=true: there a missing variable is a failure,
because silently skipping would leave the real-data tests unrun. Locally they skip without it.
"""

import os
from pathlib import Path

import jax
import pytest

from mnist_jax.data import load_dataset
from mnist_jax.runtime import configure_xla_cpu

# The tests compute what the commands compute: the same XLA:CPU flags, set before any test starts
# jax's backend.
configure_xla_cpu()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = os.environ.get("MNIST_JAX_DATA")
    if not folder:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "CI=true but MNIST_JAX_DATA is not set: point it at the folder with the MNIST files"
            )
        pytest.skip("set MNIST_JAX_DATA to the folder with the MNIST files to run these tests")
    return Path(folder)


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return load_dataset("mnist", data_dir=str(mnist_dir), download=False)


@pytest.fixture(autouse=True)
def strict_rank_promotion():
    """Implicit broadcasting between arrays of different ranks is an error in every test: a
    (B,) array meeting a (B, 1) one silently becomes (B, B), a classic silent wrong result."""
    with jax.numpy_rank_promotion("raise"):
        yield
