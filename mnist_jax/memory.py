"""The one memory estimate of runs and sweeps: what a member needs while it trains
(`member_bytes`; a run is a sweep of one member) and what a device offers (`memory_bytes`,
`default_budget_bytes`). `device_data` refuses a run that cannot fit, `sweep.program` sizes a
sweep's programs with the same numbers.
"""

from __future__ import annotations

import os

import jax

from mnist_jax.models import footprint
from mnist_jax.train import TrainSpec

DEVICE_MEMORY_FRACTION = 0.5  # of `bytes_limit` where the device reports it
# Of the host's memory, shared by its CPU devices; the other quarter the sweep's results may take
# (`device_data.check_results_fit` allows them half) and the rest is the process's own.
HOST_MEMORY_FRACTION = 0.25


def member_bytes(
    spec: TrainSpec,
    num_examples: int,
    *,
    num_classes: int = 10,
    eval_examples: int = 10_000,
    eval_chunk_size: int = 2_000,
) -> int:
    """An upper estimate of the device memory one member needs while it trains (float32 throughout).

    - state: parameters, the best epoch's, Adam's two moments, plus the gradient and update alive
      during a step (x6);
    - a step's activations (every value the model's forward pass creates, `models.footprint`),
      doubled for the backward pass;
    - the epoch's shuffle: random bits, argsort temporaries, order and weights
      (num_examples x 16 B);
    - evaluation: one chunk's activations and the (padded) logits of the evaluated split, twice.
    The data itself is shared by all members and not counted.
    """
    return sum(member_bytes_parts(spec, num_examples, num_classes, eval_examples, eval_chunk_size))


def member_bytes_parts(
    spec: TrainSpec, num_examples: int, num_classes: int, eval_examples: int, eval_chunk_size: int
) -> tuple[int, int]:
    """`member_bytes` as (what stays for the whole program: the state and the evaluated logits,
    what exists only while the member trains or evaluates: a step's activations, the shuffle, an
    evaluation chunk's activations)."""
    size = footprint(spec.model, spec.example_shape)
    logits = 2 * (eval_examples + eval_chunk_size) * num_classes
    resident = 6 * size.parameters + logits
    working = (
        2 * spec.batch_size * size.activations_per_example
        + 4 * num_examples
        + 2 * eval_chunk_size * size.activations_per_example
    )
    return 4 * resident, 4 * working


def bytes_limit(device: jax.Device | None = None) -> int | None:
    """The device's `bytes_limit` where it reports one (GPU, TPU); None for a CPU device, whose
    `memory_stats()` is None."""
    device = device or jax.local_devices()[0]
    try:
        return (device.memory_stats() or {}).get("bytes_limit") or None
    except Exception:
        return None


def host_bytes() -> int:
    """The machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_bytes(device: jax.Device | None = None) -> int:
    """The memory a device offers: its `bytes_limit`, else the machine's (CPU devices share it)."""
    return int(bytes_limit(device) or host_bytes())


def default_budget_bytes(device: jax.Device | None = None) -> int:
    """Per-device bytes a sweep may use: half the device's `bytes_limit` when it reports one
    (GPU/TPU), else a quarter of the host's physical memory, shared by its local CPU devices (24
    GiB and one device: 6 GiB)."""
    device = device or jax.local_devices()[0]
    limit = bytes_limit(device)
    if limit:
        return int(limit * DEVICE_MEMORY_FRACTION)
    return int(host_bytes() * HOST_MEMORY_FRACTION) // len(
        jax.local_devices(backend=device.platform)
    )
