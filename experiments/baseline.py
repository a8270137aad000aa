"""`python -m experiments.baseline`: the Keras MNIST notebook end to end, through the library.

Loads the data, trains the notebook's MLP (10 epochs, batch 512, Adam 1e-3, dropout 0.25), evaluates
on the test set and writes a run directory: config.json, metrics.json, the five plots, report.md and
orbax checkpoints. `--resume RUN_DIR` continues a killed run from its newest intact checkpoint and
ends bitwise where the uninterrupted run would have. All the maths is in `mnist_jax`; this file
parses flags, prints and writes files.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.console import Console
from mnist_jax.checkpoint import RunCheckpointer, list_checkpoints, restore_checkpoint
from mnist_jax.data import load_dataset
from mnist_jax.epochs import exact_accuracy, time_to_target
from mnist_jax.fit import check_fits, fit, spec_for, to_device
from mnist_jax.logs import ProfileSteadyEpoch, RunLog, tensorboard_incomplete
from mnist_jax.models import model_record
from mnist_jax.report import PLOT_FILES, evaluate_test_set, time_to_target_text, write_run_outputs
from mnist_jax.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    check_same_data,
    create_run_dir,
    default_run_name,
    device_summary,
    lock_run_dir,
    read_kept,
    read_run_record,
    refuse_finished_without_checkpoints,
    run_record,
    write_json_atomic,
)
from mnist_jax.runtime import enable_compilation_cache
from mnist_jax.train import create_train_state

RUNS_ROOT = "runs"
PROFILE_DIR = "profile"


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="python -m experiments.baseline", description=__doc__.split("\n\n")[0])
    cli.add_config_flags(parser)
    cli.add_output_flags(parser, RUNS_ROOT)
    cli.add_logging_flags(parser)
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"record a jax.profiler trace of one steady epoch into RUN/{PROFILE_DIR}/ (open it "
        "in TensorBoard's profile plugin or Perfetto)",
    )
    cli.add_checkpoint_flags(
        parser,
        resume_metavar="RUN_DIR",
        resume_help="continue the run in RUN_DIR from its newest intact checkpoint, with the "
        "configuration in RUN_DIR/config.json (training flags are not accepted)",
    )
    return parser


def steady_examples_per_second(history: Sequence[dict], train_examples: int) -> float:
    """Throughput of the epochs after the first (the first one still warms caches and threads)."""
    steady = history[1:] or history
    return train_examples * len(steady) / sum(record["seconds"] for record in steady)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console = Console(quiet=args.quiet)
    enable_compilation_cache()

    if args.resume:
        cli.refuse_flags_with_resume(argv)
        run_dir = Path(args.resume)
        record, config = read_run_record(run_dir)
        lock_run_dir(run_dir)
        dataset = load_dataset(config.dataset, args.data_dir or config.data_dir)
        check_same_data(dataset, record, run_dir)
    else:
        config = cli.config_from_args(args)
        cli.refuse_flags_that_do_nothing(argv, [config])
        dataset = load_dataset(config.dataset, config.data_dir)
        spec = spec_for(config, dataset)
        check_fits(config, dataset, spec)
        name = default_run_name(config.dataset, config.seed)
        run_dir = create_run_dir(args.out, root=RUNS_ROOT, name=name, resume_hint=True)
        command = " ".join(["python -m experiments.baseline", *argv])
        model = model_record(spec.model, spec.example_shape)
        record = run_record(config, dataset, model=model, command=command)
        write_json_atomic(run_dir / CONFIG_FILE, record)

    devices = device_summary()
    console.info(f"configuration: {console.describe(config)}")
    console.info(f"dataset: {dataset!r}")
    console.info(f"devices: {devices['count']} x {devices['kind']} ({devices['platform']})")
    console.info(f"run directory: {run_dir}")

    spec = spec_for(config, dataset)
    data = to_device(dataset, config, spec)
    state, history = None, []
    if args.resume:
        refuse_finished_without_checkpoints(run_dir, METRICS_FILE, bool(list_checkpoints(run_dir)))
    if args.resume and list_checkpoints(run_dir):
        template = create_train_state(config, spec)
        state, info = restore_checkpoint(
            run_dir, template, "latest", model=spec.model, config=config
        )
        history = info["history"]
        if info["epoch"] >= config.epochs:
            console.info(f"the run is complete ({info['epoch']} epochs): writing what it lacks")
        else:
            console.info(f"resuming after epoch {info['epoch']} of {config.epochs}")

    start = time.perf_counter()
    first_epoch = len(history) + 1
    checkpointer = RunCheckpointer(
        run_dir,
        config,
        spec=spec,
        num_classes=dataset.num_classes,
        save_every=args.save_every,
        keep_latest=args.keep,
    )
    run_log = (
        RunLog(
            run_dir,
            learning_rate=config.learning_rate,
            train_examples=int(data.train_labels.shape[0]),
            first_epoch=first_epoch,
            tensorboard=not args.no_tensorboard,
        )
        if first_epoch <= config.epochs
        or (not args.no_tensorboard and tensorboard_incomplete(run_dir))
        else None
    )  # a finished run has nothing to log, unless its TensorBoard events were cut short
    profiler = ProfileSteadyEpoch(run_dir / PROFILE_DIR) if args.profile else None
    with (
        checkpointer,
        console.epoch_progress(config.epochs, first_epoch) as progress,
        contextlib.closing(profiler) if profiler else contextlib.nullcontext(),
    ):
        # The log line of an epoch is on disk before its checkpoint is: a resume never lacks one.
        callbacks = [c for c in (progress, run_log, checkpointer, profiler) if c is not None]
        result = fit(config, data, spec=spec, state=state, history=history, callbacks=callbacks)
    train_seconds = time.perf_counter() - start

    metrics, probabilities = evaluate_test_set(
        spec.model,
        result.state.params,
        data.test_images,
        data.test_labels,
        num_classes=dataset.num_classes,
        chunk_size=config.eval_batch_size,
    )
    best, _ = evaluate_test_set(
        spec.model,
        result.state.best_params,
        data.test_images,
        data.test_labels,
        num_classes=dataset.num_classes,
        chunk_size=config.eval_batch_size,
    )
    trained_now = result.history[len(history) :]
    finished_before = args.resume and not trained_now
    if finished_before and (run_dir / METRICS_FILE).is_file():
        metrics = read_kept(  # keeps the timings of the run that trained
            run_dir / METRICS_FILE,
            lambda m: isinstance(m, dict) and {"test_loss", "test_accuracy"} <= set(m),
        )
    else:
        examples = int(data.train_labels.shape[0])
        metrics.update(
            history=result.history,
            train_seconds=None if finished_before else train_seconds,
            compile_seconds=None if finished_before else result.compile_seconds,
            examples_per_second=steady_examples_per_second(trained_now, examples)
            if trained_now
            else None,
            seed=config.seed,
            epochs=len(result.history),
            dataset=dataset.name,
            model=model_record(spec.model, spec.example_shape),
            best_epoch=int(result.state.best_epoch),
            best_val_accuracy=exact_accuracy(
                float(result.state.best_accuracy), int(data.val_labels.shape[0])
            ),
            best_test_accuracy=best["test_accuracy"],
            best_test_loss=best["test_loss"],
            stopped_early=bool(result.state.stopped),
            time_to_target=None
            if config.target_accuracy is None
            else {
                "target": config.target_accuracy,
                **time_to_target(result.history, config.target_accuracy),
            },
            validation=config.validation,
            resumed_from_epoch=len(history) if args.resume else None,
        )
    written = write_run_outputs(
        run_dir, dataset, result.history, metrics, probabilities, only_missing=finished_before
    )

    if run_log is not None:
        figures = [run_dir / name for name in PLOT_FILES.values() if (run_dir / name).is_file()]
        run_log.finish(record, figures, len(result.history))
    if profiler is not None:
        console.info(profiler.summary())
    accuracy = f"test loss {metrics['test_loss']:.4f}, test accuracy {metrics['test_accuracy']:.4f}"
    console.result(accuracy)
    target = time_to_target_text(metrics.get("time_to_target"))
    if target:
        console.result(target)
    if trained_now:
        console.info(
            f"training {train_seconds:.2f} s (compilation {result.compile_seconds:.2f} s), "
            f"steady epochs {metrics['examples_per_second']:,.0f} examples/s"
        )
    if not args.resume:
        written = [run_dir / CONFIG_FILE, *written]
    if trained_now:
        written.append(run_dir / "checkpoints")
    console.info("wrote: " + (", ".join(map(str, written)) or "nothing, every output was there"))
    console.result(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.baseline")
