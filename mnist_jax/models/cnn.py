"""The Flax examples' MNIST CNN as a linen module, and its model.

Conv(32, 3x3, SAME) ReLU, AvgPool 2x2 stride 2, Conv(64, 3x3, SAME) ReLU, AvgPool 2x2 stride 2,
flatten (NHWC order), Dense(256) ReLU, Dropout, Dense(classes). Glorot-uniform kernels and zero
biases, as the MLP (Keras's defaults), on (B, H, W, 1) images. The parameter tree is the one
`nn.Conv`/`nn.Dense` would make ({"Conv_0": {"kernel": (3, 3, 1, 32), "bias"}, ...}).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.models.base import LinenModel, dropout
from mnist_jax.models.conv_matmul import conv_as_matmul

_GLOROT = {"kernel_init": nn.initializers.glorot_uniform(), "bias_init": nn.initializers.zeros}


class Conv(nn.Module):
    """`nn.Conv(features, kernel_size, padding="SAME")`, stride 1, computed on CPUs as shifted
    slices and one matmul (`conv_matmul`: XLA:CPU's convolution is slow inside a loop)."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", _GLOROT["kernel_init"], kernel_shape, jnp.float32)
        bias = self.param("bias", _GLOROT["bias_init"], (self.features,), jnp.float32)
        bias = bias.reshape((1,) * (x.ndim - 1) + (-1,))  # explicit: no implicit rank promotion
        if jax.default_backend() != "cpu":
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return y + bias
        return conv_as_matmul(x, kernel, (1, 1), "SAME", (1, 1)) + bias


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """`nn.avg_pool(x, (2, 2), strides=(2, 2))` (VALID: an odd last row or column is dropped),
    as a reshape and a mean, whose gradient is cheaper than reduce_window's on CPUs."""
    height, width, channels = (x.shape[-3] // 2) * 2, (x.shape[-2] // 2) * 2, x.shape[-1]
    x = x[..., :height, :width, :]
    x = x.reshape(*x.shape[:-3], height // 2, 2, width // 2, 2, channels)
    return x.mean(axis=(-4, -2))


class CNN(nn.Module):
    """The Flax examples' CNN; returns logits. `dropout_rate` may be traced (a sweep's)."""

    num_classes: int = 10
    dropout_rate: float | jax.Array = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if min(x.shape[-3:-1]) < 4:  # each pooling halves the image: nothing would be left
            raise ValueError(
                f"the CNN pools twice by 2x2, so it needs images of at least 4x4 pixels; these "
                f"are {x.shape[-3]}x{x.shape[-2]} (use --model mlp)"
            )
        for features in (32, 64):
            x = avg_pool_2x2(nn.relu(Conv(features)(x)))
        x = x.reshape(*x.shape[:-3], -1)  # flatten H, W, C in NHWC order
        x = nn.relu(nn.Dense(256, **_GLOROT)(x))
        if train:
            x = dropout(x, self.dropout_rate, self.make_rng("dropout"))
        return nn.Dense(self.num_classes, **_GLOROT)(x)


def cnn(num_classes: int = 10) -> LinenModel:
    """The Flax examples' CNN as a model."""
    return LinenModel(CNN(num_classes=num_classes), input_layout="image", label="cnn")
