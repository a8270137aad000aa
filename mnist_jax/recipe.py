"""Training recipes: the optimizer (adam, adamw, sgd) and the learning-rate schedule (constant,
cosine, warm-up then cosine), built from optax's transformations.

What changes the program (the optimizer's kind, the schedule's kind, Nesterov, Adam's epsilon) is
static, in the `TrainSpec`. Every number that keeps shapes (the peak learning rate, weight decay,
momentum, warm-up and decay lengths, the final fraction) is an array in the optimizer state
(`optax.inject_hyperparams`), so a sweep vmaps over members that differ in any of them. The
schedule reads the optimizer's own step count, which the checkpoint holds: a resumed run continues
the curve exactly.

The schedules are written in `jnp` rather than taken from `optax.schedules`, whose constructors
branch in Python on their lengths and values (a traced warm-up length cannot pass through them);
tests check them against optax's own schedules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

# The per-run numbers a recipe keeps in `opt_state.hyperparams` besides the learning rate.
RECIPE_HYPERPARAMS = (
    "weight_decay",
    "momentum",
    "warmup_steps",
    "decay_steps",
    "final_lr_fraction",
)


def schedule_multiplier(
    schedule: str,
    count: jax.Array,
    warmup_steps: jax.Array,
    decay_steps: jax.Array,
    final_lr_fraction: jax.Array,
) -> jax.Array:
    """The factor of the peak learning rate at optimizer step `count` (0 for the first step).

    constant: 1. cosine: `optax.cosine_decay_schedule(1, decay_steps, alpha=final)`.
    warmup-cosine: `optax.warmup_cosine_decay_schedule(0, 1, warmup_steps, decay_steps,
    end_value=final)`: linear from 0 over the warm-up, then cosine over the remaining steps.
    """
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

    adam with a constant rate is `inject_hyperparams(optax.adam)`, as Keras configures it
    (epsilon 1e-7): the notebook's optimizer, with the state layout of every earlier checkpoint.
    Otherwise: adam = scale_by_adam; adamw = scale_by_adam, then decoupled weight decay (optax's
    adamw); sgd = L2 weight decay added to the gradient, then momentum (`optax.trace`, Nesterov
    optional); each followed by the scheduled learning rate.
    """
    if optimizer == "adam" and schedule == "constant":
        return optax.inject_hyperparams(optax.adam)(learning_rate=1e-3, eps=epsilon)

    def recipe(learning_rate, weight_decay, momentum, warmup_steps, decay_steps, final_lr_fraction):
        def rate(count):
            factor = schedule_multiplier(
                schedule, count, warmup_steps, decay_steps, final_lr_fraction
            )
            return learning_rate * factor

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
    factor = schedule_multiplier(
        schedule,
        step,
        hyperparams["warmup_steps"],
        hyperparams["decay_steps"],
        hyperparams["final_lr_fraction"],
    )
    return peak * factor
