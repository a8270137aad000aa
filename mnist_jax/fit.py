"""The host-side training loop: epochs, history, callbacks and the NaN guard around `train_epoch`.

Data goes to the device once (`to_device`); each epoch is then one call of the compiled epoch program
plus one compiled validation call, and the host reads back four scalars per epoch. Compilation is
done ahead of time (`lower().compile()`) so that its cost is measured and reported on its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.data import Dataset, flatten_and_scale, holdout_split
from mnist_jax.errors import TrainingError
from mnist_jax.evaluate import evaluate_loss_accuracy
from mnist_jax.train import TrainSpec, TrainState, create_train_state, train_epoch_jit


class DeviceData(NamedTuple):
    """The arrays training reads, on the device: images float32 (N, 784) in [0, 1], labels int32 (N,)."""

    train_images: jax.Array
    train_labels: jax.Array
    val_images: jax.Array
    val_labels: jax.Array
    test_images: jax.Array
    test_labels: jax.Array
    num_classes: int


def to_device(dataset: Dataset, config: TrainConfig) -> DeviceData:
    """Preprocess as the notebook (/255, flatten) and place every split on the default device once.

    The validation split is the test set (`validation="test"`, as the notebook did) or the last
    `validation_size` training examples (`validation="holdout"`), which are then not trained on.
    """
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if config.validation == "holdout":
        train_images, train_labels, val_images, val_labels = holdout_split(
            train_images, train_labels, config.validation_size)
    else:
        val_images, val_labels = dataset.test_images, dataset.test_labels
    arrays = []
    for images, labels in ((train_images, train_labels), (val_images, val_labels),
                           (dataset.test_images, dataset.test_labels)):
        arrays += [flatten_and_scale(images), np.asarray(labels, np.int32)]
    return DeviceData(*jax.device_put(arrays), num_classes=dataset.num_classes)


@dataclasses.dataclass
class FitResult:
    state: TrainState
    history: list[dict]
    compile_seconds: float


EpochCallback = Callable[[TrainState, dict, list], None]


def fit(config: TrainConfig, data: DeviceData, *, spec: TrainSpec | None = None,
        state: TrainState | None = None, history: Sequence[dict] = (),
        callbacks: Sequence[EpochCallback] = ()) -> FitResult:
    """Train from `state` (a fresh one from `config.seed` if None) until `config.epochs` epochs are done.

    The state passed in is consumed (its buffers are donated to the first epoch); use the returned
    one. `history` continues an earlier history when resuming. After each epoch, each callback is
    called as `callback(state, record, history)` with the epoch's record:
    `{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}`.

    Raises TrainingError, before any callback sees the epoch, if the training or validation loss is
    not finite, so that a diverged state is never checkpointed.
    """
    spec = spec or TrainSpec.from_config(config, num_classes=data.num_classes)
    state = state if state is not None else create_train_state(config, spec,
                                                               data.train_images.shape[1])
    history = list(history)
    start = time.perf_counter()
    epoch_program = train_epoch_jit.lower(spec, state, data.train_images, data.train_labels).compile()
    validate = evaluate_loss_accuracy.lower(
        state.params, data.val_images, data.val_labels, hidden_sizes=spec.hidden_sizes,
        num_classes=spec.num_classes, chunk_size=config.eval_batch_size).compile()
    compile_seconds = time.perf_counter() - start

    for epoch in range(int(state.epoch) + 1, config.epochs + 1):
        start = time.perf_counter()
        state, train_metrics = epoch_program(state, data.train_images, data.train_labels)
        val_metrics = validate(state.params, data.val_images, data.val_labels)
        train_metrics, val_metrics = jax.device_get((train_metrics, val_metrics))
        record = {
            "epoch": epoch,
            "train_loss": float(train_metrics["loss"]),
            "train_accuracy": float(train_metrics["accuracy"]),
            "val_loss": float(val_metrics["loss"]),
            "val_accuracy": float(val_metrics["accuracy"]),
            "seconds": time.perf_counter() - start,
        }
        if not (np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])):
            raise TrainingError(
                f"training diverged at epoch {epoch}: train loss {record['train_loss']}, validation "
                f"loss {record['val_loss']}; lower the learning rate (now {config.learning_rate})")
        history.append(record)
        for callback in callbacks:
            callback(state, record, history)
    return FitResult(state, history, compile_seconds)

