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
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax

from experiments import cli
from experiments.console import Console
from experiments.sweep_output import ProgressPrinter, print_plan, print_table
from mnist_jax.checkpoint import CHECKPOINTS_DIRNAME
from mnist_jax.data import load_dataset
from mnist_jax.device_data import check_fits, check_results_fit, to_device
from mnist_jax.distributed import (
    ENV_COORDINATOR,
    barrier,
    check_shared_folder,
    path_of_process_0,
)
from mnist_jax.errors import ConfigError, MnistJaxError
from mnist_jax.logs import SweepLog
from mnist_jax.models import model_record
from mnist_jax.rundir import (
    check_same_data,
    create_run_dir,
    device_summary,
    holds_run,
    is_empty_folder,
    lock_run_dir,
    read_kept,
    read_run_record,
    refuse_finished_without_checkpoints,
    run_record,
    write_json_atomic,
)
from mnist_jax.runtime import enable_compilation_cache
from mnist_jax.sweep import (
    Member,
    default_members_per_step,
    expand_members,
    initialize_distributed_from_env,
    is_main_process,
    member_mesh,
    parse_int_ranges,
    plan_sweep,
    resolve_members_per_program,
    run_sweep,
)
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS
from mnist_jax.sweep.outputs import (
    MEMBERS_FILE,
    PER_MEMBER_FIELDS,
    SUMMARY_FILE,
    analyse,
    data_sources,
    member_entries,
    throughput,
    write_sweep_files,
)
from mnist_jax.sweep.plan import plan_record, recorded_plan
from mnist_jax.sweep.results import config_labels
from mnist_jax.sweep.select import parse_assignments, select_configuration

PROG = "python -m experiments.sweep"
SWEEPS_ROOT = "sweeps"
SWEEP_FILE = "sweep.json"
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
    seeds_text = (
        f"{seeds[0]}-{seeds[-1]}"
        if list(seeds) == list(range(seeds[0], seeds[-1] + 1))
        else f"{seeds[0]}-x{len(seeds)}"
    )
    return (
        f"{dataset.replace(':', '-').replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        f"-seeds{seeds_text}"
    )


def _given(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    return sorted(
        {flag for arg in argv for flag in flags if arg == flag or arg.startswith(flag + "=")}
    )


def without_processes(argv: Sequence[str]) -> list[str]:
    from experiments.launch import without_flag

    return without_flag(argv, "--processes")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.processes is not None:
        if os.environ.get(ENV_COORDINATOR):
            raise ConfigError(f"--processes starts its own processes: unset {ENV_COORDINATOR}")
        from experiments.launch import launch_local

        return launch_local("experiments.sweep", without_processes(argv), args.processes)
    initialize_distributed_from_env()
    main_process = is_main_process()
    console = Console(quiet=args.quiet or not main_process)
    enable_compilation_cache()
    several = jax.process_count() > 1

    if args.resume:
        cli.refuse_flags_with_resume(argv, record=SWEEP_FILE)
        given = _given(argv, SWEEP_DEFINING_FLAGS)
        if given:
            raise ConfigError(
                f"--resume continues a sweep with the configuration in its "
                f"{SWEEP_FILE}; drop {', '.join(given)}"
            )
        sweep_dir = Path(args.resume)
        record, config = read_run_record(sweep_dir, SWEEP_FILE)
        try:
            members = [Member(**m) for m in record["members"]]
            members_per_program = int(record["members_per_program"])
            members_per_step = record.get("members_per_step")
            reference = Member(**{**record["members"][0], **record.get("reference", {})})
            if not isinstance(record["programs"], list) or not (
                members_per_step is None or cli.positive_int(str(members_per_step))
            ):
                raise ValueError("programs or members_per_step")
        except (KeyError, TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise ConfigError(f"{sweep_dir / SWEEP_FILE} is damaged ({error!r})") from None
        if main_process:
            lock_run_dir(sweep_dir)
        checkpoints = (sweep_dir / CHECKPOINTS_DIRNAME).is_dir()
        refuse_finished_without_checkpoints(sweep_dir, SUMMARY_FILE, checkpoints, "sweep")
        dataset = load_dataset(config.dataset, args.data_dir or config.data_dir)
        check_same_data(dataset, record, sweep_dir)
    else:
        seeds = parse_int_ranges(args.seeds)
        members = expand_members(seeds, **{name: getattr(args, name) for name in CONFIG_KEY_FIELDS})
        first = members[0]
        reference = first  # the first value of each list
        if args.reference:
            key = select_configuration(
                [m.config_key for m in members],
                parse_assignments(args.reference),
                f"--reference {' '.join(args.reference)}",
                label=lambda key: config_labels([key])[key],
            )
            reference = next(m for m in members if m.config_key == key)
        config = cli.config_from_args(args, **first.to_dict())
        members_per_program = args.members_per_program
        members_per_step = args.members_per_step
        if args.out and Path(args.out).exists() and not is_empty_folder(args.out):
            what = "another run" if holds_run(Path(args.out)) else "other files"
            raise ConfigError(
                f"--out {args.out} already holds {what}; choose a new folder (or continue "
                f"that sweep with --resume {args.out})"
            )
        # Every configuration's values with the sweep's, before any folder (the seeds, checked by
        # each member, do not change what is valid)
        grid = [m.config(config) for m in {m.config_key: m for m in members}.values()]
        cli.refuse_flags_that_do_nothing(argv, grid)
        dataset = load_dataset(config.dataset, config.data_dir)
        for member in {m.group_key: m for m in members}.values():  # one per program's shapes
            check_fits(member.config(config), dataset)
        check_results_fit(len(members), dataset)
        sweep_dir = None
        if several:  # every process has checked --out before process 0 creates it
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("mnist_jax sweep: --out checked")
        failure = None
        if main_process:
            try:
                sweep_dir = create_run_dir(
                    args.out,
                    root=SWEEPS_ROOT,
                    name=default_sweep_name(config.dataset, seeds),
                    resume_hint=True,
                )
            except MnistJaxError as error:
                failure = error
        if several:  # every process writes its checkpoint shards into the same folder
            sweep_dir = path_of_process_0(sweep_dir)
        if failure is not None:
            raise failure
        if sweep_dir is None:
            raise ConfigError("process 0 could not create the sweep directory (see its output)")

    if several:
        check_shared_folder(sweep_dir)
    wall_start = time.perf_counter()
    data = to_device(dataset, config)
    mesh = member_mesh()
    if members_per_step == "auto":
        members_per_step = default_members_per_step(mesh)
    if members_per_program is None:
        members_per_program = resolve_members_per_program(
            config, members, data, mesh.size, members_per_step=members_per_step
        )
    programs = plan_sweep(
        config, members, data, mesh.size, members_per_program, members_per_step=members_per_step
    )
    if args.resume and plan_record(programs) != recorded_plan(record["programs"]):
        # Sweeps from before members trained one per step went unpadded kept their padding: its
        # rows are dummies, each member computes the same.
        programs = plan_sweep(config, members, data, mesh.size, members_per_program)
    if args.resume and plan_record(programs) != recorded_plan(record["programs"]):
        if record["devices"]["count"] == mesh.size:  # same layout: the record is not this plan
            raise ConfigError(
                f"the plan in {sweep_dir / SWEEP_FILE} is not the one its members make here (was "
                "the file edited?); the sweep cannot be continued from it"
            )
        raise ConfigError(
            f"the sweep in {sweep_dir} was planned for {record['devices']['count']} "
            f"device(s) as {len(record['programs'])} program(s); here there are "
            f"{mesh.size} device(s): resume it on the machine layout it started on"
        )
    devices = device_summary()

    def specs(program):
        return program.spec(config, data.num_classes, data.image_shape)

    if main_process and not args.resume:
        sweep_record = run_record(config, dataset, command=" ".join([PROG, *argv]))
        sweep_record.update(
            models={  # one program per model: a record is traced from shapes, in milliseconds
                model: model_record(specs(p).model, specs(p).example_shape)
                for model, p in {p.model: p for p in reversed(programs)}.items()
            },
            per_member_fields=list(PER_MEMBER_FIELDS),
            seeds=sorted({m.seed for m in members}),
            members=[m.to_dict() for m in members],
            members_per_program=members_per_program,
            members_per_step=members_per_step,
            programs=plan_record(programs),
            reference={name: reference.to_dict()[name] for name in CONFIG_KEY_FIELDS},
            checkpoints={"save_every": args.save_every, "keep": args.keep},
        )
        write_json_atomic(sweep_dir / SWEEP_FILE, sweep_record)

    print_plan(console, config, members, programs, members_per_program, members_per_step, devices)
    console.info(f"dataset: {dataset!r}")
    if main_process:
        console.info(f"sweep directory: {sweep_dir}")

    progress = ProgressPrinter(console, config.epochs)
    start, complete = None, set()  # complete: programs restored after their last epoch
    if args.resume:
        from mnist_jax.sweep.checkpoint import sweep_start

        def on_restore(program, info):
            if info["epoch"] >= config.epochs:
                complete.add(program.index)
            done = "complete, restored" if info["epoch"] >= config.epochs else "resuming"
            console.info(
                f"program {program.index}: {done} after epoch {info['epoch']} of {config.epochs}"
            )

        start = sweep_start(
            sweep_dir,
            config,
            specs=specs,
            mesh=mesh,
            on_restore=on_restore,
        )
    with contextlib.ExitStack() as stack:
        callbacks = [progress]
        if main_process:  # the log line of an epoch is on disk before its checkpoint is
            # Closed by `finish`, after the final metrics are known.
            sweep_log = SweepLog(
                sweep_dir,
                members,
                train_examples=int(data.train_images.shape[0]),
                tensorboard=not args.no_tensorboard,
            )
            callbacks.append(sweep_log)
        # Every process saves its own members' shards (process 0 the info and folders).
        from mnist_jax.sweep.checkpoint import SweepCheckpointer

        callbacks.append(
            stack.enter_context(
                SweepCheckpointer(
                    sweep_dir,
                    config,
                    num_classes=dataset.num_classes,
                    specs=specs,
                    save_every=args.save_every,
                    keep=args.keep,
                )
            )
        )
        result = run_sweep(
            config,
            members,
            data,
            programs=programs,
            callbacks=callbacks,
            mesh=mesh,
            keep_states=False,
            start=start,
            members_per_step=members_per_step,
        )
    wall_seconds = time.perf_counter() - wall_start
    if not main_process:
        barrier("sweep outputs written")  # JAX's shutdown must not end process 0 while it writes
        return 0

    analysis = analyse(result, config, reference.config_key, data_sources(dataset, data, config))
    rows = analysis["configurations"]
    timing = {
        "wall_seconds": wall_seconds,
        "compile_seconds": result.compile_seconds,
        **throughput(
            programs,
            progress.epoch_seconds,
            int(data.train_images.shape[0]),
            progress.epoch_members,
        ),
        "epochs_trained_now": {str(k): len(v) for k, v in progress.epoch_seconds.items()},
        "resumed": bool(args.resume),
    }
    # A sweep that was complete already writes only the outputs it lacks: its members.json and
    # summary.json (with the timings of the process that trained) stay as they are.
    finished_before = bool(args.resume) and len(complete) == len(programs)
    if finished_before:  # what is kept must be intact: a damaged file is set aside by the user
        for name, kind in ((MEMBERS_FILE, list), (SUMMARY_FILE, dict)):
            if (sweep_dir / name).is_file():
                read_kept(sweep_dir / name, lambda content, kind=kind: isinstance(content, kind))
    written = [] if args.resume else [sweep_dir / SWEEP_FILE]
    written += write_sweep_files(
        sweep_dir,
        result,
        {
            **analysis,
            "timing": timing,
            "num_members": len(members),
            "num_programs": len(programs),
            "epochs": config.epochs,
            "devices": devices,
        },
        member_entries(result, config.target_accuracy),
        only_missing=finished_before,
    )
    if finished_before:
        sweep_log.close()
    else:
        sweep_log.finish(result.members)
        written.append(sweep_dir / "checkpoints")

    print_table(console, rows)
    rate = timing["examples_per_second"]
    console.info(
        f"wall {wall_seconds:.2f} s, compilation {result.compile_seconds:.2f} s"
        + (
            f", {rate:,.0f} examples/s over all members = "
            f"{timing['examples_per_second_per_member']:,.0f} per member"
            if rate
            else ""
        )
    )
    console.info("wrote: " + (", ".join(map(str, written)) or "nothing, every output was there"))
    console.result(f"sweep directory: {sweep_dir}")
    barrier("sweep outputs written")
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
