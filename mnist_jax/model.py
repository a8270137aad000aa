"""The notebook's multilayer perceptron, as a Flax linen module, and pure functions around it.

Dense(128) ReLU -> Dense(128) ReLU -> Dropout(0.25) -> Dense(10), with Keras's initialisers
(Glorot-uniform kernels, zero biases) so that results compare with the Keras notebook. The module
returns logits; the softmax lives in the loss and in `predict_probabilities`, where it is
numerically stable (log-softmax), which is the same maths as Keras's softmax layer + cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any  # a pytree of arrays: {"Dense_0": {"kernel", "bias"}, ...}


def dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout whose `rate` may be a traced value.

    The same maths as `flax.linen.Dropout` (Bernoulli keep mask with p = 1 - rate, survivors scaled
    by 1 / (1 - rate)), written without Python branches on `rate`, so a sweep can `vmap` over
    members that have different dropout rates in one compiled program. `rate` must be in [0, 1).
    """
    keep_prob = 1.0 - rate
    mask = jax.random.bernoulli(key, p=keep_prob, shape=x.shape)
    return jnp.where(mask, x / keep_prob, jnp.zeros_like(x))


class MLP(nn.Module):
    """The notebook's MLP. Works on one example (784,) or a batch (B, 784); returns logits.

    `dropout_rate` may be a Python float or a JAX scalar (traced inside a sweep).
    """

    hidden_sizes: Sequence[int] = (128, 128)
    num_classes: int = 10
    dropout_rate: float | jax.Array = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        dense = lambda features: nn.Dense(
            features, kernel_init=nn.initializers.glorot_uniform(), bias_init=nn.initializers.zeros
        )
        for width in self.hidden_sizes:
            x = nn.relu(dense(width)(x))
        if train:
            # Keras's notebook places its single Dropout after the last hidden layer.
            x = dropout(x, self.dropout_rate, self.make_rng("dropout"))
        return dense(self.num_classes)(x)


def init_params(
    key: jax.Array,
    hidden_sizes: Sequence[int] = (128, 128),
    num_classes: int = 10,
    input_size: int = 784,
) -> Params:
    """Fresh parameters from `key`: Keras's initialisation, Glorot-uniform kernels and zero biases.

    The same distribution as `MLP.init` (kernels uniform in +-sqrt(6 / (fan_in + fan_out))), in the
    same tree, but drawn as ONE flat uniform sample cut into the kernels: threefry is compiled per
    shape, so three kernel shapes cost several times the XLA compilation of one draw, a noticeable
    share of a whole 10-epoch run on a CPU. (Tests check the tree matches `MLP.init`.)
    """
    sizes = [input_size, *hidden_sizes, num_classes]
    shapes = list(zip(sizes[:-1], sizes[1:]))
    draws = jax.random.uniform(key, (sum(a * b for a, b in shapes),), jnp.float32, -1.0, 1.0)
    params, offset = {}, 0
    for layer, (fan_in, fan_out) in enumerate(shapes):
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        kernel = draws[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out) * limit
        params[f"Dense_{layer}"] = {"kernel": kernel, "bias": jnp.zeros((fan_out,), jnp.float32)}
        offset += fan_in * fan_out
    return params


def apply_model(
    params: Params,
    x: jax.Array,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    num_classes: int = 10,
    dropout_rate: float | jax.Array = 0.25,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """Logits for `x`. With a `dropout_key` the model runs in train mode (dropout on), else in eval
    mode."""
    model = MLP(
        hidden_sizes=tuple(hidden_sizes), num_classes=num_classes, dropout_rate=dropout_rate
    )
    if dropout_key is None:
        return model.apply({"params": params}, x, train=False)
    return model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})


def count_params(params: Params) -> int:
    """Number of scalar parameters (118,282 for the notebook's model)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def param_shapes(params: Params) -> dict[str, tuple[int, ...]]:
    """Layer path -> shape, e.g. {"Dense_0/kernel": (784, 128), ...}: a parameter summary for
    notebooks."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape) for path, leaf in flat
    }
