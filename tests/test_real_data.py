"""The accuracy checks on the real MNIST (the `mnist` fixture): the CNN learns it as it should,
and a sweep member matches its single run there (the notebook's MLP reaching 95% is checked by
the golden test, which trains that very run). One file, so that
pytest-xdist can run these long trainings beside the rest of their modules' tests."""

import dataclasses

import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.fit import fit
from mnist_jax.sweep import expand_members, run_sweep


@pytest.mark.slow
def test_one_cnn_epoch_on_20000_real_mnist_images_reaches_96_percent(mnist):
    # The first 25,000 training images, validated on the test set (its validation_size=5,000 did
    # nothing without --validation holdout, now refused). One CNN epoch on them reaches 96-97%.
    from mnist_jax.fit import to_device

    subset = dataclasses.replace(
        mnist, train_images=mnist.train_images[:25_000], train_labels=mnist.train_labels[:25_000]
    )
    config = TrainConfig(model="cnn", epochs=1, batch_size=128)
    result = fit(config, to_device(subset, config))
    assert result.history[-1]["val_accuracy"] >= 0.96


@pytest.mark.slow
def test_two_member_sweep_matches_two_single_runs_on_real_mnist(mnist):
    from mnist_jax.fit import to_device

    config = TrainConfig(epochs=2)
    data = to_device(mnist, config)
    sweep = run_sweep(config, expand_members([0, 1]), data)
    for result in sweep.members:
        single = fit(result.member.config(config), data)
        difference = abs(result.test["test_accuracy"] - single.history[-1]["val_accuracy"])
        assert difference <= 0.002, f"seed {result.member.seed}: {difference:.4f}"
