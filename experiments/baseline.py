"""`python -m experiments.baseline`: the Keras MNIST notebook end to end, through the library.

Loads the data, trains the notebook's MLP (10 epochs, batch 512, Adam 1e-3, dropout 0.25), evaluates
on the test set and writes a run directory: config.json, metrics.json, the figures, report.md and
orbax checkpoints. `--resume RUN_DIR` continues a killed run from its newest intact checkpoint and
ends bitwise where the uninterrupted run would have. The run is `mnist_jax.run`'s `train_run` and
`resume_run`; this file parses flags and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments import cli
from experiments.console import Console, device_text
from mnist_jax.distributed import refuse_multi_process_settings
from mnist_jax.report import time_to_target_text
from mnist_jax.run import PROFILE_DIR, RUNS_ROOT, complete_run, reopen_run, start_run
from mnist_jax.rundir import device_summary
from mnist_jax.runtime import enable_compilation_cache


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console = Console(quiet=args.quiet)
    refuse_multi_process_settings("python -m experiments.baseline")
    enable_compilation_cache()

    if args.resume:
        cli.refuse_flags_with_resume(argv)
        run = reopen_run(args.resume, data_dir=args.data_dir)
    else:
        config = cli.config_from_args(args)
        cli.refuse_flags_that_do_nothing(argv, [config])
        command = " ".join(["python -m experiments.baseline", *argv])
        run = start_run(config, out=args.out, command=command)

    console.info(f"configuration: {console.describe(run.config)}")
    console.info(f"dataset: {run.dataset!r}")
    console.info(f"devices: {device_text(device_summary())}")
    console.info(f"run directory: {run.run_dir}")
    if run.finished:
        console.info(f"the run is complete ({len(run.history)} epochs): writing what it lacks")
    elif run.history:
        console.info(f"resuming after epoch {len(run.history)} of {run.config.epochs}")

    with console.epoch_progress(run.config.epochs, len(run.history) + 1) as progress:
        result = complete_run(
            run,
            callbacks=[progress],
            save_every=args.save_every,
            keep_latest=args.keep,
            tensorboard=not args.no_tensorboard,
            profile=args.profile,
        )

    metrics = result.metrics
    if result.profile_summary:
        console.info(result.profile_summary)
    console.result(
        f"test loss {metrics['test_loss']:.4f}, test accuracy {metrics['test_accuracy']:.4f}"
    )
    target = time_to_target_text(metrics.get("time_to_target"))
    if target:
        console.result(target)
    if result.trained_epochs:
        console.info(
            f"training {result.train_seconds:.2f} s (compilation {result.compile_seconds:.2f} s), "
            f"steady epochs {metrics['examples_per_second']:,.0f} examples/s"
        )
    wrote = ", ".join(map(str, result.written)) or "nothing, every output was there"
    console.info(f"wrote: {wrote}")
    console.result(f"run directory: {run.run_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.baseline")
