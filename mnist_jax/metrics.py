"""Classification metrics as pure functions of logits (or probabilities) and integer labels.

They are jnp code, so they run under `jit` and `vmap` (e.g. over the members of a sweep);
`classification_arrays` computes them all in one compiled program and `classification_report`
converts its result to plain Python for JSON.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy (the same maths as Keras's categorical cross-entropy)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def confusion_matrix(predictions: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """(num_classes, num_classes) int32 counts; row = true label, column = predicted label."""
    flat = labels * num_classes + predictions
    return jnp.bincount(flat, length=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: jax.Array) -> jax.Array:
    """Recall of each class: correct / examples of that class (NaN for a class with no examples)."""
    totals = jnp.sum(confusion, axis=1)
    return jnp.diagonal(confusion) / jnp.where(totals == 0, jnp.nan, totals)


def top_errors(probabilities: jax.Array, labels: jax.Array, k: int = 5) -> dict[str, jax.Array]:
    """The k most confidently wrong examples, most confident first.

    Returns arrays of length k: `index`, `true`, `predicted`, `confidence` (the probability given to
    the wrong prediction) and `valid` (False for padding when fewer than k examples are wrong).
    Ties are broken by the lower index (`lax.top_k` is stable), so the result is deterministic.
    """
    predicted = jnp.argmax(probabilities, axis=-1)
    confidence = jnp.max(probabilities, axis=-1)
    wrong = predicted != labels
    scores, index = jax.lax.top_k(jnp.where(wrong, confidence, -1.0), k)
    return {
        "index": index,
        "true": labels[index],
        "predicted": predicted[index],
        "confidence": confidence[index],
        "valid": scores >= 0.0,
    }


@functools.partial(jax.jit, static_argnames=("num_classes", "k"))
def classification_arrays(
    logits: jax.Array, labels: jax.Array, num_classes: int, k: int = 5
) -> dict[str, Any]:
    """Every metric of a final evaluation as arrays, in one compiled program: `loss`,
    `accuracy`, `confusion_matrix`, `per_class_accuracy`, `top_errors` (k of them) and the
    softmax `probabilities`.

    One program rather than a dozen eager operations: each eager operation is compiled on its own,
    and on a CPU their compilation took longer than the evaluation itself (a few seconds per run,
    too brief each for the persistent compilation cache to keep)."""
    probabilities = jax.nn.softmax(logits, axis=-1)
    confusion = confusion_matrix(jnp.argmax(logits, axis=-1), labels, num_classes)
    return {
        "loss": cross_entropy(logits, labels),
        "accuracy": accuracy(logits, labels),
        "confusion_matrix": confusion,
        "per_class_accuracy": per_class_accuracy(confusion),
        "top_errors": top_errors(probabilities, labels, min(k, labels.shape[0])),
        "probabilities": probabilities,
    }


def classification_report(
    logits: jax.Array, labels: jax.Array, num_classes: int, k: int = 5
) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy, confusion matrix and top-k errors as JSON-ready Python
    values."""
    return report_from_arrays(jax.device_get(classification_arrays(logits, labels, num_classes, k)))


def report_from_arrays(arrays: dict[str, Any]) -> dict[str, Any]:
    """`classification_report`'s JSON-ready values from `classification_arrays`' result (on the
    host)."""
    errors = arrays["top_errors"]
    # Accuracies as exact ratios of the confusion matrix's counts (Python floats), not the
    # program's float32 means: statistics over runs then add and subtract k/n itself, and every
    # path (a sweep's summary, `experiments.compare` from the predictions) prints the same digits.
    confusion = np.asarray(arrays["confusion_matrix"]).astype(np.int64)
    correct, totals = np.diagonal(confusion).tolist(), confusion.sum(axis=1).tolist()
    return {
        "test_loss": float(arrays["loss"]),
        "test_accuracy": sum(correct) / sum(totals) if sum(totals) else float("nan"),
        "per_class_accuracy": [c / n if n else None for c, n in zip(correct, totals)],
        "confusion_matrix": confusion.tolist(),
        "top_errors": [
            {"index": int(i), "true": int(t), "predicted": int(p), "confidence": float(c)}
            for i, t, p, c, ok in zip(
                errors["index"],
                errors["true"],
                errors["predicted"],
                errors["confidence"],
                errors["valid"],
            )
            if ok
        ],
    }
