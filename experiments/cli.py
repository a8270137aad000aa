"""Flags shared by every command, so the same thing has the same name everywhere.

`experiments.baseline` takes one value per hyper-parameter; `experiments.sweep` takes lists of the
same flags (`multi=True`). Values are validated by `TrainConfig`, in one place; this module only
parses text. Every user error ends as one line on stderr and exit status 2 (`run_main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from mnist_jax.config import VALIDATION_MODES, TrainConfig
from mnist_jax.errors import ConfigError, MnistJaxError

DEFAULTS = TrainConfig()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_hidden(text: str) -> tuple[int, ...]:
    """`128,128` -> (128, 128)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid hidden sizes {text!r}: expected e.g. 128,128")
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"invalid hidden sizes {text!r}: sizes must be positive")
    return sizes


def _list_of(parse: Callable, separator: str = ","):
    def parse_list(text: str):
        return [parse(part) for part in text.split(separator) if part]

    return parse_list


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=DEFAULTS.dataset,
        help="mnist (default), fashion_mnist, kmnist, any dataset in IDX format given by "
        "--data-dir, or tfds:NAME for a prepared tensorflow-datasets dataset",
    )
    group.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four *-ubyte(.gz) files (default: $MNIST_JAX_DATA, then "
        "~/.cache/mnist_jax/DATASET, then a verified download)",
    )
    group.add_argument(
        "--validation",
        choices=VALIDATION_MODES,
        default=DEFAULTS.validation,
        help="validate each epoch on the test set (as the notebook did; default) or on a "
        "held-out part of the training set",
    )
    group.add_argument(
        "--validation-size",
        type=int,
        default=DEFAULTS.validation_size,
        help="examples held out with --validation holdout (the last ones, as Keras's "
        "validation_split; default %(default)s)",
    )


def add_training_flags(parser: argparse.ArgumentParser, *, multi: bool = False) -> None:
    """The training hyper-parameters; with `multi`, the shape-keeping ones accept comma lists."""
    group = parser.add_argument_group("training")
    float_type = _list_of(float) if multi else float
    hidden_type = _list_of(parse_hidden, ":") if multi else parse_hidden
    lists = " (a comma-separated list sweeps over it)" if multi else ""
    group.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="default %(default)s")
    group.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help="default %(default)s"
    )
    group.add_argument(
        "--learning-rate",
        type=float_type,
        default=[DEFAULTS.learning_rate] if multi else DEFAULTS.learning_rate,
        help=f"Adam's learning rate (default {DEFAULTS.learning_rate}){lists}",
    )
    group.add_argument(
        "--dropout",
        type=float_type,
        default=[DEFAULTS.dropout_rate] if multi else DEFAULTS.dropout_rate,
        help=f"dropout rate after the last hidden layer (default {DEFAULTS.dropout_rate}){lists}",
    )
    group.add_argument(
        "--hidden",
        type=hidden_type,
        default=[DEFAULTS.hidden_sizes] if multi else DEFAULTS.hidden_sizes,
        help="hidden layer widths, e.g. 128,128 (default)"
        + (" ; several shapes separated by ':', e.g. 128,128:256,256" if multi else ""),
    )
    group.add_argument(
        "--adam-epsilon",
        type=float,
        default=DEFAULTS.adam_epsilon,
        help="Adam's epsilon (default %(default)s, Keras's value)",
    )


def add_output_flags(parser: argparse.ArgumentParser, default_root: str) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out",
        default=None,
        help=f"the run directory to create (default: a new folder under {default_root}/ "
        "named by dataset, time and seed); an existing run is never overwritten",
    )
    group.add_argument(
        "--quiet", action="store_true", help="print only the final results and errors"
    )


def add_checkpoint_flags(
    parser: argparse.ArgumentParser, *, resume_metavar: str, resume_help: str
) -> None:
    """--save-every, --keep and --resume (whose text names what the command resumes)."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--resume", metavar=resume_metavar, default=None, help=resume_help)
    group.add_argument(
        "--save-every",
        type=int,
        default=1,
        help="save a checkpoint every N epochs, and always after the last (default 1)",
    )
    group.add_argument(
        "--keep",
        type=int,
        default=3,
        help="keep the latest N checkpoints (default 3); a run also keeps its best "
        "by validation accuracy",
    )


# Flags that decide what a run computes: a resumed run takes them from its config.json instead.
RUN_DEFINING_FLAGS = (
    "--dataset",
    "--validation",
    "--validation-size",
    "--epochs",
    "--batch-size",
    "--learning-rate",
    "--dropout",
    "--hidden",
    "--adam-epsilon",
    "--seed",
    "--out",
)


def refuse_flags_with_resume(argv: Sequence[str]) -> None:
    given = sorted(
        {
            flag
            for arg in argv
            for flag in RUN_DEFINING_FLAGS
            if arg == flag or arg.startswith(flag + "=")
        }
    )
    if given:
        raise ConfigError(
            f"--resume continues a run with the configuration in its config.json; "
            f"drop {', '.join(given)}"
        )


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """The validated TrainConfig of parsed flags (ConfigError names a bad value)."""
    values = dict(
        dataset=args.dataset,
        data_dir=args.data_dir,
        hidden_sizes=args.hidden,
        dropout_rate=args.dropout,
        learning_rate=args.learning_rate,
        adam_epsilon=args.adam_epsilon,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=getattr(args, "seed", DEFAULTS.seed),
        validation=args.validation,
        validation_size=args.validation_size,
    )
    values.update(overrides)
    return TrainConfig(**values)


def run_main(
    main: Callable[[Sequence[str] | None], int], prog: str, argv: Sequence[str] | None = None
) -> NoReturn:
    """Run a command's `main`; a user error becomes one line on stderr and exit status 2."""
    quiet_library_logs()
    try:
        status = main(argv)
    except MnistJaxError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    sys.exit(status)


def quiet_library_logs() -> None:
    """Orbax logs routine events (e.g. opening checkpoints read-only) as absl warnings; the commands
    report what matters themselves, so only errors from libraries reach the terminal."""
    import logging
    import warnings

    logging.getLogger("absl").setLevel(logging.ERROR)
    # Our warnings (e.g. a damaged checkpoint skipped on resume) as one line each, without source.
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)


__all__ = [
    "Parser",
    "add_data_flags",
    "add_training_flags",
    "add_output_flags",
    "config_from_args",
    "run_main",
    "parse_hidden",
    "ConfigError",
]
