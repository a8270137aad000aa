"""`python -m experiments.sweep`: many seeds and hyper-parameters trained together, with statistics.

The baseline's flags with lists (`--learning-rate 1e-3,3e-3 --dropout 0.1,0.25 --hidden
128,128:256,256`) and `--seeds 0-15` give a grid of members; members of equal hidden sizes train as
one vmapped, compiled program (`mnist_jax.sweep.run_sweep`), cut into program calls by a memory
estimate or `--members-per-program`. Members validate on held-out training images (`--validation
holdout`, the default here) and meet the test set once, at the end. Writes a sweep directory:
sweep.json, members.json, summary.json, predictions.npz, report.md with its figures (test accuracy
with intervals over seeds and over seeds and test images, comparisons with `--reference`,
ensembles, calibration, the search's expected best) and per-program orbax checkpoints; `--resume
SWEEP_DIR` continues a killed sweep bitwise. All the maths is in `mnist_jax`.

Several processes (MNIST_JAX_COORDINATOR, MNIST_JAX_NUM_PROCESSES, MNIST_JAX_PROCESS_ID): every
process runs the sweep and saves its own members' checkpoint shards into the sweep directory (a
folder all processes share); process 0 prints and writes the other files. `--resume` works on the
same device count, with any number of processes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from experiments import cli
from experiments.console import Console
from experiments.sweep_output import ProgressPrinter, print_plan, print_table
from mnist_jax.distributed import ENV_COORDINATOR, is_main_process
from mnist_jax.errors import ConfigError
from mnist_jax.rundir import default_run_name
from mnist_jax.runtime import enable_compilation_cache
from mnist_jax.sweep import expand_members, initialize_distributed_from_env, parse_int_ranges
from mnist_jax.sweep.directory import (
    SWEEP_FILE,
    SWEEPS_ROOT,
    complete_sweep,
    reopen_sweep,
    start_sweep,
)
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS
from mnist_jax.sweep.results import config_labels
from mnist_jax.sweep.select import parse_assignments, select_configuration

PROG = "python -m experiments.sweep"
# Flags that define the sweep: --resume takes them from sweep.json instead.
SWEEP_DEFINING_FLAGS = ("--seeds", "--members-per-program", "--members-per-step", "--reference")


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_config_flags(parser, multi=True, skip=("seed",), defaults={"validation": "holdout"})
    parser.add_argument(
        "--seeds",
        default="0",
        help="seeds, as integers and inclusive ranges, e.g. 0-15 or 0-3,7 (default 0)",
    )
    parser.add_argument(
        "--members-per-program",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="members trained by one program call (default: as many as the memory "
        "estimate allows); smaller cuts a sweep into more calls",
    )
    parser.add_argument(
        "--members-per-step",
        type=_members_per_step,
        default="auto",
        metavar="K|all|auto",
        help="members each device trains at once inside a program: all (one vmap; "
        "best on GPU/TPU), K, or auto (default: all on accelerators, 1 on CPU, "
        "where one at a time is faster and bitwise equal to single runs)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="the configuration the others are compared with, e.g. 'lr=0.001 dropout=0.25' "
        "(repeatable; names: lr, dropout, hidden, model, optimizer, wd, momentum, schedule, "
        "warmup, final, or the flags' names); default: the first value of each swept list",
    )
    parser.add_argument(
        "--processes",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="start N local processes of one multi-process sweep, to try it on one machine "
        "(each with its own host devices; output prefixed by process); on a cluster, start one "
        "process per host instead",
    )
    cli.add_output_flags(parser, SWEEPS_ROOT)
    cli.add_logging_flags(parser)
    cli.add_checkpoint_flags(
        parser,
        resume_metavar="SWEEP_DIR",
        resume_help="continue the sweep in SWEEP_DIR from each program's newest intact "
        "checkpoint, with the configuration in SWEEP_DIR/sweep.json",
    )
    return parser


def _members_per_step(text: str) -> int | str | None:
    if text in ("auto", "all"):
        return None if text == "all" else text
    try:
        return cli.positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a positive integer, all or auto"
        ) from None


def default_sweep_name(dataset: str, seeds: Sequence[int]) -> str:
    """A run's default name, its seed part `seeds0-15` (or `seeds3-x5` when not contiguous)."""
    contiguous = list(seeds) == list(range(seeds[0], seeds[-1] + 1))
    return default_run_name(
        dataset, f"s{seeds[0]}-{seeds[-1]}" if contiguous else f"s{seeds[0]}-x{len(seeds)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.processes is not None:
        if os.environ.get(ENV_COORDINATOR):
            raise ConfigError(f"--processes starts its own processes: unset {ENV_COORDINATOR}")
        from experiments.launch import launch_local, without_flag

        return launch_local("experiments.sweep", without_flag(argv, "--processes"), args.processes)
    initialize_distributed_from_env()
    main_process = is_main_process()
    console = Console(quiet=args.quiet or not main_process)
    enable_compilation_cache()

    if args.resume:
        cli.refuse_flags_with_resume(argv, record=SWEEP_FILE)
        given = cli.given_flags(argv, SWEEP_DEFINING_FLAGS)
        if given:
            raise ConfigError(
                f"--resume continues a sweep with the configuration in its "
                f"{SWEEP_FILE}; drop {', '.join(given)}"
            )
        sweep = reopen_sweep(args.resume, data_dir=args.data_dir)
    else:
        seeds = parse_int_ranges(args.seeds)
        members = expand_members(seeds, **{name: getattr(args, name) for name in CONFIG_KEY_FIELDS})
        reference = members[0]  # the first value of each list
        if args.reference:
            key = select_configuration(
                [m.config_key for m in members],
                parse_assignments(args.reference),
                f"--reference {' '.join(args.reference)}",
                label=lambda key: config_labels([key])[key],
            )
            reference = next(m for m in members if m.config_key == key)
        config = cli.config_from_args(args, **members[0].to_dict())
        # Every configuration's values with the sweep's, before any folder (the seeds, checked by
        # each member, do not change what is valid)
        grid = [m.config(config) for m in {m.config_key: m for m in members}.values()]
        cli.refuse_flags_that_do_nothing(argv, grid)
        sweep = start_sweep(
            config,
            members,
            reference=reference,
            out=args.out,
            name=default_sweep_name(config.dataset, seeds),
            members_per_program=args.members_per_program,
            members_per_step=args.members_per_step,
        )

    config = sweep.config

    def on_plan(programs, members_per_program, members_per_step, devices):
        print_plan(
            console, config, sweep.members, programs, members_per_program, members_per_step, devices
        )
        console.info(f"dataset: {sweep.dataset!r}")
        if main_process:
            console.info(f"sweep directory: {sweep.sweep_dir}")

    def on_restore(program, info):
        done = "complete, restored" if info["epoch"] >= config.epochs else "resuming"
        console.info(
            f"program {program.index}: {done} after epoch {info['epoch']} of {config.epochs}"
        )

    outcome = complete_sweep(
        sweep,
        command=" ".join([PROG, *argv]),
        callbacks=[ProgressPrinter(console, config.epochs)],
        save_every=args.save_every,
        keep=args.keep,
        tensorboard=not args.no_tensorboard,
        on_plan=on_plan,
        on_restore=on_restore,
    )
    if outcome is None:  # another process than 0: process 0 prints and writes
        return 0
    print_table(console, outcome.rows)
    timing = outcome.timing
    line = f"wall {timing['wall_seconds']:.2f} s, compilation {timing['compile_seconds']:.2f} s"
    if timing["examples_per_second"]:
        line += (
            f", {timing['examples_per_second']:,.0f} examples/s over all members = "
            f"{timing['examples_per_second_per_member']:,.0f} per member"
        )
    console.info(line)
    wrote = ", ".join(map(str, outcome.written)) or "nothing, every output was there"
    console.info(f"wrote: {wrote}")
    console.result(f"sweep directory: {sweep.sweep_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
