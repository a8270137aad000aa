"""The notebook's multilayer perceptron, as a Flax linen module, and its model.

Dense(128) ReLU -> Dense(128) ReLU -> Dropout(0.25) -> Dense(10), with Keras's initialisers
(Glorot-uniform kernels, zero biases). It returns logits: the softmax is in the loss (log-softmax,
stable) and in `predict_probabilities`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax import random_bits
from mnist_jax.models.base import LinenModel, Params, dropout


def dense(features: int) -> nn.Dense:
    """A Dense layer initialised as Keras does: Glorot-uniform kernel, zero bias."""
    return nn.Dense(
        features, kernel_init=nn.initializers.glorot_uniform(), bias_init=nn.initializers.zeros
    )


class MLP(nn.Module):
    """The notebook's MLP on a batch (B, 784) (or one example); `dropout_rate` may be traced."""

    hidden_sizes: Sequence[int] = (128, 128)
    num_classes: int = 10
    dropout_rate: float | jax.Array = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
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
    """Fresh MLP parameters, distributed and arranged as `MLP.init`'s, but drawn as ONE uniform
    sample cut into the kernels: threefry compiles per shape, and three kernel shapes cost several
    times one draw's compilation, a noticeable share of a 10-epoch CPU run."""
    sizes = [input_size, *hidden_sizes, num_classes]
    shapes = list(zip(sizes[:-1], sizes[1:]))
    # jax.random.uniform(key, (n,), minval=-1, maxval=1), bit for bit, as one fused kernel.
    draws = random_bits.uniform(key, (sum(a * b for a, b in shapes),)) * 2.0 - 1.0
    params, offset = {}, 0
    for layer, (fan_in, fan_out) in enumerate(shapes):
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        kernel = draws[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out) * limit
        params[f"Dense_{layer}"] = {"kernel": kernel, "bias": jnp.zeros((fan_out,), jnp.float32)}
        offset += fan_in * fan_out
    return params


@dataclasses.dataclass(frozen=True)
class MLPModel(LinenModel):
    """The built-in `mlp`: the `MLP` module, flat input, initialised by `init_params`."""

    def init(self, key: jax.Array, example_shape: tuple[int, ...]) -> Params:
        return init_params(
            key, self.module.hidden_sizes, self.module.num_classes, math.prod(example_shape)
        )


def mlp(hidden_sizes: Sequence[int] = (128, 128), num_classes: int = 10) -> MLPModel:
    """The notebook's MLP as a model."""
    module = MLP(hidden_sizes=tuple(hidden_sizes), num_classes=num_classes)
    return MLPModel(module, input_layout="flat", label="mlp")
