"""Comparing two runs, or two configurations of a sweep, from their saved test predictions.

- Two runs (one model each): accuracy with Wilson intervals, the difference with Bonett and
  Price's interval over test images, and McNemar's exact test, example by example. One seed
  each, so the difference includes each seed's own luck; a sweep over seeds separates the two.
- Two configurations of a sweep: the paired difference seed by seed (Student-t), the probability
  of improvement and the paired t-test (the verdict's test), the interval of the difference over
  seeds and test images, and McNemar's test per seed with Holm's correction over the seeds.

`render_comparison` turns either into comparison.md. `compare_run_dirs` and `compare_sweep_dir`
read the folders `python -m experiments.compare` is given, and refuse predictions that their own
records (config.json, metrics.json, members.json) contradict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mnist_jax.errors import ConfigError
from mnist_jax.predictions import PREDICTIONS_FILE, Predictions
from mnist_jax.rundir import read_json
from mnist_jax.stats import (
    holm,
    mcnemar,
    paired_difference,
    paired_p_value,
    paired_proportions_interval,
    probability_of_improvement,
    seeds_and_examples_interval,
    wilson_interval,
)
from mnist_jax.stats.compare import MIN_VERDICT_SEEDS, outcome
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.outputs import PER_MEMBER_FIELDS
from mnist_jax.sweep.results import config_labels
from mnist_jax.sweep.select import parse_assignments, select_configuration


def _same_test_set(a: Predictions, b: Predictions) -> None:
    if not a.labels.size:
        raise ValueError("the predictions cover no test images")
    if a.labels.shape != b.labels.shape:
        raise ValueError(
            f"the two sets of predictions cover {a.labels.size} and {b.labels.size} test images: "
            "not one test set"
        )
    if not np.array_equal(a.labels, b.labels):
        raise ValueError("the two sets of predictions have different test labels: not one test set")


def compare_runs(a: Predictions, b: Predictions) -> dict:
    """Two single models (row 0 of each) on one test set, example by example (B minus A)."""
    _same_test_set(a, b)
    if not (a.valid[0] and b.valid[0]):
        raise ValueError("a run without predictions (diverged) cannot be compared")
    correct_a, correct_b = a.correct[0], b.correct[0]
    examples = correct_a.size
    difference = correct_b.astype(np.float64) - correct_a
    test = mcnemar(correct_a, correct_b)
    # Over the test images, the two models fixed: Bonett and Price's adjusted Wald interval of the
    # discordant shares, which covers 94-99% from one disagreement up (stats.coverage); the
    # percentile bootstrap of the differences it replaces covered 88% with three of 1,000.
    low, high = paired_proportions_interval(test["b_only"], test["a_only"], examples)
    return {
        "kind": "runs",
        "examples": examples,
        **{
            name: {
                "accuracy": float(correct.mean()),
                "wilson95": list(wilson_interval(int(correct.sum()), examples)),
            }
            for name, correct in (("a", correct_a), ("b", correct_b))
        },
        "difference": {
            "mean": float(difference.mean()),
            "low": low,
            "high": high,
            "method": "Bonett-Price adjusted Wald, over test images",
        },
        "mcnemar": test,
        # Examples, not seeds, are the sample here: any count clears the seeds' minimum.
        "outcome": outcome(float(difference.mean()), test["p_value"], examples),
    }


def compare_configurations(
    a: Predictions, seeds_a: Sequence[int], b: Predictions, seeds_b: Sequence[int]
) -> dict:
    """Two configurations of one sweep (their members' predictions and seeds), seed by seed
    over the seeds both have (B minus A)."""
    _same_test_set(a, b)
    for name, seeds in (("A", seeds_a), ("B", seeds_b)):
        repeated = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
        if repeated:
            raise ValueError(f"configuration {name} has several members with seed(s) {repeated}")
    by_seed_a = {int(s): k for k, s in enumerate(seeds_a) if a.valid[k]}
    by_seed_b = {int(s): k for k, s in enumerate(seeds_b) if b.valid[k]}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    accuracy_a = {s: float(a.accuracy[by_seed_a[s]]) for s in seeds}
    accuracy_b = {s: float(b.accuracy[by_seed_b[s]]) for s in seeds}
    per_seed = [
        {
            "seed": s,
            "a": accuracy_a[s],
            "b": accuracy_b[s],
            **mcnemar(a.correct[by_seed_a[s]], b.correct[by_seed_b[s]]),
        }
        for s in seeds
    ]
    for row, adjusted in zip(per_seed, holm([row["p_value"] for row in per_seed])):
        row["p_holm"] = adjusted
    differences = np.zeros((0, a.labels.size))
    if seeds:
        pairs = [(a.correct[by_seed_a[s]], b.correct[by_seed_b[s]]) for s in seeds]
        differences = np.stack([right_b.astype(np.float64) - right_a for right_a, right_b in pairs])
    paired = paired_difference(accuracy_a, accuracy_b)
    p = paired_p_value(accuracy_a, accuracy_b)
    return {
        "kind": "configurations",
        "examples": int(a.labels.size),
        "seeds": seeds,
        "per_seed": per_seed,
        "difference": paired,
        "p_value": p,
        "improvement": probability_of_improvement(accuracy_a, accuracy_b),
        "difference_seeds_and_examples": seeds_and_examples_interval(differences),
        "diverged": {"a": int(np.sum(~a.valid)), "b": int(np.sum(~b.valid))},
        "outcome": outcome(paired["mean"], p, len(seeds)),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _points(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def _span(low: float | None, high: float | None) -> str:
    return f"[{_points(low)}, {_points(high)}]"


RUNS_CAVEAT = (
    "One seed each: this compares two trained models, and a seed's own luck is part of the "
    "difference; a sweep over seeds tells whether their configurations differ."
)
SEEDS_CAVEAT = (
    "The verdict rests on the paired t-test over seeds, with the test set fixed. McNemar's tests "
    "above ask another question, whether the two models of one seed differ on these test images, "
    "and Holm's correction over the seeds makes each of them weaker: they can all be above 0.05 "
    "where the paired t-test finds a difference, and the reverse."
)


def _conclusion(result: Mapping, name_a: str, name_b: str) -> str:
    verdict = result["outcome"]
    better = name_b if verdict == "better" else name_a
    if result["kind"] == "runs":
        basis = f"McNemar's exact test, p = {result['mcnemar']['p_value']:.3g}"
        if verdict == "no difference shown":
            return f"No difference shown between {name_a} and {name_b} ({basis})."
        return f"{better} is more accurate ({basis})."
    seeds = len(result["seeds"])
    if verdict == "too few seeds":
        diverged = result["diverged"]
        lost = f" ({diverged['a']} member(s) of A and {diverged['b']} of B diverged)"
        lost = lost if diverged["a"] or diverged["b"] else ""
        return (
            f"Too few paired seeds ({seeds}){lost} for a verdict; at least "
            f"{MIN_VERDICT_SEEDS} are needed."
        )
    basis = f"paired t-test over {seeds} seeds, p = {result['p_value']:.3g}"
    if verdict == "no difference shown":
        return f"No difference shown between {name_a} and {name_b} ({basis})."
    both = result["difference_seeds_and_examples"]
    holds = both["low"] is not None and (both["low"] > 0 or both["high"] < 0)
    return (
        f"{better} is better on this test set ({basis}); the difference "
        + ("also holds" if holds else "is not shown to hold")
        + " when the test images' sampling is counted too (interval over seeds and test images "
        f"{_span(both['low'], both['high'])} points)."
    )


def render_comparison(result: Mapping, name_a: str, name_b: str, sources: Sequence[str]) -> str:
    """comparison.md for `compare_runs` or `compare_configurations`'s result."""
    lines = [
        f"# {name_b} vs {name_a}",
        "",
        f"Predictions from {', '.join(sources)}; "
        f"{result['examples']:,} test images. A: {name_a}; B: {name_b}. Differences are B "
        "minus A, in points.",
        "",
    ]
    difference = result["difference"]
    if result["kind"] == "runs":
        table = result["mcnemar"]
        lines += ["| | test accuracy | Wilson 95% |", "|---|---:|---:|"]
        for side, name in (("a", name_a), ("b", name_b)):
            low, high = result[side]["wilson95"]
            lines.append(
                f"| {side.upper()}: {name} | {_pct(result[side]['accuracy'])} | "
                f"[{_pct(low)}, {_pct(high)}] |"
            )
        lines += [
            "",
            f"Difference {_points(difference['mean'])} points, 95% interval over test images "
            f"{_span(difference['low'], difference['high'])} (Bonett-Price; the two models fixed).",
            "",
            f"Example by example: both right {table['both']:,}, only A {table['a_only']:,}, only B "
            f"{table['b_only']:,}, both wrong {table['neither']:,}; McNemar's exact p = "
            f"{table['p_value']:.3g}.",
        ]
    else:
        improvement, both = result["improvement"], result["difference_seeds_and_examples"]
        lines += [
            "| seed | A | B | B - A | only A right | only B right | McNemar p | Holm p |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['seed']} | {_pct(row['a'])} | {_pct(row['b'])} "
            f"| {_points(row['b'] - row['a'])} | {row['a_only']} | {row['b_only']} "
            f"| {row['p_value']:.3g} | {row['p_holm']:.3g} |"
            for row in result["per_seed"]
        ]
        lines += [""]
        if difference["n"]:
            seeds = f"{difference['n']} seed" + ("s" if difference["n"] != 1 else "")
            text = f"Paired over {seeds}: {_points(difference['mean'])} points"
            if difference["ci95_low"] is not None:
                interval = _span(difference["ci95_low"], difference["ci95_high"])
                text += f", Student-t 95% interval {interval} (seeds, test set fixed)"
            if both["low"] is not None:
                text += (
                    f"; 95% interval over seeds and test images {_span(both['low'], both['high'])}"
                )
            if improvement["p"] is not None:
                text += f"; B beats A on {improvement['p']:.0%} of the seeds (ties count one half)"
                if improvement["low"] is not None:
                    text += (
                        f", exact 95% interval [{improvement['low']:.0%}, "
                        f"{improvement['high']:.0%}]"
                    )
            lines.append(text + ".")
    caveat = RUNS_CAVEAT if result["kind"] == "runs" else SEEDS_CAVEAT  # whatever the verdict
    lines += ["", f"**{_conclusion(result, name_a, name_b)}**", "", caveat, ""]
    return "\n".join(lines)


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
