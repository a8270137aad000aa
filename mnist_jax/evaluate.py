"""Batched prediction, in one compiled program each: over a dataset's examples in chunks (which
bound the activations held at once, not the result) and over a sweep's stacked members (`vmap`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from mnist_jax.models import Model, Params


@functools.partial(jax.jit, static_argnums=0, static_argnames="chunk_size")
def predict_logits(
    model: Model, params: Params, images: jax.Array, *, chunk_size: int = 2000
) -> jax.Array:
    """Logits (N, classes) of the model in eval mode (no dropout) for `images` `(N, *example)`:
    floating-point, scaled to [0, 1] and in the model's layout, as `to_device` gives them."""
    if not jnp.issubdtype(images.dtype, jnp.floating):  # raw dataset images: a Flax shape error
        raise ValueError(
            f"predict_logits takes floating-point images scaled to [0, 1] in the model's layout, "
            f"got {images.dtype} images of shape {images.shape}: scale them first "
            "(mnist_jax.data.scale_to_layout(images, example_shape))"
        )
    num_examples = images.shape[0]
    chunk_size = min(chunk_size, num_examples)
    chunks = math.ceil(num_examples / chunk_size)
    padding = [(0, chunks * chunk_size - num_examples)] + [(0, 0)] * (images.ndim - 1)
    padded = jnp.pad(images, padding).reshape(chunks, chunk_size, *images.shape[1:])
    logits = jax.lax.map(lambda chunk: model.apply(params, chunk), padded)
    return logits.reshape(chunks * chunk_size, -1)[:num_examples]


@functools.partial(jax.jit, static_argnums=0, static_argnames="chunk_size")
def predict_logits_many(
    model: Model, stacked_params: Params, images: jax.Array, *, chunk_size: int = 2000
) -> jax.Array:
    """Logits (M, N, classes) of M models whose parameters are stacked on a leading axis."""
    predict = functools.partial(predict_logits, model, chunk_size=chunk_size)
    return jax.vmap(predict, in_axes=(0, None))(stacked_params, images)


def loss_and_accuracy(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Mean cross-entropy and accuracy of logits (..., N, C) against integer labels (N,)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, axis=-1) == labels
    return {"loss": jnp.mean(losses, axis=-1), "accuracy": jnp.mean(correct, axis=-1)}


@functools.partial(jax.jit, static_argnums=0, static_argnames="chunk_size")
def evaluate_loss_accuracy(
    model: Model, params: Params, images: jax.Array, labels: jax.Array, *, chunk_size: int = 2000
) -> dict[str, jax.Array]:
    """Loss and accuracy of one model on a dataset in one compiled call (an epoch's validation)."""
    return loss_and_accuracy(predict_logits(model, params, images, chunk_size=chunk_size), labels)
