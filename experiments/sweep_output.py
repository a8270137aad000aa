"""What `experiments.sweep` prints, draws and writes: the progress lines, the throughput, the
statistics table, the analysis behind summary.json and report.md, and the figures (kept apart from
the command's flow in experiments/sweep.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from experiments.console import Console
from mnist_jax.epochs import diverged, time_to_target
from mnist_jax.fileio import write_json_atomic, write_text_atomic
from mnist_jax.logs import json_safe
from mnist_jax.predictions import PREDICTIONS_FILE
from mnist_jax.stats import verdict, wilson_interval
from mnist_jax.sweep import curves_by_config, values_by_config
from mnist_jax.sweep.analysis import (
    comparisons,
    ensemble_curves,
    search_curve,
    selected_configuration,
    test_intervals,
)
from mnist_jax.sweep.members import Member
from mnist_jax.sweep.report import REPORT_FILE, render_sweep_report
from mnist_jax.sweep.results import config_labels, row_key
from mnist_jax.sweep.stats import member_histories, time_to_target_by_config

MEMBERS_FILE, SUMMARY_FILE = "members.json", "summary.json"
# The members' own fields: in sweep.json's "config" these hold the first member's values.
PER_MEMBER_FIELDS = tuple(field.name for field in dataclasses.fields(Member))
# The sweep's figures: report.md's FIGURE_CAPTIONS key -> file.
PLOT_FILES = {
    "accuracy_distribution": "accuracy_distribution.png",
    "learning_curves": "learning_curves.png",
    "ensemble_size": "ensemble_size.png",
    "reliability": "reliability.png",
    "expected_max": "expected_max.png",
}


class ProgressPrinter:
    """A run_sweep callback: one line per epoch per program, and for throughput the epoch times
    and how many members each epoch trained."""

    def __init__(self, console: Console, epochs: int):
        self.console, self.epochs = console, epochs
        self.epoch_seconds: dict[int, list[float]] = {}
        self.epoch_members: dict[int, list[int]] = {}

    def __call__(self, program, state, records, histories) -> None:
        live = [r for r in records if r is not None and not diverged(r)]
        seconds = next(r["seconds"] for r in records if r is not None)
        epoch = next(r["epoch"] for r in records if r is not None)
        self.epoch_seconds.setdefault(program.index, []).append(seconds)
        self.epoch_members.setdefault(program.index, []).append(sum(r is not None for r in records))
        if live:
            accuracy = [r["val_accuracy"] for r in live]
            loss = np.mean([r["train_loss"] for r in live])
            text = (
                f"val acc mean {np.mean(accuracy):.4f} min {min(accuracy):.4f} max "
                f"{max(accuracy):.4f} | train loss mean {loss:.4f}"
            )
        else:
            text = "every member still training diverged"
        # A member without a record this epoch diverged or stopped early in an earlier one: its
        # history's last record tells which.
        idle = [h for r, h in zip(records, histories) if r is None]
        stopped = sum(not (h and diverged(h[-1])) for h in idle)
        lost = len(records) - len(live) - stopped
        self.console.info(
            f"program {program.index} epoch {epoch:>3}/{self.epochs}: {text}"
            + (f" | {lost} diverged" if lost else "")
            + (f" | {stopped} stopped" if stopped else "")
            + f" | {seconds:.2f} s"
        )


def throughput(
    programs,
    epoch_seconds: dict[int, list[float]],
    num_train: int,
    epoch_members: dict[int, list[int]] | None = None,
) -> dict:
    """Training examples per second of the epochs trained in this process, all members together and
    per member; the first epoch of a program is left out when it trained more (warm-up).
    `epoch_members`: how many members each epoch trained (default: all of the program's); a member
    stopped early or diverged trains no examples."""
    examples, seconds = 0, 0.0
    for program in programs:
        times = epoch_seconds.get(program.index, [])
        counts = (epoch_members or {}).get(program.index) or [len(program.members)] * len(times)
        start = 1 if len(times) > 1 else 0
        examples += num_train * sum(counts[start:])
        seconds += sum(times[start:])
    if not seconds:
        return {
            "train_seconds": 0.0,
            "examples_per_second": None,
            "examples_per_second_per_member": None,
        }
    members = sum(len(p.members) for p in programs)
    return {
        "train_seconds": sum(sum(t) for t in epoch_seconds.values()),
        "examples_per_second": examples / seconds,
        "examples_per_second_per_member": examples / seconds / members,
    }


def print_table(console: Console, rows: list[dict]) -> None:
    """The configurations' test accuracy over seeds, intervals and ensembles; then the verdicts
    and times to target (rows of `analyse`)."""

    def number(x):
        return "-" if x is None else f"{x:.4f}"

    def interval(low, high):
        return "-" if low is None else f"[{low:.4f}, {high:.4f}]"

    width = max([24, *(len(row["label"]) for row in rows)])
    header = (
        f"{'configuration':<{width}} {'n':>3} {'mean':>7} {'std':>7} {'t 95% (seeds)':>17} "
        f"{'95% (seeds+test)':>17} {'ensemble':>8}"
    )
    console.result("test accuracy over seeds:")
    console.result(header)
    for row in rows:
        stats = row["test_accuracy"]
        both = (row.get("test_intervals") or {}).get("over_seeds_and_examples") or {}
        line = (
            f"{row['label']:<{width}} {stats['n']:>3} {number(stats['mean']):>7} "
            f"{number(stats['std']):>7} {interval(stats['ci95_low'], stats['ci95_high']):>17} "
            f"{interval(both.get('low'), both.get('high')):>17} "
            f"{number(row.get('ensemble_accuracy')):>8}"
        )
        if row["diverged"]:
            line += f"  (diverged seeds: {row['diverged']})"
        console.result(line)
    for row in rows:
        if row.get("comparison"):
            console.result(row["comparison"]["verdict"])
    for row in rows:
        reached = row.get("time_to_target")
        if reached is None:
            continue
        text = f"{row['label']}: {reached['reached']}/{reached['members']} reached "
        text += f"validation accuracy {reached['target']:g}"
        if reached["reached"]:
            epochs, seconds = reached["epochs"], reached["seconds"]
            text += f", after {epochs['mean']:.1f} epochs and {seconds['mean']:.2f} s of training"
            if seconds["ci95_low"] is not None:
                text += f" (95% interval {seconds['ci95_low']:.2f}-{seconds['ci95_high']:.2f} s)"
            text += " (a member's share of its program's time)"
        console.result(text)


def analyse(result, config, reference, data_record: dict) -> dict:
    """summary.json's statistics: per configuration (`summary_rows`) its label (naming what
    varies), test intervals from the predictions, comparison with `reference` (a configuration
    key) and ensemble curve; the configuration selected by validation accuracy; the search's
    expected-best curve; and `data` (which data each number comes from)."""
    keys = [r.member.config_key for r in result.members]
    labels = config_labels(keys)
    rows = summary_rows(result, config.target_accuracy)
    intervals = test_intervals(keys, result.predictions())
    compared = comparisons(result.members, reference)
    curves = ensemble_curves(result.members, result.test_labels)
    for row in rows:
        key = row_key(row)
        row["label"] = labels[key]
        row["test_intervals"] = intervals[key]
        row["ensemble_curve"] = curves.get(key)
        row["comparison"] = None
        if key in compared:
            row["comparison"] = {
                **compared[key],
                "verdict": verdict(labels[key], labels[reference], compared[key]),
            }
    chosen = selected_configuration(rows)
    selected = None
    if chosen is not None:
        row = rows[chosen]
        both = row["test_intervals"]["over_seeds_and_examples"]
        selected = {
            "label": row["label"],
            "index": chosen,
            "by": "final_val_accuracy",
            "validation": row["final_val_accuracy"]["mean"],
            "test": row["test_accuracy"]["mean"],
            "test_interval": [both["low"], both["high"]],
        }
    # The reliability diagram shows the selected configuration's ensemble, or the first one's
    # when the selected configuration has fewer than two live members.
    ensembled = [row["label"] for row in rows if row["ensemble_curve"]]
    reliability_of = None
    if ensembled:
        chosen = selected["label"] if selected else None
        reliability_of = chosen if chosen in ensembled else ensembled[0]
    return {
        "configurations": rows,
        "reference": labels[reference],
        "selected": selected,
        "reliability_of": reliability_of,
        "search": search_curve(result.members),
        "data": data_record,
    }


def write_plots(
    sweep_dir: Path, result, summary: dict, only_missing: bool = False
) -> dict[str, Path]:
    """The sweep's figures that have something to show (`only_missing`: those not in
    `sweep_dir` already); returns `PLOT_FILES` key -> path of the figures written."""
    from mnist_jax import plots

    labels = config_labels([r.member.config_key for r in result.members])
    accuracies = {
        labels[key]: list(values.values())
        for key, values in values_by_config(result.members, "test_accuracy").items()
    }
    curves = {
        labels[key]: values
        for key, values in curves_by_config(result.members, "val_accuracy").items()
    }
    rows = summary["configurations"]
    ensembles = {row["label"]: row["ensemble_curve"] for row in rows if row["ensemble_curve"]}
    draw = {}
    if accuracies:
        draw["accuracy_distribution"] = lambda: plots.plot_accuracy_distribution(accuracies)
        draw["learning_curves"] = lambda: plots.plot_learning_curves_band(curves)
    if ensembles:
        draw["ensemble_size"] = lambda: plots.plot_ensemble_curves(ensembles)
        label = summary["reliability_of"]
        full = ensembles[label]
        draw["reliability"] = lambda: plots.plot_reliability_diagram(
            {k: np.asarray(v, np.float64) for k, v in full["reliability"].items()},
            ece=full["full_ece"],
            label=f"{label}, ensemble of {full['size'][-1]}",
        )
    if summary["search"]:
        search = summary["search"]
        draw["expected_max"] = lambda: plots.plot_expected_max({"this sweep": search})
    return {
        key: plots.save_figure(figure(), sweep_dir / PLOT_FILES[key])
        for key, figure in draw.items()
        if not (only_missing and (sweep_dir / PLOT_FILES[key]).exists())
    }


def member_time_to_target(result, target: float, histories) -> dict:
    """`time_to_target` of a member: `seconds` its program's, `member_seconds` its share
    (`histories`: `sweep.stats.member_histories` of the sweep's members)."""
    reached = time_to_target(result.history, target)
    return {**reached, "member_seconds": time_to_target(histories(result), target)["seconds"]}


def member_entries(result, target: float | None) -> list[dict]:
    """members.json: each member's values, program, final and best-epoch test numbers (with the
    Wilson 95% interval of its test accuracy), history, divergence and (with a target) time to
    target."""
    predictions = result.predictions()
    correct = predictions.correct.sum(axis=1)
    examples = len(predictions.labels)
    histories = member_histories(result.members)
    return [
        json_safe(
            {
                **r.member.to_dict(),
                "program": r.program,
                "test_accuracy": (r.test or {}).get("test_accuracy"),
                "test_loss": (r.test or {}).get("test_loss"),
                "test_correct": int(correct[k]) if predictions.valid[k] else None,
                "test_accuracy_wilson95": list(wilson_interval(int(correct[k]), examples))
                if predictions.valid[k]
                else None,
                **(r.best or {}),
                "history": r.history,
                "diverged_epoch": r.diverged_epoch,
                "time_to_target": None
                if target is None
                else member_time_to_target(r, target, histories),
            }
        )
        for k, r in enumerate(result.members)
    ]


def summary_rows(result, target: float | None) -> list[dict]:
    """summary.json's configurations: `SweepResult.summary`, with time to target per
    configuration when there is a target (in each member's share of its program's time)."""
    rows = result.summary()
    if target is not None:
        histories = member_histories(result.members)
        reached = time_to_target_by_config(result.members, target, histories)
        for row in rows:
            row["time_to_target"] = reached[row_key(row)]
    return rows


def data_sources(dataset, data, config) -> dict:
    """Which data trained, validated and tested the members (summary.json's "data")."""
    return {
        "dataset": dataset.name,
        "validation": config.validation,
        "train_examples": int(data.train_images.shape[0]),
        "validation_examples": int(data.val_images.shape[0]),
        "test_examples": int(data.test_images.shape[0]),
    }


def print_plan(
    console: Console, config, members, programs, members_per_program, members_per_step, devices
) -> None:
    """What the sweep will train: shared configuration, members, programs, devices."""
    shared = {k: v for k, v in config.to_dict().items() if k not in PER_MEMBER_FIELDS}
    console.info("configuration: " + ", ".join(f"{k}={v}" for k, v in shared.items()))
    console.info(
        f"members: {len(members)} = seeds {sorted({m.seed for m in members})} x learning "
        f"rates {sorted({m.learning_rate for m in members})} x dropout "
        f"{sorted({m.dropout_rate for m in members})} x hidden "
        f"{[list(h) for h in dict.fromkeys(m.hidden_sizes for m in members)]} x models "
        f"{list(dict.fromkeys(m.model for m in members))}"
    )
    console.info(
        f"programs: {len(programs)} (at most {members_per_program} members each, "
        f"{members_per_step or 'all'} per device at a time)"
    )
    for p in programs:
        console.info(
            f"  program {p.index}: {p.model}"
            + (f" hidden {','.join(map(str, p.hidden_sizes))}" if p.model == "mlp" else "")
            + (f" {p.optimizer}" if p.optimizer != "adam" else "")
            + (f" {p.schedule}" if p.schedule != "constant" else "")
            + f", {len(p.members)} members padded to {p.num_padded}"
        )
    console.info(
        f"devices: {devices['count']} x {devices['kind']} ({devices['platform']}), "
        f"{devices['process_count']} process(es)"
    )


def write_sweep_files(
    sweep_dir: Path, result, summary: dict, entries: list[dict], *, only_missing: bool
) -> list[Path]:
    """members.json, predictions.npz, summary.json, the figures and report.md (`only_missing`:
    those not in `sweep_dir` already, for a finished sweep resumed); the paths written."""

    def wanted(name: str) -> bool:
        return not (only_missing and (sweep_dir / name).exists())

    written = []
    if wanted(MEMBERS_FILE):
        written.append(write_json_atomic(sweep_dir / MEMBERS_FILE, entries))
    if wanted(PREDICTIONS_FILE):
        written.append(result.predictions().save(sweep_dir / PREDICTIONS_FILE))
    summary = json_safe(summary)
    if wanted(SUMMARY_FILE):
        written.append(write_json_atomic(sweep_dir / SUMMARY_FILE, summary))
    written += write_plots(sweep_dir, result, summary, only_missing=only_missing).values()
    if wanted(REPORT_FILE):
        keys = [r.member.config_key for r in result.members]
        labels = config_labels(keys)
        present = {key: name for key, name in PLOT_FILES.items() if (sweep_dir / name).exists()}
        report = render_sweep_report(summary, entries, [labels[k] for k in keys], present)
        written.append(write_text_atomic(sweep_dir / REPORT_FILE, report))
    return written
