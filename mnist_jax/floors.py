"""The floors the benchmarks compare training with, measured on the machine they run on.

An epoch's matmuls alone (the MLP's exact FLOPs, by XLA in one compiled scan or by numpy's BLAS),
a model's forward and backward pass alone (with XLA's FLOP count), and the CPU's description that
must accompany any figure. Used by `experiments.bench` and `experiments.conv_bench`.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.train import TrainSpec


def matmul_flops_per_example(layer_sizes: Sequence[int]) -> int:
    """Exact matmul FLOPs of one training example: forward, weight gradients, and input gradients of
    every layer but the first (nothing needs the gradient with respect to the images)."""
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    return 2 * forward + sum(2 * a * b for a, b in pairs[1:])


def measure_matmul_floor(
    layer_sizes: Sequence[int], batch_size: int, steps: int, repeats: int = 5
) -> float:
    """Seconds for one epoch's matmuls alone (the model's shapes, in one compiled scan)."""
    keys = jax.random.split(jax.random.key(0), len(layer_sizes))
    weights = [
        jax.random.normal(k, (a, b)) * 0.05
        for k, a, b in zip(keys[1:], layer_sizes[:-1], layer_sizes[1:])
    ]
    inputs = jax.random.uniform(keys[0], (steps, batch_size, layer_sizes[0]))

    def step(weights, x):
        activations = [x]
        for w in weights:
            activations.append(activations[-1] @ w)
        grad_out, new = activations[-1], []
        for i in reversed(range(len(weights))):
            new.append(weights[i] - 1e-9 * (activations[i].T @ grad_out))  # weight gradient
            if i > 0:
                grad_out = grad_out @ weights[i].T  # input gradient
        return new[::-1], None

    program = jax.jit(lambda w, x: jax.lax.scan(step, w, x)[0])
    return best_time(program, weights, inputs, repeats=repeats)


def measure_numpy_matmul_floor(
    layer_sizes: Sequence[int], batch_size: int, steps: int, repeats: int = 3
) -> float:
    """Seconds for one epoch's matmuls alone (the same products as `measure_matmul_floor`) with
    numpy's BLAS (OpenBLAS here), which may reach a higher rate on these small shapes than XLA."""
    rng = np.random.default_rng(0)
    weights = [
        (rng.standard_normal((a, b)) * 0.05).astype(np.float32)
        for a, b in zip(layer_sizes[:-1], layer_sizes[1:])
    ]
    batches = rng.random((min(steps, 8), batch_size, layer_sizes[0]), dtype=np.float32)

    def epoch() -> None:
        for step in range(steps):
            activations = [batches[step % len(batches)]]
            for w in weights:
                activations.append(activations[-1] @ w)
            grad_out = activations[-1]
            for i in reversed(range(len(weights))):
                activations[i].T @ grad_out  # weight gradient
                if i > 0:
                    grad_out = grad_out @ weights[i].T  # input gradient

    epoch()  # warm-up: threads, pages
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return min(times)


def best_time(program, *args, repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls, after one warm-up call."""
    jax.block_until_ready(program(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(program(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def measure_model_floor(
    spec: TrainSpec, params, batch_size: int, steps: int, repeats: int = 5
) -> tuple[float, float]:
    """(FLOPs per example by XLA's cost analysis, seconds for one epoch) of the model's forward and
    backward pass alone: the gradient of the mean logit over a batch, `steps` batches in one
    compiled scan."""
    inputs = jax.random.uniform(jax.random.key(0), (steps, batch_size, *spec.example_shape))

    def grad_step(params, x):
        grads = jax.grad(lambda p: jnp.mean(spec.model.apply(p, x)))(params)
        return jax.tree.map(lambda p, g: p - 1e-9 * g, params, grads), None

    one = jax.jit(grad_step).lower(params, inputs[0]).compile()
    flops = float((one.cost_analysis() or {}).get("flops", 0.0)) / batch_size
    program = jax.jit(lambda p, x: jax.lax.scan(grad_step, p, x)[0])
    return flops, best_time(program, params, inputs, repeats=repeats)


def cpu_description() -> str:
    """The CPU's model and its widest vector instructions (which decide the matmul rates), e.g.
    'AMD EPYC, 2 cores, avx2': figures from two machines compare only alongside this line."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    vector = [
        f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2", "sve", "asimd") if f in flags
    ]
    return ", ".join([model, f"{os.cpu_count()} cores", *vector[:2]])
