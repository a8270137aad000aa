"""The data training reads, on the device (`DeviceData`, made by `to_device`), a configuration's
`TrainSpec` for a dataset, and the checks that refuse, before anything is created, a configuration
the dataset or the device cannot serve. Shared by single runs and sweeps (`fit`, `sweep.run`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.data import Dataset, holdout_split, scale_to_layout
from mnist_jax.errors import ConfigError
from mnist_jax.memory import host_bytes, member_bytes, memory_bytes
from mnist_jax.models import Model, check_model, describe_text
from mnist_jax.models.precision import bf16_unsupported
from mnist_jax.train import TrainSpec


class DeviceData(NamedTuple):
    """The arrays training reads, on the device: images float32 in [0, 1] in a model's layout
    `(N, *example_shape)`, labels int32; and what the arrays alone do not say."""

    train_images: jax.Array
    train_labels: jax.Array
    val_images: jax.Array
    val_labels: jax.Array
    test_images: jax.Array
    test_labels: jax.Array
    num_classes: int
    image_shape: tuple[int, ...] = (28, 28)

    @property
    def arrays(self) -> tuple[jax.Array, ...]:
        return tuple(self[:6])

    def in_layout(self, example_shape: tuple[int, ...]) -> DeviceData:
        """The same data with each example shaped `example_shape` (another model's layout): a
        reshape on the device, nothing moves through the host; `self` when it already is."""
        if tuple(self.train_images.shape[1:]) == tuple(example_shape):
            return self
        reshaped = [
            x.reshape(x.shape[0], *example_shape) if k % 2 == 0 else x
            for k, x in enumerate(self.arrays)
        ]
        return self._replace(**dict(zip(self._fields, reshaped)))


def spec_for(
    config: TrainConfig, dataset_or_data: Dataset | DeviceData, model: Model | None = None
) -> TrainSpec:
    """The spec of `config` for this dataset: its classes and image shape, the configuration's
    built-in model or `model`."""
    return TrainSpec.from_config(
        config, dataset_or_data.num_classes, tuple(dataset_or_data.image_shape), model=model
    )


def to_device(dataset: Dataset, config: TrainConfig, spec: TrainSpec | None = None) -> DeviceData:
    """Every split scaled as the notebook (/255), in the layout of `spec`'s model (default: the
    configuration's), on the default device once. The validation split is the test set
    (`validation="test"`, as the notebook) or the last `validation_size` training examples
    (`"holdout"`), then not trained on."""
    spec = spec or spec_for(config, dataset)
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if config.validation == "holdout":
        train_images, train_labels, val_images, val_labels = holdout_split(
            train_images, train_labels, config.validation_size
        )
    else:
        val_images, val_labels = dataset.test_images, dataset.test_labels
    splits = [train_images, train_labels, val_images, val_labels]
    arrays = [
        scale_to_layout(array, spec.example_shape) if k % 2 == 0 else np.asarray(array, np.int32)
        for k, array in enumerate([*splits, dataset.test_images, dataset.test_labels])
    ]
    return DeviceData(
        *jax.device_put(arrays),
        num_classes=dataset.num_classes,
        image_shape=tuple(dataset.image_shape),
    )


def check_fits(config: TrainConfig, dataset: Dataset, spec: TrainSpec | None = None) -> None:
    """Refuses, before anything is created, a configuration the dataset cannot serve: a held-out
    split leaving no training examples, a batch larger than the training set (padded to its full
    memory cost), a model that cannot train on these images (`check_model`), a precision without
    hardware (`check_precision`) or a model needing more memory than the device has."""
    spec = spec or spec_for(config, dataset)
    examples = int(dataset.train_images.shape[0])
    if config.validation == "holdout":
        if not 1 <= config.validation_size < examples:
            raise ConfigError(
                f"invalid validation_size={config.validation_size}: --validation holdout needs "
                f"1 to {examples - 1} of the {examples} training examples of {dataset.name}"
            )
        examples -= config.validation_size
    test = int(dataset.test_images.shape[0])
    _check_trains(config, spec, examples, test, dataset.num_classes, dataset.name)


def check_trains(config: TrainConfig, data: DeviceData, spec: TrainSpec) -> None:
    """`check_fits` for data already split and on the device (what `fit` and `run_sweep` are
    given), so that a Python caller meets the commands' checks before anything compiles."""
    train, test = int(data.train_labels.shape[0]), int(data.test_labels.shape[0])
    _check_trains(config, spec, train, test, data.num_classes, "the data")


def _check_trains(
    config: TrainConfig, spec: TrainSpec, examples: int, test: int, num_classes: int, name: str
) -> None:
    if config.batch_size > examples:
        raise ConfigError(
            f"invalid batch_size={config.batch_size}: larger than the {examples} training "
            f"examples of {name}"
        )
    if test == 0:
        raise ConfigError(f"{name} has no test examples to evaluate on")
    check_model(spec.model, spec.example_shape, num_classes)
    check_precision(config.precision)
    needed = member_bytes(
        spec,
        examples,
        num_classes=num_classes,
        eval_examples=test,
        eval_chunk_size=config.eval_batch_size,
    )
    available = memory_bytes()
    if needed > available:
        raise ConfigError(
            f"model {describe_text(spec.model.describe())} needs about {needed / 2**30:,.1f} GiB "
            f"to train (parameters, Adam's moments, gradients and a batch's activations); this "
            f"device has {available / 2**30:,.1f} GiB"
        )


def check_precision(precision: str, device: jax.Device | None = None) -> None:
    """ConfigError where `device` (default: the first local one) cannot run `precision` at
    hardware speed (`models.precision.bf16_unsupported`)."""
    reason = bf16_unsupported(device) if precision == "bf16" else None
    if reason:
        raise ConfigError(f"--precision bf16 is not supported here: {reason}")


def check_results_fit(num_members: int, dataset: Dataset) -> None:
    """Refuses, before anything is created, a sweep whose members' test logits and softmax (kept on
    the host for the statistics, ensembles and predictions.npz; 75 GiB for 100,000 MNIST members)
    would take more than half the host's memory."""
    per_member = 2 * 4 * int(dataset.test_images.shape[0]) * int(dataset.num_classes)
    available = host_bytes() // 2
    if num_members * per_member > available:
        raise ConfigError(
            f"{num_members:,} members' test predictions would take about "
            f"{num_members * per_member / 2**30:,.1f} GiB of host memory, more than half of this "
            f"machine's {2 * available / 2**30:,.1f} GiB: sweep at most "
            f"{max(available // per_member, 1):,} members at once (e.g. fewer seeds per sweep)"
        )
