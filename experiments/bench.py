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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax

from experiments import cli
from experiments.console import device_text
from mnist_jax.config import FIELDS, MODELS, PRECISIONS, applies
from mnist_jax.data import load_dataset
from mnist_jax.errors import ConfigError
from mnist_jax.evaluate import evaluate_loss_accuracy
from mnist_jax.fileio import write_json_atomic
from mnist_jax.fit import check_precision, fit, spec_for, to_device
from mnist_jax.floors import (
    cpu_description,
    matmul_flops_per_example,
    measure_matmul_floor,
    measure_model_floor,
    measure_numpy_matmul_floor,
)
from mnist_jax.models import parameter_count
from mnist_jax.rundir import device_summary
from mnist_jax.runtime import CACHE_ENV, enable_compilation_cache
from mnist_jax.train import (
    create_train_state,
    init_train_state_jit,
    run_hyperparams,
    train_epoch_jit,
)


def timed(fn):
    """`fn()`'s result, once ready, and the wall seconds it took."""
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return result, time.perf_counter() - start


MODULE_TIMEOUT_SECONDS = 3600  # a bound on a hang, far above any timed command here


def time_module(prog: str, module: str, argv: Sequence[str], env: dict | None = None) -> float:
    """Wall seconds of `python -m MODULE ARGV` in a subprocess, as a user runs it. One that fails
    ends `prog` with the subprocess's last line and its exit status (2: bad input)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=MODULE_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        print(f"{prog}: {module} did not end in {MODULE_TIMEOUT_SECONDS} s", file=sys.stderr)
        raise SystemExit(1) from None
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {done.returncode}"
        print(f"{prog}: {module} failed: {last}", file=sys.stderr)
        raise SystemExit(done.returncode)
    return seconds


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
    config = cli.config_from_args(args)
    check_precision(config.precision)
    figures: dict[str, float] = {}

    dataset, figures["load_seconds"] = timed(lambda: load_dataset(config.dataset, config.data_dir))
    spec = spec_for(config, dataset)
    data, figures["to_device_seconds"] = timed(lambda: to_device(dataset, config, spec))
    images, labels = data.train_images, data.train_labels
    n = int(labels.shape[0])
    steps = math.ceil(n / config.batch_size)

    # Compilation, each program on its own.
    figures["compile_init_seconds"] = timed(
        lambda: init_train_state_jit.lower(spec, *run_hyperparams(config, 60_000)).compile()
    )[1]
    state = create_train_state(config, spec)
    epoch_program, figures["compile_epoch_seconds"] = timed(
        lambda: train_epoch_jit.lower(spec, state, images, labels).compile()
    )
    validate, figures["compile_eval_seconds"] = timed(
        lambda: evaluate_loss_accuracy.lower(
            spec.model,
            state.params,
            data.test_images,
            data.test_labels,
            chunk_size=config.eval_batch_size,
        ).compile()
    )

    # Steady epochs (the first call warms threads and allocations, so it is left out).
    epoch_times = []
    for _ in range(max(args.epochs, 2)):
        (state, _), seconds = timed(functools.partial(epoch_program, state, images, labels))
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
        layer_sizes = [images.shape[1], *config.hidden_sizes, dataset.num_classes]
        flops = matmul_flops_per_example(layer_sizes)
        floors = {
            "xla": measure_matmul_floor(layer_sizes, config.batch_size, steps),
            "numpy": measure_numpy_matmul_floor(layer_sizes, config.batch_size, steps),
        }
    else:  # numpy has no convolutions to compare with: XLA's own count and rate
        flops, floor = measure_model_floor(spec, state.params, config.batch_size, steps)
        floors = {"xla": floor}
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
    result, figures["fit_seconds_including_compile"] = timed(lambda: fit(config, data, spec=spec))
    figures["fit_compile_seconds"] = result.compile_seconds
    figures["final_val_accuracy"] = result.history[-1]["val_accuracy"]

    if args.command:
        values = dataclasses.asdict(config)
        command = [  # the bench's own settings; a flag where it does nothing is refused
            f"{cli.flag_names(field)[0]}={values[name]}"
            for name, field in FIELDS.items()
            if hasattr(args, name) and values[name] is not None and applies(name, values)
        ]
        with tempfile.TemporaryDirectory(prefix="mnist-jax-bench-") as folder:
            env = dict(os.environ, **{CACHE_ENV: str(Path(folder) / "cache")})
            for kind in ("cold", "cached"):  # the first run fills the empty cache
                out = ["--out", str(Path(folder) / f"run-{kind}"), "--quiet"]
                figures[f"command_{kind}_seconds"] = time_module(
                    parser.prog, "experiments.baseline", [*command, *out], env
                )

    print(
        f"device: {device_text(device_summary())}, jax {jax.__version__}, "
        f"compilation cache {'on' if args.compile_cache else 'off'}"
    )
    print(f"cpu: {cpu_description()}")  # the host's: it runs the Python, and the training on CPU
    width = max(map(len, figures))
    for name, value in figures.items():
        form = ",.4f" if isinstance(value, float) else ","
        print(f"  {name:<{width}}  {value:{form}}")
    if args.json:
        if Path(args.json).exists():  # made while the benchmark ran
            raise ConfigError(f"--json {args.json} appeared meanwhile; it was left as it is")
        write_json_atomic(
            args.json, {**figures, "device": jax.devices()[0].device_kind, "cpu": cpu_description()}
        )
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.bench")
