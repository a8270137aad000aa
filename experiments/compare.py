"""`python -m experiments.compare`: two runs, or two configurations of one sweep, compared on their
saved test predictions (predictions.npz).

    python -m experiments.compare RUN_A RUN_B
    python -m experiments.compare SWEEP --a lr=0.001 --b lr=0.003

Prints the comparison and writes it as Markdown (`--out`, default comparison.md in the current
folder; an existing file is never replaced). A run directory, or the folder `experiments.evaluate`
writes, holds predictions.npz; a sweep directory holds one row per member of members.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.console import Console
from mnist_jax.comparison import compare_configurations, compare_runs, render_comparison
from mnist_jax.errors import ConfigError
from mnist_jax.fileio import write_text_atomic
from mnist_jax.predictions import PREDICTIONS_FILE, Predictions
from mnist_jax.rundir import read_json
from mnist_jax.sweep import Member
from mnist_jax.sweep.outputs import PER_MEMBER_FIELDS
from mnist_jax.sweep.results import config_labels
from mnist_jax.sweep.select import parse_assignments, select_configuration

PROG = "python -m experiments.compare"
DEFAULT_OUT = "comparison.md"


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="two run directories (or evaluation folders), or one sweep directory with --a/--b",
    )
    parser.add_argument(
        "--a",
        action="append",
        metavar="NAME=VALUE",
        help="with a sweep directory: configuration A, e.g. 'lr=0.001' (repeatable)",
    )
    parser.add_argument(
        "--b", action="append", metavar="NAME=VALUE", help="with a sweep directory: configuration B"
    )
    parser.add_argument(
        "--out",
        type=cli.folder_path,
        default=DEFAULT_OUT,
        help=f"the Markdown file to write (default {DEFAULT_OUT}); an existing file is refused",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the conclusion")
    return parser


def _predictions(folder: Path) -> Predictions:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    path = folder / PREDICTIONS_FILE
    if not path.exists():
        raise ConfigError(
            f"{folder} holds no {PREDICTIONS_FILE} (a run made before predictions were kept gets "
            f"them from python -m experiments.evaluate {folder}; then compare "
            f"{folder}/evaluation/latest)"
        )
    return Predictions.load(path)


def _record(folder: Path, name: str) -> dict:
    """A run's (or evaluation's) JSON file as a dict; {} where it is missing or not an object."""
    path = folder / name
    record = read_json(path) if path.is_file() else None
    return record if isinstance(record, dict) else {}


def _check_run(folder: Path, predictions: Predictions) -> tuple[str | None, str]:
    """predictions.npz holds one model's predictions and agrees with the run's own records (its
    classes, its count of right answers). Returns the fingerprint of the dataset it was tested on,
    where a record says it, and the run's model, learning rate and seed, as its record (or an
    evaluation's metrics) says."""
    if predictions.num_models != 1:
        raise ConfigError(
            f"{folder} holds the predictions of {predictions.num_models} models (a "
            "sweep): compare two of its configurations with --a and --b"
        )
    own, metrics = _record(folder, "config.json"), _record(folder, "metrics.json")
    config = own
    if not config and folder.parent.name == "evaluation":  # RUN/evaluation/CHECKPOINT
        config = _record(folder.parent.parent, "config.json")
    num_classes = config.get("num_classes")
    if not isinstance(num_classes, int) and isinstance(metrics.get("confusion_matrix"), list):
        num_classes = len(metrics["confusion_matrix"])
    if isinstance(num_classes, int):
        top = int(max(predictions.predicted.max(), predictions.labels.max()))
        if top >= num_classes:
            raise ConfigError(
                f"{folder}: {PREDICTIONS_FILE} names class {top}, but the run has {num_classes} "
                "classes: the file is not this run's"
            )
    correct, recorded = int(predictions.correct.sum()), metrics.get("test_correct")
    if isinstance(recorded, int) and recorded != correct:
        raise ConfigError(
            f"{folder}: {PREDICTIONS_FILE} holds {correct} right answers where metrics.json says "
            f"{recorded}: they are not of one run"
        )
    dataset = config.get("dataset")
    fingerprint = dataset.get("fingerprint") if isinstance(dataset, dict) else None
    details = ""
    for record in (own.get("config", own), metrics.get("config", metrics)):
        if not details and isinstance(record, dict):
            model = record.get("model")
            model = model.get("name") if isinstance(model, dict) else model
            lr, seed = record.get("learning_rate"), record.get("seed")
            parts = [
                model if isinstance(model, str) else None,
                f"lr={lr:g}" if isinstance(lr, float) else None,
                f"seed {seed}" if isinstance(seed, int) else None,
            ]
            details = " ".join(p for p in parts if p)
    return (fingerprint if isinstance(fingerprint, str) else None), details


def _compare_sweep(folder: Path, a: Sequence[str], b: Sequence[str]):
    for name in ("sweep.json", "members.json"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} is not a finished sweep directory (no {name})")
    entries = read_json(folder / "members.json")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{folder / 'members.json'} lists no members")
    try:
        members = [
            Member(**{k: v for k, v in entry.items() if k in PER_MEMBER_FIELDS})
            for entry in entries
        ]
    except (TypeError, AttributeError, ConfigError) as error:
        raise ConfigError(f"{folder / 'members.json'} is damaged ({error})") from None
    predictions = _predictions(folder)
    _check_rows(folder, entries, predictions)
    keys = [m.config_key for m in members]
    labels = config_labels(keys)
    chosen = [
        select_configuration(
            keys, parse_assignments(given), f"--{flag} {' '.join(given)}", labels.get
        )
        for flag, given in (("a", a), ("b", b))
    ]
    if chosen[0] == chosen[1]:
        raise ConfigError("--a and --b name the same configuration")
    sides = []  # each configuration's predictions and seeds
    for key in chosen:
        rows = [k for k, its_key in enumerate(keys) if its_key == key]
        sides += [predictions.rows(rows), [members[k].seed for k in rows]]
    try:
        result = compare_configurations(*sides)
    except ValueError as error:
        raise ConfigError(f"{folder}: {error}") from None
    return result, labels[chosen[0]], labels[chosen[1]]


def _check_rows(folder: Path, entries: list, predictions: Predictions) -> None:
    """predictions.npz holds one row per member of members.json, in its order: the counts of
    right answers and the diverged members agree."""
    if predictions.num_models != len(entries):
        raise ConfigError(
            f"{folder}: {PREDICTIONS_FILE} has {predictions.num_models} rows for "
            f"{len(entries)} members in members.json"
        )
    correct = predictions.correct.sum(axis=1)
    for k, entry in enumerate(entries):
        live = entry.get("diverged_epoch") is None
        expected = entry.get("test_correct")
        if live != bool(predictions.valid[k]) or (
            expected is not None and live and int(expected) != int(correct[k])
        ):
            raise ConfigError(
                f"{folder}: {PREDICTIONS_FILE} and members.json disagree about member {k}; "
                "they are not of one sweep"
            )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    console = Console(quiet=args.quiet)
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"--out {out} exists; choose another file (nothing is replaced)")
    folders = [Path(d) for d in args.dirs]
    if len(folders) == 2 and not (args.a or args.b):
        a, b = (_predictions(folder) for folder in folders)
        fingerprints, details = zip(*(_check_run(f, p) for f, p in zip(folders, (a, b))))
        if None not in fingerprints and fingerprints[0] != fingerprints[1]:
            raise ConfigError(
                f"{folders[0]} and {folders[1]} were tested on different datasets (fingerprints "
                f"{fingerprints[0][:12]}... and {fingerprints[1][:12]}...): their predictions "
                "do not compare"
            )
        try:
            result = compare_runs(a, b)
        except ValueError as error:
            raise ConfigError(f"{folders[0]} and {folders[1]}: {error}") from None
        # Each run by its folder's name (its path, when the names are equal) and its details.
        names = (
            [f.name for f in folders] if folders[0].name != folders[1].name else map(str, folders)
        )
        name_a, name_b = (f"{n} ({d})" if d else n for n, d in zip(names, details))
    elif len(folders) == 1 and args.a and args.b:
        result, name_a, name_b = _compare_sweep(folders[0], args.a, args.b)
    else:
        raise ConfigError(
            "give two run directories, or one sweep directory with --a and --b naming two of "
            "its configurations"
        )
    text = render_comparison(result, name_a, name_b, [str(f) for f in folders])
    for line in text.splitlines():
        if line.startswith("**"):
            console.result(line.strip("*"))
        elif line and not line.startswith("# "):
            console.info(line)
    console.info(f"wrote: {write_text_atomic(out, text)}")
    return 0


if __name__ == "__main__":
    cli.run_main(main, PROG)
