"""What `experiments.sweep` prints and draws: the progress lines, the throughput, the statistics
table and the two figures (kept apart from the command's flow in experiments/sweep.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.console import Console
from mnist_jax.epochs import diverged, time_to_target
from mnist_jax.logs import json_safe
from mnist_jax.sweep import config_label, curves_by_config, values_by_config
from mnist_jax.sweep.results import row_key
from mnist_jax.sweep.stats import member_time_share, time_to_target_by_config

PLOT_FILES = ("accuracy_distribution.png", "learning_curves.png")


class ProgressPrinter:
    """A run_sweep callback: one line per epoch per program, and the epoch times for throughput."""

    def __init__(self, console: Console, epochs: int):
        self.console, self.epochs = console, epochs
        self.epoch_seconds: dict[int, list[float]] = {}

    def __call__(self, program, state, records, histories) -> None:
        live = [r for r in records if r is not None and not diverged(r)]
        seconds = next(r["seconds"] for r in records if r is not None)
        epoch = next(r["epoch"] for r in records if r is not None)
        self.epoch_seconds.setdefault(program.index, []).append(seconds)
        if live:
            accuracy = [r["val_accuracy"] for r in live]
            loss = np.mean([r["train_loss"] for r in live])
            text = (
                f"val acc mean {np.mean(accuracy):.4f} min {min(accuracy):.4f} max "
                f"{max(accuracy):.4f} | train loss mean {loss:.4f}"
            )
        else:
            text = "every member has diverged"
        lost = sum(r is None or r not in live for r in records)
        self.console.info(
            f"program {program.index} epoch {epoch:>3}/{self.epochs}: {text}"
            + (f" | {lost} diverged" if lost else "")
            + f" | {seconds:.2f} s"
        )


def throughput(programs, epoch_seconds: dict[int, list[float]], num_train: int) -> dict:
    """Training examples per second of the epochs trained in this process, all members together and
    per member; the first epoch of a program is left out when it trained more (warm-up)."""
    examples, seconds = 0, 0.0
    for program in programs:
        times = epoch_seconds.get(program.index, [])
        steady = times[1:] or times
        examples += num_train * len(program.members) * len(steady)
        seconds += sum(steady)
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
    def number(x):
        return "-" if x is None else f"{x:.4f}"

    width = max([40, *(len(config_label(row_key(row))) for row in rows)])
    header = (
        f"{'configuration':<{width}} {'n':>3} {'mean':>7} {'std':>7} {'95% CI':>17} {'min':>7} "
        f"{'max':>7} {'ensemble':>8}"
    )
    console.result("test accuracy over seeds:")
    console.result(header)
    for row in rows:
        stats = row["test_accuracy"]
        label = config_label(row_key(row))
        ci = (
            "-"
            if stats["ci95_low"] is None
            else f"[{stats['ci95_low']:.4f}, {stats['ci95_high']:.4f}]"
        )
        line = (
            f"{label:<{width}} {stats['n']:>3} {number(stats['mean']):>7} "
            f"{number(stats['std']):>7} {ci:>17} {number(stats['min']):>7} "
            f"{number(stats['max']):>7} {number(row.get('ensemble_accuracy')):>8}"
        )
        if row["diverged"]:
            line += f"  (diverged seeds: {row['diverged']})"
        console.result(line)
    for row in rows:
        reached = row.get("time_to_target")
        if reached is None:
            continue
        text = f"{config_label(row_key(row))}: {reached['reached']}/{reached['members']} reached "
        text += f"validation accuracy {reached['target']:g}"
        if reached["reached"]:
            epochs, seconds = reached["epochs"], reached["seconds"]
            text += f", after {epochs['mean']:.1f} epochs and {seconds['mean']:.2f} s of training"
            if seconds["ci95_low"] is not None:
                text += f" (95% interval {seconds['ci95_low']:.2f}-{seconds['ci95_high']:.2f} s)"
            text += " (a member's share of its program's time)"
        console.result(text)


def write_plots(sweep_dir: Path, result, only_missing: bool = False) -> list[Path]:
    """The sweep's two figures (`only_missing`: those not in `sweep_dir` already)."""
    from mnist_jax.plots import plot_accuracy_distribution, plot_learning_curves_band, save_figure

    accuracies = {
        config_label(key): list(values.values())
        for key, values in values_by_config(result.members, "test_accuracy").items()
    }
    curves = {
        config_label(key): values
        for key, values in curves_by_config(result.members, "val_accuracy").items()
    }
    draw = {
        PLOT_FILES[0]: lambda: plot_accuracy_distribution(accuracies),
        PLOT_FILES[1]: lambda: plot_learning_curves_band(curves),
    }
    return [
        save_figure(figure(), sweep_dir / name)
        for name, figure in draw.items()
        if accuracies and not (only_missing and (sweep_dir / name).exists())
    ]


def member_time_to_target(result, target: float, programs) -> dict:
    """`time_to_target` of a member: `seconds` its program's, `member_seconds` its share."""
    reached = time_to_target(result.history, target)
    share = member_time_share(programs)(result)
    return {
        **reached,
        "member_seconds": None if reached["seconds"] is None else reached["seconds"] * share,
    }


def member_entries(result, target: float | None) -> list[dict]:
    """members.json: each member's values, program, final and best-epoch test numbers, history,
    divergence and (with a target) time to target."""
    return [
        json_safe(
            {
                **r.member.to_dict(),
                "program": r.program,
                "test_accuracy": (r.test or {}).get("test_accuracy"),
                "test_loss": (r.test or {}).get("test_loss"),
                **(r.best or {}),
                "history": r.history,
                "diverged_epoch": r.diverged_epoch,
                "time_to_target": None
                if target is None
                else member_time_to_target(r, target, result.programs),
            }
        )
        for r in result.members
    ]


def summary_rows(result, target: float | None) -> list[dict]:
    """summary.json's configurations: `SweepResult.summary`, with time to target per
    configuration when there is a target (in each member's share of its program's time)."""
    rows = result.summary()
    if target is not None:
        share = member_time_share(result.programs)
        reached = time_to_target_by_config(result.members, target, share)
        for row in rows:
            row["time_to_target"] = reached[row_key(row)]
    return rows
