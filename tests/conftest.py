"""Shared fixtures: the real MNIST from $MNIST_JAX_DATA, a small cut of it, and one compilation
cache for the whole session.

CI sets MNIST_JAX_DATA (to ../shared/data/mnist) and CI=true: there a missing variable is a failure,
because silently skipping would leave the real-data tests unrun. Locally they skip without it.
"""

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from mnist_jax.data import load_dataset
from mnist_jax.runtime import CACHE_ENV, configure_xla_cpu, enable_compilation_cache

# The tests compute what the commands compute: the same XLA:CPU flags, set before any test starts
# jax's backend.
configure_xla_cpu()

# One persistent compilation cache for the session, shared by this process, its pytest-xdist
# workers and every command the tests start (they inherit the variable): the hundreds of commands
# the suite runs compile the same few programs, and would each compile them again. A fresh folder,
# so that a test never depends on what an earlier session or the user's own cache holds.
_CACHE_OWNER = "MNIST_JAX_TEST_CACHE_OWNER"


def pytest_configure(config):
    if os.environ.get(_CACHE_OWNER) is None:  # the controller (or a run without xdist)
        os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="mnist-jax-test-cache-")
        os.environ[_CACHE_OWNER] = str(os.getpid())
    enable_compilation_cache()


# The test files that take longest (half a minute to two minutes each on a 2-core machine, in
# the fresh-clone runs' durations), longest first.
# pytest-xdist hands each worker a whole file at a time, in collection order: starting with these
# keeps one worker from being left with a long file at the end while the other has finished.
LONGEST_FILES = (
    "test_sweep_processes.py",
    "test_faults.py",
    "test_models.py",
    "test_resume.py",
    "test_notebooks.py",
    "test_sweep.py",
    "test_bench.py",
    "test_precision.py",
    "test_real_data.py",
    "test_readme.py",
    "test_sweep_resume.py",
    "test_sweep_cli.py",
    "test_recipe.py",
    "test_checkpoint.py",
    "test_logs.py",
    "test_sweep_devices.py",
    "test_runtime.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


def pytest_unconfigure(config):
    if os.environ.get(_CACHE_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ[CACHE_ENV], ignore_errors=True)


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


# The size of the real-MNIST cut most command tests train on: large enough that a model learns
# (so accuracies, curves and comparisons mean something), small enough that an epoch is
# milliseconds. Tests whose point is the real data (the golden test, the accuracy checks) use
# `mnist_dir`.
SMALL_TRAIN, SMALL_TEST = 2000, 500


@pytest.fixture(scope="session")
def small_mnist_dir(mnist, tmp_path_factory) -> Path:
    """The first 2,000 training and 500 test images of the real MNIST, as IDX files; a command
    reads them with `--dataset small-mnist --data-dir FOLDER` (the flags of `small_mnist`)."""
    from mnist_jax.data.catalog import FILE_STEMS
    from mnist_jax.data.idx import write_idx

    folder = tmp_path_factory.mktemp("small-mnist")
    arrays = (
        mnist.train_images[:SMALL_TRAIN],
        mnist.train_labels[:SMALL_TRAIN],
        mnist.test_images[:SMALL_TEST],
        mnist.test_labels[:SMALL_TEST],
    )
    for stem, array in zip(FILE_STEMS, arrays):
        write_idx(folder / stem, array, compress=False)
    return folder


@pytest.fixture(scope="session")
def small_mnist(small_mnist_dir) -> list[str]:
    """The command-line flags that train on the small cut of MNIST."""
    return ["--dataset", "small-mnist", "--data-dir", str(small_mnist_dir)]


@pytest.fixture(autouse=True)
def strict_rank_promotion():
    """Implicit broadcasting between arrays of different ranks is an error in every test: a
    (B,) array meeting a (B, 1) one silently becomes (B, B), a classic silent wrong result."""
    with jax.numpy_rank_promotion("raise"):
        yield
