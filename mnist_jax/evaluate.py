"""Batched prediction with `vmap`: over the examples of a dataset (in memory-bounded chunks) and
over the members of a sweep (stacked parameters), in one compiled program each.

The model is written for one example; `vmap` makes it a batch computation. Chunking bounds the
activations held at once (`chunk_size` examples), not the result: the output is the same for any
chunk size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from mnist_jax.model import Params, apply_model


@functools.partial(jax.jit, static_argnames=("hidden_sizes", "num_classes", "chunk_size"))
def predict_logits(
    params: Params,
    images: jax.Array,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    num_classes: int = 10,
    chunk_size: int = 2000,
) -> jax.Array:
    """Logits (N, num_classes) of the model in eval mode (no dropout) for `images` (N, 784)."""
    hidden_sizes = tuple(hidden_sizes)
    per_example = lambda x: apply_model(
        params, x, hidden_sizes=hidden_sizes, num_classes=num_classes
    )
    num_examples = images.shape[0]
    chunk_size = min(chunk_size, num_examples)
    chunks = math.ceil(num_examples / chunk_size)
    padded = jnp.pad(images, ((0, chunks * chunk_size - num_examples), (0, 0)))
    logits = jax.lax.map(jax.vmap(per_example), padded.reshape(chunks, chunk_size, -1))
    return logits.reshape(chunks * chunk_size, num_classes)[:num_examples]


@functools.partial(jax.jit, static_argnames=("hidden_sizes", "num_classes", "chunk_size"))
def predict_logits_many(
    stacked_params: Params,
    images: jax.Array,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    num_classes: int = 10,
    chunk_size: int = 2000,
) -> jax.Array:
    """Logits (M, N, num_classes) of M models whose parameters are stacked on a leading axis."""
    predict = functools.partial(
        predict_logits,
        hidden_sizes=tuple(hidden_sizes),
        num_classes=num_classes,
        chunk_size=chunk_size,
    )
    return jax.vmap(predict, in_axes=(0, None))(stacked_params, images)


def loss_and_accuracy(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Mean cross-entropy and accuracy of logits (..., N, C) against integer labels (N,)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, axis=-1) == labels
    return {"loss": jnp.mean(losses, axis=-1), "accuracy": jnp.mean(correct, axis=-1)}


@functools.partial(jax.jit, static_argnames=("hidden_sizes", "num_classes", "chunk_size"))
def evaluate_loss_accuracy(
    params: Params,
    images: jax.Array,
    labels: jax.Array,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    num_classes: int = 10,
    chunk_size: int = 2000,
) -> dict[str, jax.Array]:
    """Loss and accuracy of one model on a dataset, as one compiled call.

    Used for the per-epoch validation.
    """
    logits = predict_logits(
        params,
        images,
        hidden_sizes=tuple(hidden_sizes),
        num_classes=num_classes,
        chunk_size=chunk_size,
    )
    return loss_and_accuracy(logits, labels)
