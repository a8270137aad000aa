"""`python -m experiments.evaluate RUN_DIR`: re-evaluate a run from its directory alone.

Restores a checkpoint (latest, best, or an epoch) in a fresh process, recomputes the test metrics,
prints test loss and accuracy to 4 decimals, and re-draws the run's plots and report (its epochs
from metrics.jsonl) into `RUN_DIR/evaluation/<checkpoint>/`; the run's own files stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.console import Console
from mnist_jax.distributed import refuse_multi_process_settings
from mnist_jax.errors import ConfigError
from mnist_jax.run import evaluate_run
from mnist_jax.runtime import enable_compilation_cache


def parse_checkpoint(text: str) -> str | int:
    if text in ("latest", "best"):
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"invalid --checkpoint {text!r}: expected latest, best or an epoch number"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory written by experiments.baseline"
    )
    parser.add_argument(
        "--checkpoint",
        default="latest",
        help="latest (default), best (by validation accuracy) or an epoch number",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the dataset's IDX files, if not where the run found them",
    )
    parser.add_argument(
        "--out",
        type=cli.folder_path,
        default=None,
        help="a new folder for the metrics and plots (default RUN_DIR/evaluation/CHECKPOINT, "
        "or CHECKPOINT-2, -3... if that exists); a folder holding files is refused",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the test loss and accuracy"
    )
    args = parser.parse_args(argv)
    which = parse_checkpoint(args.checkpoint)
    console = Console(quiet=args.quiet)
    refuse_multi_process_settings("python -m experiments.evaluate")
    enable_compilation_cache()

    run_dir = Path(args.run_dir)
    evaluation = evaluate_run(run_dir, which, data_dir=args.data_dir, out=args.out)
    metrics = evaluation.metrics
    console.info(f"checkpoint: {which} (epoch {evaluation.epoch}) of {run_dir}")
    console.result(f"test loss {metrics['test_loss']:.4f}")
    console.result(f"test accuracy {metrics['test_accuracy']:.4f}")
    console.info("wrote: " + ", ".join(str(path) for path in evaluation.written))
    return 0


if __name__ == "__main__":
    cli.run_main(main, "python -m experiments.evaluate")
