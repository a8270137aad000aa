"""`python -m experiments.sweep_bench`: is a sweep faster than training its members one by one?

For each member count N (default 8 and 16; seeds 0..N-1, the notebook's configuration, 10 epochs)
it times, on this machine, wall clock:
  - sweep:     one `python -m experiments.sweep --seeds 0-(N-1) --quiet` process;
  - processes: N `python -m experiments.baseline --seed k --quiet` processes, one after another;
  - fit:       N `fit` calls, each with its test evaluation, one after another in this process
               (data loaded once, not timed);
  - run_sweep: one `run_sweep` of the N members in this process (same data, not timed).
Commands run as users run them: temporary --out folders, the default persistent compilation cache
(~/.cache/mnist_jax/jax unless MNIST_JAX_COMPILATION_CACHE says otherwise). Prints examples/s over
all members and per member, and the ratio sweep / processes.

The figures measured here are in the README (Benchmarks).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.bench import time_module
from mnist_jax.data import load_dataset
from mnist_jax.fit import fit, spec_for, to_device
from mnist_jax.report import evaluate_test_set
from mnist_jax.runtime import enable_compilation_cache
from mnist_jax.sweep import expand_members, run_sweep

PROG = "python -m experiments.sweep_bench"


def time_in_process(n: int, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds of N sequential `fit` calls, each followed by its test evaluation, and of one
    `run_sweep` of the same N members (which evaluates every member on the test set too), in this
    process, on data loaded once (not timed): the like-for-like comparison of the training
    itself."""
    enable_compilation_cache()
    config = cli.config_from_args(args)
    data = to_device(load_dataset(config.dataset, config.data_dir), config)
    start = time.perf_counter()
    model = spec_for(config, data).model
    for k in range(n):
        result = fit(config.replace(seed=k), data)
        evaluate_test_set(
            model,
            result.state.params,
            data.test_images,
            data.test_labels,
            num_classes=data.num_classes,
        )
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    run_sweep(config, expand_members(range(n)), data, keep_states=False)
    return fit_seconds, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--members",
        default=[8, 16],
        type=cli.positive_int_list,
        help="member counts to time (default 8,16)",
    )
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--batch-size", type=cli.positive_int, default=512)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--skip-fit", action="store_true", help="do not time the in-process fit calls and run_sweep"
    )
    args = parser.parse_args(argv)
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--quiet"]
    common += ["--dataset", args.dataset, *(["--data-dir", args.data_dir] if args.data_dir else [])]
    train_examples = 60_000 if args.dataset == "mnist" else None
    print(f"{'members':>7} {'mode':<10} {'wall s':>8} {'ex/s all':>10} {'ex/s/member':>11} note")
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
        root = Path(folder)
        for n in args.members:
            out = root / f"sweep-{n}"
            sweep_argv = ["--seeds", f"0-{n - 1}", "--out", str(out), *common]
            sweep_s = time_module(PROG, "experiments.sweep", sweep_argv)
            timing = json.loads((out / "summary.json").read_text())["timing"]
            process_s = sum(
                time_module(
                    PROG,
                    "experiments.baseline",
                    ["--seed", str(k), "--out", str(root / f"run-{n}-{k}"), *common],
                )
                for k in range(n)
            )
            fit_s, run_sweep_s = (None, None) if args.skip_fit else time_in_process(n, args)
            for mode, seconds, note in (
                (
                    "sweep",
                    sweep_s,
                    f"compile {timing['compile_seconds']:.1f} s, in-sweep "
                    f"{timing['examples_per_second_per_member']:,.0f} ex/s/member",
                ),
                ("processes", process_s, ""),
                ("fit", fit_s, "in-process, data loaded once"),
                ("run_sweep", run_sweep_s, "in-process, data loaded once"),
            ):
                if seconds is None:
                    continue
                rate = (
                    n * args.epochs * train_examples / seconds if train_examples else float("nan")
                )
                print(
                    f"{n:>7} {mode:<10} {seconds:>8.1f} {rate:>10,.0f} {rate / n:>11,.0f} {note}",
                    flush=True,
                )
            print(
                f"{n:>7} ratio sweep / processes = {sweep_s / process_s:.2f}"
                + (f", in-process run_sweep / fit = {run_sweep_s / fit_s:.2f}" if fit_s else ""),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
