"""Training as pure functions: a train-state pytree, a train step, and an epoch that is one compiled
program.

Every path trains through `train_epoch`: a single run jits it, a sweep jits its `vmap` over stacked
states, a sharded sweep is the same call with sharded inputs. No host round trip inside an epoch.

Randomness: a run's one root key (from its seed) is in the state; three streams are folded from it
with fixed ids: parameter init, shuffling (folded with the epoch) and dropout (with the global
step). No key is reused, data order and dropout masks depend only on (seed, epoch, step), and a
restored run continues with exactly the keys it would have used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax import random_bits
from mnist_jax.config import FIELDS, TrainConfig
from mnist_jax.evaluate import evaluate_loss_accuracy
from mnist_jax.models import Model, Params, mlp, model_from_config
from mnist_jax.models.precision import with_precision
from mnist_jax.recipe import learning_rate_in_effect, make_optimizer, recipe_values, set_recipe

# Stream ids folded into a run's root key. Changing them changes every result: they are part of what
# a checkpoint means, so changing them needs a new checkpoint format version
# (`mnist_jax.checkpoint.store.FORMAT_VERSION`).
INIT_STREAM, SHUFFLE_STREAM, DROPOUT_STREAM = 0, 1, 2


@flax.struct.dataclass
class TrainState:
    """Everything training needs to continue, as a pytree of arrays (checkpoints save it as it is).
    The per-run numbers are arrays, not compiled-in constants, so that a sweep's members differ in
    them; the scalars' dtypes are those `init_train_state` gives."""

    params: Params
    opt_state: Any  # with `make_optimizer`, it holds the learning rate and the recipe's numbers
    dropout_rate: jax.Array
    key: jax.Array  # uint32[2]: the raw data of the run's root key (raw: any library stores it)
    step: jax.Array  # optimizer steps taken
    epoch: jax.Array  # epochs completed
    # The parameters of the epoch with the best validation accuracy (the initial ones, -1 and 0
    # before any epoch), selected inside the compiled validation (`track_best`).
    best_params: Params
    best_accuracy: jax.Array
    best_epoch: jax.Array
    stale_epochs: jax.Array  # epochs validated since the last improvement
    stopped: jax.Array  # early-stopped (`TrainSpec.patience`): `train_epoch` leaves it as it is
    # The configuration's other fields marked `in_state` (e.g. label_smoothing), float32 by name;
    # a checkpoint from before a name existed restores it at the configuration's value.
    hyper: dict[str, jax.Array]


# The fields of a train state saved before best-epoch tracking existed (see `from_legacy`).
LEGACY_FIELDS = ("params", "opt_state", "dropout_rate", "key", "step", "epoch")


def from_legacy(saved: Mapping[str, Any], best_accuracy: Any = -1.0) -> TrainState:
    """A train state from one saved before best-epoch tracking: its current parameters become
    the best ones, at its epoch, with `best_accuracy` (that epoch's validation accuracy; arrays
    for stacked states), nothing stale and nothing stopped; no `hyper` (the restore fills it)."""
    epoch = np.asarray(saved["epoch"])
    return TrainState(
        **{name: saved[name] for name in LEGACY_FIELDS},
        best_params=jax.tree.map(np.array, saved["params"]),
        best_accuracy=np.broadcast_to(np.asarray(best_accuracy, np.float32), epoch.shape).copy(),
        best_epoch=epoch.astype(np.int32),
        stale_epochs=np.zeros(epoch.shape, np.int32),
        stopped=np.zeros(epoch.shape, bool),
        hyper={},
    )


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """The static part of training, compiled into the program: the model, the data's shapes, the
    batch size and the optimizer's code. Hashable: equal specs share one compiled program. Per-run
    numbers that keep shapes live in the `TrainState`, which lets a sweep vmap over them."""

    model: Model = dataclasses.field(default_factory=mlp)
    image_shape: tuple[int, ...] = (28, 28)  # one example's (H, W), before the model's layout
    batch_size: int = 512
    adam_epsilon: float = 1e-7
    optimizer_kind: str = "adam"  # adam | adamw | sgd (`mnist_jax.recipe`)
    schedule: str = "constant"  # constant | cosine | warmup-cosine
    nesterov: bool = False
    patience: int = 0  # stop after this many epochs without a better validation accuracy; 0: never
    # Any optax transformation; None means `recipe.make_optimizer` of the fields above. Kept None
    # by default so that equal configurations give equal (hash-equal) specs and so share one
    # compiled program.
    tx: optax.GradientTransformation | None = None

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        num_classes: int = 10,
        image_shape: tuple[int, ...] = (28, 28),
        *,
        model: Model | None = None,
        tx: optax.GradientTransformation | None = None,
    ) -> TrainSpec:
        """The spec of `config`: its built-in model (`config.model`), or `model`, a user's."""
        model = model if model is not None else model_from_config(config, num_classes)
        model = with_precision(model, config.precision)
        return cls(
            model,
            tuple(image_shape),
            config.batch_size,
            config.adam_epsilon,
            config.optimizer,
            config.schedule,
            config.nesterov,
            config.patience,
            tx,
        )

    @property
    def example_shape(self) -> tuple[int, ...]:
        """One example's shape as the model takes it, e.g. (784,) or (28, 28, 1)."""
        return self.model.example_shape(self.image_shape)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        if self.tx is not None:
            return self.tx
        return make_optimizer(
            self.optimizer_kind, self.schedule, epsilon=self.adam_epsilon, nesterov=self.nesterov
        )


class Batch(NamedTuple):
    images: jax.Array  # float32 (B, *example_shape)
    labels: jax.Array  # int32 (B,)
    weights: jax.Array  # float32 (B,): 1 for real examples, 0 for padding


def stream_key(state_or_key: TrainState | jax.Array, stream: int) -> jax.Array:
    """The typed PRNG key of one random stream of a run."""
    raw = state_or_key.key if isinstance(state_or_key, TrainState) else state_or_key
    return jax.random.fold_in(jax.random.wrap_key_data(raw), stream)


def init_train_state(
    spec: TrainSpec,
    seed: int | jax.Array,
    learning_rate: float | jax.Array = 1e-3,
    dropout_rate: float | jax.Array = 0.25,
    recipe: Mapping[str, Any] | None = None,
    hyper: Mapping[str, Any] | None = None,
) -> TrainState:
    """A fresh train state for `seed`. Pure: `jax.vmap` over seeds and hyper-parameters is a sweep.
    `learning_rate` and `recipe` (`recipe.recipe_values`) go into the optimizer state where it
    keeps them; `hyper` (`state_hyperparams`) defaults to the configuration's defaults."""
    if recipe is None and spec.tx is None and spec.schedule != "constant":
        raise ValueError(
            f"the {spec.schedule} schedule needs its length: pass "
            "recipe=recipe.recipe_values(config, train_examples) (`create_train_state` does)"
        )
    raw_key = jax.random.key_data(jax.random.key(seed))
    params = spec.model.init(stream_key(raw_key, INIT_STREAM), spec.example_shape)
    opt_state = spec.optimizer.init(params)
    set_recipe(opt_state, learning_rate, recipe)
    return TrainState(
        params=params,
        opt_state=opt_state,
        dropout_rate=jnp.asarray(dropout_rate, jnp.float32),
        key=raw_key,
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        best_params=jax.tree.map(jnp.copy, params),
        best_accuracy=jnp.full((), -1.0, jnp.float32),
        best_epoch=jnp.zeros((), jnp.int32),
        stale_epochs=jnp.zeros((), jnp.int32),
        stopped=jnp.zeros((), bool),
        hyper={
            name: jnp.asarray(value, jnp.float32)
            for name, value in {**state_hyperparams(TrainConfig()), **(hyper or {})}.items()
        },
    )


def state_hyperparams(config: TrainConfig) -> dict[str, np.float32]:
    """The configuration's traced hyper-parameters that live in `TrainState.hyper`: its fields
    marked `in_state` in the schema."""
    return {
        name: np.float32(getattr(config, name))
        for name, field in FIELDS.items()
        if field.metadata["in_state"]
    }


# Compiled once per spec: seed and hyper-parameters are traced, so every run of a shape shares it.
init_train_state_jit = jax.jit(init_train_state, static_argnums=0)


def run_hyperparams(config: TrainConfig, train_examples: int) -> tuple:
    """The traced arguments of `init_train_state` for `config`: (seed, learning rate, dropout
    rate, recipe, hyper), as the arrays a compiled init takes."""
    recipe = {k: np.float32(v) for k, v in recipe_values(config, train_examples).items()}
    return (
        np.uint32(config.seed),
        np.float32(config.learning_rate),
        np.float32(config.dropout_rate),
        recipe,
        state_hyperparams(config),
    )


def create_train_state(
    config: TrainConfig, spec: TrainSpec | None = None, train_examples: int = 60_000
) -> TrainState:
    """`init_train_state` with the seed and hyper-parameters of `config` (compiled);
    `train_examples` sets the schedule's length in steps."""
    spec = spec or TrainSpec.from_config(config)
    return init_train_state_jit(spec, *run_hyperparams(config, train_examples))


def weighted_cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, label_smoothing: Any = 0.0
) -> jax.Array:
    """Mean softmax cross-entropy over the examples with weight 1 (padding rows weigh 0), with
    `optax.smooth_labels`' targets for `label_smoothing` a: (1 - a) * the cross-entropy + a * the
    mean of -log p over the classes (a = 0: exactly the unsmoothed loss and gradient)."""
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    spread = -jnp.mean(jax.nn.log_softmax(logits), axis=-1)
    per_example = (1.0 - label_smoothing) * per_example + label_smoothing * spread
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def weighted_z_loss(logits: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean of logsumexp(logits)^2 over the examples with weight 1 (padding rows weigh 0): the
    logit z-loss that `TrainConfig.z_loss` weighs into the training loss."""
    per_example = jnp.square(jax.nn.logsumexp(logits, axis=-1))
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def train_step(spec: TrainSpec, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    """One optimizer step on `batch`. Pure; dropout keyed by `fold_in(dropout stream, step)`.

    Returns the new state and each metric's sum over the batch's real examples (`loss`, `accuracy`
    as a count, `grad_norm` once per example), with that `count`: sums, so that the epoch's means
    are exact whatever its batch sizes (the last, smaller batch's norm weighs less)."""
    dropout_key = jax.random.fold_in(stream_key(state, DROPOUT_STREAM), state.step)

    def loss_fn(params):
        logits = spec.model.apply(
            params, batch.images, dropout_rate=state.dropout_rate, dropout_key=dropout_key
        )
        loss = weighted_cross_entropy(
            logits, batch.labels, batch.weights, state.hyper["label_smoothing"]
        )
        loss = loss + state.hyper["z_loss"] * weighted_z_loss(logits, batch.weights)
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = spec.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    count = jnp.sum(batch.weights)
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == batch.labels) * batch.weights)
    new_state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
    sums = {"loss": loss * count, "accuracy": correct, "grad_norm": optax.tree.norm(grads) * count}
    return new_state, {**sums, "count": count}


def epoch_plan(
    state: TrainState, num_examples: int, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """The next epoch's batches: `epoch_batches` keyed by (run key, shuffle stream, epoch)."""
    shuffle_key = jax.random.fold_in(stream_key(state, SHUFFLE_STREAM), state.epoch)
    return epoch_batches(shuffle_key, num_examples, batch_size)


def epoch_batches(
    key: jax.Array, num_examples: int, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """One epoch's shuffled example indices and weights, shaped (steps, batch_size).

    The order is `argsort` of random 32-bit keys: a uniform shuffle (rare ties broken by index),
    cheaper on CPU than `jax.random.permutation`. The last batch is padded to full size with index
    0 and weight 0: one compiled step, and exactly the smaller batch's loss and gradient."""
    steps = math.ceil(num_examples / batch_size)
    order = jnp.argsort(random_bits.random_bits(key, (num_examples,))).astype(jnp.int32)
    padding = steps * batch_size - num_examples
    order = jnp.concatenate([order, jnp.zeros((padding,), jnp.int32)])
    weights = (jnp.arange(steps * batch_size) < num_examples).astype(jnp.float32)
    return order.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def train_epoch(
    spec: TrainSpec, state: TrainState, images: jax.Array, labels: jax.Array
) -> tuple[TrainState, dict]:
    """One epoch: shuffle, then `lax.scan` of `train_step` over every batch. Pure; jit/vmap it.

    `images` `(N, *spec.example_shape)` float32 and `labels` (N,) int32, the whole training set on
    the device, each step gathering its batch. Returns the new state and the epoch's means of the
    step's metrics (as it trains, dropout on: what Keras reports), the parameters' L2 norm at its
    end (`param_norm`) and its last step's learning rate where the optimizer keeps one. A stopped
    state is returned as it is, with NaN loss and accuracy."""
    images, labels = jnp.asarray(images), jnp.asarray(labels)

    def metrics(state: TrainState, means: dict) -> dict:
        rate = learning_rate_in_effect(spec.schedule, state.opt_state, state.step - 1)
        # the rate of the epoch's last step, where the optimizer keeps one
        return {**means, **({} if rate is None else {"learning_rate": rate})}

    def train(state: TrainState) -> tuple[TrainState, dict]:
        order, weights = epoch_plan(state, images.shape[0], spec.batch_size)

        def body(state, batch_plan):
            index, weight = batch_plan
            return train_step(spec, state, Batch(images[index], labels[index], weight))

        trained, sums = jax.lax.scan(body, state, (order, weights))
        count = jnp.sum(sums.pop("count"))
        means = {name: jnp.sum(total) / count for name, total in sums.items()}
        means["param_norm"] = optax.tree.norm(trained.params)  # at the epoch's end
        return trained.replace(epoch=trained.epoch + 1), metrics(trained, means)

    def keep(state: TrainState) -> tuple[TrainState, dict]:
        # NaN as `full_like` of a state leaf: inside shard_map a constant would not vary over
        # members as the other branch's numbers do, and cond needs both branches' types equal.
        nan = jnp.full_like(state.best_accuracy, jnp.nan)
        shapes = jax.eval_shape(train, state)[1]  # the metrics the other branch returns
        return state, {**{name: nan for name in shapes}, **metrics(state, {})}

    # An early-stopped member keeps its state; its loss and accuracy are NaN (never read: the host
    # loop records nothing for it). Unbatched (a sweep's members one at a time) this is a real
    # branch: a stopped member's epoch is not trained at all. Under vmap, jax turns it into a
    # select of both branches: its rows compute and are discarded while the others train on.
    return jax.lax.cond(state.stopped, keep, train, state)


def track_best(state: TrainState, val_accuracy: jax.Array, patience: int = 0) -> TrainState:
    """After an epoch's validation: keep the parameters where the accuracy improved (a select, for
    every member at once), count the epochs without improvement, and stop a member after
    `patience` of them (0: never). A stopped member is left as it is; NaN never improves."""
    active = jnp.logical_not(state.stopped)
    improved = active & (val_accuracy > state.best_accuracy)
    stale = jnp.where(improved, 0, state.stale_epochs + active.astype(jnp.int32))
    stopped = state.stopped | (stale >= patience) if patience > 0 else state.stopped
    return state.replace(
        best_params=jax.tree.map(
            lambda new, old: jnp.where(improved, new, old), state.params, state.best_params
        ),
        best_accuracy=jnp.where(improved, val_accuracy.astype(jnp.float32), state.best_accuracy),
        best_epoch=jnp.where(improved, state.epoch, state.best_epoch),
        stale_epochs=stale,
        stopped=stopped,
    )


def validate_epoch(
    spec: TrainSpec, state: TrainState, images: jax.Array, labels: jax.Array, chunk_size: int
) -> tuple[TrainState, dict]:
    """The epoch's validation: loss and accuracy of `state.params` on (images, labels), then
    `track_best`. Returns the state and the metrics, with `stopped` after this epoch."""
    metrics = evaluate_loss_accuracy(
        spec.model, state.params, images, labels, chunk_size=chunk_size
    )
    state = track_best(state, metrics["accuracy"], spec.patience)
    return state, {**metrics, "stopped": state.stopped}


# The single-run programs: the spec compiled in, the state's buffers donated (updated in place).
train_step_jit = jax.jit(train_step, static_argnums=0, donate_argnums=1)
train_epoch_jit = jax.jit(train_epoch, static_argnums=0, donate_argnums=1)
validate_epoch_jit = jax.jit(
    validate_epoch, static_argnums=0, static_argnames="chunk_size", donate_argnums=1
)
