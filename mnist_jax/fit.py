"""A single run: data on the device once (`to_device`, re-exported from `device_data` for
notebooks), then `fit`, a sweep of one member on one device through the sweep's own
compile-and-train path (`sweep.run.train_program`): bitwise sweep member k's result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.device_data import (
    DeviceData,
    check_fits,
    check_precision,
    check_trains,
    spec_for,
    to_device,
)
from mnist_jax.models import Model, resolve_dropout
from mnist_jax.runtime import compilation_cache_by_default
from mnist_jax.sweep import program as prog
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, Member
from mnist_jax.sweep.plan import SweepProgram
from mnist_jax.sweep.run import train_program
from mnist_jax.train import TrainSpec, TrainState

__all__ = [  # the data's functions, re-exported for notebooks (see the module's docstring)
    "DeviceData",
    "EpochCallback",
    "FitResult",
    "check_fits",
    "check_precision",
    "device_of",
    "fit",
    "for_member",
    "member_of",
    "spec_for",
    "to_device",
]


@dataclasses.dataclass
class FitResult:
    state: TrainState
    history: list[dict]
    compile_seconds: float


EpochCallback = Callable[[TrainState, dict, list], None]

# The one member of a stacked state (on its device), and a state stacked as one member.
_unstack = jax.jit(lambda state: jax.tree.map(lambda x: x[0], state))
_stack = jax.jit(lambda state: jax.tree.map(lambda x: x[None], state))


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
    """Trains from `state` (copied, not changed; default: fresh from `config.seed`) to
    `config.epochs` epochs, on the device that holds `data` (reshaped there to the model's layout).

    The model is `spec.model`, else `model` (any `Model`), else the configuration's built-in one.
    `history` continues an earlier one. After each epoch, `callback(state, record, history)` with
    the epoch's record (`{"epoch", "train_loss", ..., "val_accuracy", "learning_rate", "seconds"}`:
    every metric the compiled programs return, `epochs.run_epochs`). The first call turns on the
    persistent compilation cache where jax has none (MNIST_JAX_COMPILATION_CACHE=off keeps it off).
    A non-finite loss raises TrainingError before any callback sees the epoch, so that a diverged
    state is never checkpointed."""
    compilation_cache_by_default()
    spec = spec or spec_for(config, data, model)
    config = resolve_dropout(config, spec.model)  # a module's own rate, where none is set
    # A model that cannot train on these examples is one line before anything compiles: a wrong
    # output width trained, or diverged an epoch later with advice about the learning rate.
    check_trains(config, data, spec)
    mesh = prog.member_mesh([device_of(data)])
    data = prog.replicate_data(data, mesh).in_layout(spec.example_shape)
    first_epoch = 1
    if state is not None:
        first_epoch = int(state.epoch) + 1
        state = jax.device_put(_stack(state), prog.member_sharding(mesh))
    state, (history,), compile_seconds = train_program(
        config,
        SweepProgram(0, (member_of(config),), 1),
        spec,
        data,
        mesh,
        state=state,
        histories=[list(history)],
        callbacks=[for_member(callbacks)] if callbacks else (),
        raise_on_divergence=True,
        name=lambda _: f"training (learning rate {config.learning_rate})",
        gather=jax.device_get,
        first_epoch=first_epoch,
    )
    return FitResult(_unstack(state), history, compile_seconds)


def member_of(config: TrainConfig) -> Member:
    """The sweep member that trains as `config` does: its seed and sweepable values."""
    return Member(config.seed, **{name: getattr(config, name) for name in CONFIG_KEY_FIELDS})


def for_member(callbacks: Sequence[EpochCallback]):
    """`fit`'s callbacks, `callback(state, record, history)`, as one callback of a one-member
    program (`run_sweep`'s), given the member's own state."""

    def each_epoch(program, stacked, records, histories):
        one = _unstack(stacked)
        for callback in callbacks:
            callback(one, records[0], histories[0])

    return each_epoch


def device_of(data: DeviceData) -> jax.Device:
    """The device that holds the data (the default device for arrays not yet on one)."""
    devices = list(getattr(data.train_images, "devices", list)())
    return devices[0] if len(devices) == 1 else jax.local_devices()[0]
