"""`python -m experiments.bench`: where the notebook's training spends its time, in figures.

Times data loading, compilation (init, epoch program, validation), steady epochs (examples/s),
evaluation and a whole 10-epoch training, and compares the steady epoch with a floor measured on the
same machine. For the MLP: its exact matmul FLOPs at the best matmul throughput measured with the
model's own matrix shapes, by XLA (one compiled scan, nothing but the matmuls) or by numpy's BLAS,
both reported. For other models (`--model cnn`):
the model's forward and backward pass alone (no shuffle, gather, dropout or optimizer) over an
epoch's batches in one compiled scan, with XLA's count of its FLOPs. The persistent compilation
cache is off unless --compile-cache is given, so compile times are cold. `--command` also times
what a user waits for: the whole `python -m experiments.baseline` (start-up, data, compilation,
training, evaluation, figures, checkpoints), with an empty compilation cache and again with it
filled.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from mnist_jax.config import MODELS, PRECISIONS, TrainConfig, applies
from mnist_jax.data import load_dataset
from mnist_jax.errors import ConfigError
from mnist_jax.evaluate import evaluate_loss_accuracy
from mnist_jax.fileio import write_json_atomic
from mnist_jax.fit import check_precision, fit, spec_for, to_device
from mnist_jax.models import parameter_count
from mnist_jax.runtime import CACHE_ENV, enable_compilation_cache
from mnist_jax.train import (
    TrainSpec,
    create_train_state,
    init_train_state_jit,
    run_hyperparams,
    train_epoch_jit,
)


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


def time_command(argv: Sequence[str], cache_dir: str | os.PathLike) -> float:
    """Wall seconds of `python -m experiments.baseline ARGV` in a subprocess whose persistent
    compilation cache is `cache_dir`."""
    env = dict(os.environ, **{CACHE_ENV: str(cache_dir)})
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "experiments.baseline", *argv, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"the timed baseline command failed: {lines[-1] if lines else ''}")
    return seconds


def timed(fn):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return result, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    cli.add_data_flags(parser)
    parser.add_argument(
        "--model",
        default="mlp",
        help=f"the model timed: {', '.join(MODELS)} or PACKAGE.MODULE:FACTORY (default mlp)",
    )
    parser.add_argument(
        "--precision",
        default="f32",
        choices=PRECISIONS,
        help="f32, or bf16 (the model in bfloat16; the floor stays float32's) (default f32)",
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs timed (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--compile-cache",
        action="store_true",
        help="use the persistent compilation cache (warm-start figures)",
    )
    parser.add_argument(
        "--command",
        action="store_true",
        help="also time the whole `python -m experiments.baseline` with these data, model, epochs "
        "and batch size, with an empty compilation cache and then with it filled",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.json and Path(args.json).exists():
        raise ConfigError(f"--json {args.json} exists; choose another file (nothing is replaced)")
    if args.compile_cache:
        enable_compilation_cache()
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation=args.validation,
        validation_size=args.validation_size,
        model=args.model,
        precision=args.precision,
    )
    check_precision(config.precision)
    figures: dict[str, float] = {}

    dataset, figures["load_seconds"] = timed(lambda: load_dataset(config.dataset, config.data_dir))
    spec = spec_for(config, dataset)
    data, figures["to_device_seconds"] = timed(lambda: to_device(dataset, config, spec))
    n = int(data.train_labels.shape[0])
    steps = math.ceil(n / config.batch_size)

    # Compilation, each program on its own.
    figures["compile_init_seconds"] = timed(
        lambda: init_train_state_jit.lower(spec, *run_hyperparams(config, 60_000)).compile()
    )[1]
    state = create_train_state(config, spec)
    epoch_program, figures["compile_epoch_seconds"] = timed(
        lambda: train_epoch_jit.lower(spec, state, data.train_images, data.train_labels).compile()
    )
    evaluate = lambda: evaluate_loss_accuracy.lower(
        spec.model,
        state.params,
        data.test_images,
        data.test_labels,
        chunk_size=config.eval_batch_size,
    ).compile()
    validate, figures["compile_eval_seconds"] = timed(evaluate)

    # Steady epochs (the first call warms threads and allocations, so it is left out).
    epoch_times = []
    for _ in range(max(args.epochs, 2)):
        (state, _), seconds = timed(
            functools.partial(epoch_program, state, data.train_images, data.train_labels)
        )
        epoch_times.append(seconds)
    steady = statistics.median(epoch_times[1:])
    figures["steady_epoch_seconds"] = steady
    figures["examples_per_second"] = n / steady
    figures["eval_seconds"] = min(
        timed(lambda: validate(state.params, data.test_images, data.test_labels))[1]
        for _ in range(5)
    )

    figures["parameters"] = parameter_count(spec.model, spec.example_shape)
    if config.model == "mlp":
        layer_sizes = [data.train_images.shape[1], *config.hidden_sizes, dataset.num_classes]
        flops = matmul_flops_per_example(layer_sizes)
        floors = {
            "xla": measure_matmul_floor(layer_sizes, config.batch_size, steps),
            "numpy": measure_numpy_matmul_floor(layer_sizes, config.batch_size, steps),
        }
    else:  # numpy has no convolutions to compare with: XLA's own count and rate
        flops, floors = measure_model_floor(spec, state.params, config.batch_size, steps)
        floors = {"xla": floors}
    figures["flops_per_example"] = flops
    for source, seconds in floors.items():
        figures[f"floor_{source}_epoch_seconds"] = seconds
        figures[f"floor_{source}_gflops_per_second"] = (
            flops * steps * config.batch_size / seconds / 1e9
        )
    # The floor is the best matmul rate obtained on the model's own shapes, by either library.
    floor = min(floors.values())
    figures["floor_epoch_seconds"] = floor
    figures["steady_over_floor"] = steady / floor

    # The whole training as a user runs it: a fresh state, fit() with its compilation, all epochs.
    jax.clear_caches()
    start = time.perf_counter()
    result = fit(config, data, spec=spec)
    figures["fit_seconds_including_compile"] = time.perf_counter() - start
    figures["fit_compile_seconds"] = result.compile_seconds
    figures["final_val_accuracy"] = result.history[-1]["val_accuracy"]

    if args.command:
        # The bench's own settings, as the baseline command's flags.
        timed_fields = ("dataset", "data_dir", "validation", "validation_size", "model")
        timed_fields += ("precision", "epochs", "batch_size")
        values = dataclasses.asdict(config)
        command = [  # a flag where it does nothing (the held-out size without holdout) is refused
            f"{cli.flag_names(field)[0]}={getattr(config, field.name)}"
            for field in dataclasses.fields(config)
            if field.name in timed_fields
            and getattr(config, field.name) is not None
            and applies(field.name, values)
        ]
        with tempfile.TemporaryDirectory(prefix="mnist-jax-bench-") as folder:
            for kind in ("cold", "cached"):  # the first run fills the empty cache
                out = ["--out", str(Path(folder) / f"run-{kind}")]
                figures[f"command_{kind}_seconds"] = time_command(
                    [*command, *out], Path(folder) / "cache"
                )

    devices = jax.devices()
    print(
        f"device: {len(devices)} x {devices[0].device_kind} ({devices[0].platform}), "
        f"jax {jax.__version__}, compilation cache {'on' if args.compile_cache else 'off'}"
    )
    print(f"cpu: {cpu_description()}")  # the host's: it runs the Python, and the training on CPU
    width = max(map(len, figures))
    for name, value in figures.items():
        print(
            f"  {name:<{width}}  {value:,.4f}"
            if isinstance(value, float)
            else f"  {name:<{width}}  {value:,}"
        )
    if args.json:
        if Path(args.json).exists():  # made while the benchmark ran
            raise ConfigError(f"--json {args.json} appeared meanwhile; it was left as it is")
        device = {"device": devices[0].device_kind, "cpu": cpu_description()}
        write_json_atomic(args.json, {**figures, **device})
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.bench")
