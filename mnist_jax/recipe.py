"""Training recipes: the optimizer (adam, adamw, sgd) and the learning-rate schedule (constant,
cosine, warm-up then cosine), built from optax's transformations.

What changes the program (the optimizer's and schedule's kinds, Nesterov, Adam's epsilon) is
static, in the `TrainSpec`; every number (peak learning rate, weight decay, momentum, warm-up and
decay lengths, final fraction) is an array in the optimizer state (`optax.inject_hyperparams`), so
a sweep vmaps over them. The schedule reads the optimizer's step count, which checkpoints hold.
The schedules are `jnp`, not `optax.schedules`, whose constructors branch in Python on their
lengths (tests check them against optax's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax


def schedule_multiplier(
    schedule: str,
    count: jax.Array,
    warmup_steps: jax.Array,
    decay_steps: jax.Array,
    final_lr_fraction: jax.Array,
) -> jax.Array:
    """The factor of the peak learning rate at optimizer step `count` (0 for the first step):
    1, `optax.cosine_decay_schedule(1, decay_steps, alpha=final)` or
    `optax.warmup_cosine_decay_schedule(0, 1, warmup_steps, decay_steps, end_value=final)`."""
    if schedule == "constant":
        return jnp.ones((), jnp.float32)
    count = jnp.asarray(count, jnp.float32)
    warmup = jnp.asarray(warmup_steps, jnp.float32) if schedule == "warmup-cosine" else 0.0
    length = jnp.maximum(jnp.asarray(decay_steps, jnp.float32) - warmup, 1.0)
    progress = jnp.minimum(jnp.maximum(count - warmup, 0.0), length) / length
    cosine = (1.0 - final_lr_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    decayed = cosine + final_lr_fraction
    if schedule == "cosine":
        return decayed
    if schedule == "warmup-cosine":
        return jnp.where(count < warmup, count / jnp.maximum(warmup, 1.0), decayed)
    raise ValueError(f"unknown schedule {schedule!r}")


def make_optimizer(
    optimizer: str = "adam",
    schedule: str = "constant",
    *,
    epsilon: float = 1e-7,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """The optimizer with its numbers in `opt_state.hyperparams` (set them with `set_recipe`).

    adam with a constant rate is `inject_hyperparams(optax.adam)` (epsilon 1e-7, as Keras): the
    notebook's optimizer, in every earlier checkpoint's state layout. Otherwise adam, adamw
    (decoupled weight decay) or sgd (L2 weight decay, then momentum), then the scheduled rate."""
    if optimizer == "adam" and schedule == "constant":
        return optax.inject_hyperparams(optax.adam)(learning_rate=1e-3, eps=epsilon)

    def recipe(learning_rate, weight_decay, momentum, warmup_steps, decay_steps, final_lr_fraction):
        def rate(count):
            curve = (warmup_steps, decay_steps, final_lr_fraction)
            return learning_rate * schedule_multiplier(schedule, count, *curve)

        if optimizer == "adam":
            steps = [optax.scale_by_adam(eps=epsilon)]
        elif optimizer == "adamw":
            steps = [optax.scale_by_adam(eps=epsilon), optax.add_decayed_weights(weight_decay)]
        elif optimizer == "sgd":
            steps = [
                optax.add_decayed_weights(weight_decay),
                optax.trace(decay=momentum, nesterov=nesterov),
            ]
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
        return optax.chain(*steps, optax.scale_by_learning_rate(rate))

    return optax.inject_hyperparams(recipe)(
        learning_rate=1e-3,
        weight_decay=0.0,
        momentum=0.9,
        warmup_steps=0.0,
        decay_steps=1.0,
        final_lr_fraction=0.0,
    )


def recipe_values(config: Any, train_examples: int) -> dict[str, float]:
    """A configuration's recipe numbers for `set_recipe`, with the schedule's lengths counted in
    optimizer steps (`train_examples` per epoch, the last batch kept)."""
    steps_per_epoch = math.ceil(train_examples / config.batch_size)
    return {
        "weight_decay": config.weight_decay,
        "momentum": config.momentum,
        "warmup_steps": config.warmup_epochs * steps_per_epoch,
        "decay_steps": config.epochs * steps_per_epoch,
        "final_lr_fraction": config.final_lr_fraction,
    }


def set_recipe(
    opt_state: Any, learning_rate: float | jax.Array, recipe: Mapping[str, Any] | None
) -> None:
    """Write the run's numbers into `opt_state.hyperparams` (in place; traced values welcome).
    Numbers the optimizer does not keep are ignored: a custom optimizer keeps its own."""
    hyperparams = getattr(opt_state, "hyperparams", None)
    if hyperparams is None:
        return
    for name, value in {"learning_rate": learning_rate, **(recipe or {})}.items():
        if name in hyperparams:
            hyperparams[name] = jnp.asarray(value, jnp.float32)


def learning_rate_in_effect(schedule: str, opt_state: Any, step: jax.Array) -> jax.Array | None:
    """The learning rate the optimizer used at its step `step` (None when it keeps none)."""
    hyperparams = getattr(opt_state, "hyperparams", None)
    if not hyperparams or "learning_rate" not in hyperparams:
        return None
    peak = hyperparams["learning_rate"]
    if "decay_steps" not in hyperparams:
        return peak
    curve = (hyperparams[k] for k in ("warmup_steps", "decay_steps", "final_lr_fraction"))
    return peak * schedule_multiplier(schedule, step, *curve)
