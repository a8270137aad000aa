"""A single run: data on the device once (`to_device`), then `fit`, the epochs of one member.

`DeviceData`, `to_device`, `spec_for` and the checks live in `mnist_jax.device_data` (sweeps use
them too) and are importable from here, where a notebook looks for them.

`fit` compiles init, the epoch and the validation ahead of time (so their cost is measured on its
own), then hands them to `mnist_jax.epochs.run_epochs`, the host loop it shares with sweeps.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.device_data import (
    DeviceData,
    check_fits,
    check_precision,
    spec_for,
    to_device,
)
from mnist_jax.epochs import compile_all, run_epochs, time_to_target
from mnist_jax.models import Model
from mnist_jax.train import (
    TrainSpec,
    TrainState,
    init_train_state,
    init_train_state_jit,
    run_hyperparams,
    train_epoch_jit,
    validate_epoch_jit,
)

__all__ = [  # the data's functions, re-exported for notebooks (see the module's docstring)
    "DeviceData",
    "EpochCallback",
    "FitResult",
    "Programs",
    "check_fits",
    "check_precision",
    "compile_programs",
    "fit",
    "spec_for",
    "to_device",
]


@dataclasses.dataclass
class FitResult:
    state: TrainState
    history: list[dict]
    compile_seconds: float


EpochCallback = Callable[[TrainState, dict, list], None]


class Programs(NamedTuple):
    """The compiled programs of a run: init (None when resuming), epoch, validation."""

    init: Callable | None
    epoch: Callable
    validate: Callable


def compile_programs(
    config: TrainConfig, spec: TrainSpec, data: DeviceData, state: TrainState | None = None
) -> Programs:
    """Compile init, the epoch and validation ahead of time, the three at once.

    Tracing happens here, in this thread; XLA's compilation, the larger part, runs in parallel
    threads (`epochs.compile_all`). The epoch is lowered against the state's abstract shapes, so
    it need not wait for init to run.
    """
    hyper = run_hyperparams(config, int(data.train_images.shape[0]))
    init = None if state is not None else init_train_state_jit.lower(spec, *hyper)
    abstract = (
        state
        if state is not None
        else jax.eval_shape(functools.partial(init_train_state, spec), *hyper)
    )
    epoch = train_epoch_jit.lower(spec, abstract, data.train_images, data.train_labels)
    validate = validate_epoch_jit.lower(
        spec, abstract, data.val_images, data.val_labels, chunk_size=config.eval_batch_size
    )
    return Programs(*compile_all([init, epoch, validate]))


def fit(
    config: TrainConfig,
    data: DeviceData,
    *,
    spec: TrainSpec | None = None,
    model: Model | None = None,
    state: TrainState | None = None,
    history: Sequence[dict] = (),
    callbacks: Sequence[EpochCallback] = (),
) -> FitResult:
    """Trains from `state` (a fresh one from `config.seed` if None) to `config.epochs` epochs.

    The model is `spec.model`; without a spec, `model` (any `Model`, e.g. a user's
    `LinenModel`), else the configuration's built-in one. `data` is reshaped on the device to the
    model's layout if it is in another's.

    The state passed in is consumed (its buffers are donated to the first epoch); use the returned
    one. `history` continues an earlier history when resuming. After each epoch, each callback is
    called as `callback(state, record, history)` with the epoch's record:
    `{"epoch", "train_loss", "train_accuracy", "train_grad_norm", "val_loss", "val_accuracy",
    "learning_rate", "seconds"}` (every metric the compiled programs return: `epochs.run_epochs`).

    Raises TrainingError, before any callback sees the epoch, if the training or validation loss is
    not finite, so that a diverged state is never checkpointed.
    """
    spec = spec or spec_for(config, data, model)
    data = data.in_layout(spec.example_shape)
    start = time.perf_counter()
    programs = compile_programs(config, spec, data, state)
    compile_seconds = time.perf_counter() - start
    if state is None:
        state = programs.init(*run_hyperparams(config, int(data.train_images.shape[0])))
    history = list(history)
    epochs = range(int(state.epoch) + 1, config.epochs + 1)
    if config.stop_at_target and time_to_target(history, config.target_accuracy)["reached"]:
        epochs = range(0)  # a resumed run that had stopped at its target
    name = f"training (learning rate {config.learning_rate})"
    loop = run_epochs(
        programs.epoch,
        programs.validate,
        state,
        data,
        epochs,
        [history],
        raise_on_divergence=True,
        name=lambda _: name,
    )
    for state, (record,) in loop:
        for callback in callbacks:
            callback(state, record, history)
        if config.stop_at_target and time_to_target(history, config.target_accuracy)["reached"]:
            break
    return FitResult(state, history, compile_seconds)
