"""Two runs, or two configurations of a sweep, compared from their folders: what
`python -m experiments.compare` is given.

`compare_run_dirs` and `compare_sweep_dir` read the folders' predictions.npz and refuse
predictions that their own records (config.json, metrics.json, members.json) contradict, then
compare them with `mnist_jax.comparison`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mnist_jax.comparison import compare_configurations, compare_runs
from mnist_jax.errors import ConfigError
from mnist_jax.predictions import PREDICTIONS_FILE, Predictions
from mnist_jax.rundir import read_json
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.outputs import PER_MEMBER_FIELDS
from mnist_jax.sweep.results import config_labels
from mnist_jax.sweep.select import parse_assignments, select_configuration


def _load_predictions(folder: Path) -> Predictions:
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


def load_run_predictions(folder: str | os.PathLike) -> tuple[Predictions, str | None, str]:
    """A run directory's (or an evaluation folder's) predictions.npz, checked to hold one model's
    predictions that agree with the run's own records (its classes, its count of right answers).

    Returns the predictions, the fingerprint of the dataset they were tested on (None where no
    record says it) and the run's model, learning rate and seed as its record (or an evaluation's
    metrics) says them, e.g. "mlp lr=0.001 seed 0" ("" where none does). Raises `ConfigError`.
    """
    folder = Path(folder)
    predictions = _load_predictions(folder)
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
    return predictions, (fingerprint if isinstance(fingerprint, str) else None), details


def compare_run_dirs(
    folder_a: str | os.PathLike, folder_b: str | os.PathLike
) -> tuple[dict, str, str]:
    """`compare_runs` on two run directories (or evaluation folders), refused where they were
    tested on different datasets. Returns the result and the names `render_comparison` shows the
    runs by: each folder's name (its path, where the two names are equal) and its details."""
    folder_a, folder_b = Path(folder_a), Path(folder_b)
    a, dataset_a, details_a = load_run_predictions(folder_a)
    b, dataset_b, details_b = load_run_predictions(folder_b)
    if None not in (dataset_a, dataset_b) and dataset_a != dataset_b:
        raise ConfigError(
            f"{folder_a} and {folder_b} were tested on different datasets (fingerprints "
            f"{dataset_a[:12]}... and {dataset_b[:12]}...): their predictions do not compare"
        )
    try:
        result = compare_runs(a, b)
    except ValueError as error:
        raise ConfigError(f"{folder_a} and {folder_b}: {error}") from None
    names = [str(f) if folder_a.name == folder_b.name else f.name for f in (folder_a, folder_b)]
    name_a, name_b = (f"{n} ({d})" if d else n for n, d in zip(names, (details_a, details_b)))
    return result, name_a, name_b


def load_sweep_predictions(sweep_dir: str | os.PathLike) -> tuple[list[Member], Predictions]:
    """A finished sweep directory's members (members.json) and their predictions, checked to be of
    one sweep: one row per member, in its order, the diverged members and the counts of right
    answers agreeing. Raises `ConfigError`."""
    folder = Path(sweep_dir)
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
    predictions = _load_predictions(folder)
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
    return members, predictions


def compare_sweep_dir(
    sweep_dir: str | os.PathLike, a: Sequence[str], b: Sequence[str]
) -> tuple[dict, str, str]:
    """`compare_configurations` on two configurations of a finished sweep, each given as
    assignments such as ["lr=0.001"] (the command's --a and --b, which its errors name). Returns
    the result and the two configurations' labels among the sweep's."""
    folder = Path(sweep_dir)
    members, predictions = load_sweep_predictions(folder)
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
