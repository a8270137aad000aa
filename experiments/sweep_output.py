"""What `experiments.sweep` prints: the progress lines, the plan and the statistics table, kept
apart from the command's flow in experiments/sweep.py. What it writes is `mnist_jax.sweep.outputs`.
"""

from __future__ import annotations

import numpy as np

from experiments.console import Console, device_text
from mnist_jax.config import FIELDS, applies
from mnist_jax.epochs import diverged
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS
from mnist_jax.sweep.outputs import PER_MEMBER_FIELDS


class ProgressPrinter:
    """A run_sweep callback: one line per epoch per program (the throughput's epoch times are
    `sweep.directory.EpochTimes`')."""

    def __init__(self, console: Console, epochs: int):
        self.console, self.epochs = console, epochs

    def __call__(self, program, state, records, histories) -> None:
        live = [r for r in records if r is not None and not diverged(r)]
        first = next(r for r in records if r is not None)
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
            f"program {program.index} epoch {first['epoch']:>3}/{self.epochs}: {text}"
            + (f" | {lost} diverged" if lost else "")
            + (f" | {stopped} stopped" if stopped else "")
            + f" | {first['seconds']:.2f} s"
        )


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


def int_ranges(values: list[int]) -> str:
    """Sorted distinct integers as `--seeds` takes them: `0-3,7,9-12`."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# A plan of more programs lists the first ones and counts the rest.
MAX_PROGRAMS_LISTED = 12


def print_plan(
    console: Console, config, members, programs, members_per_program, members_per_step, devices
) -> None:
    """What the sweep will train: shared configuration, members, programs, devices."""
    shared = {k: v for k, v in config.to_dict().items() if k not in PER_MEMBER_FIELDS}
    console.info("configuration: " + ", ".join(f"{k}={v}" for k, v in shared.items()))
    configurations = {m.config_key: m for m in members}.values()  # one member each
    swept = ""  # each field's values where it does something, if they vary or are not the default
    for name in CONFIG_KEY_FIELDS:
        values = [getattr(m, name) for m in configurations if applies(name, m.to_dict())]
        values = list(dict.fromkeys(values))
        if len(values) > 1 or (values and values[0] != FIELDS[name].default):
            swept += f" x {name} {values}"
    seeds = int_ranges(sorted({m.seed for m in members}))
    console.info(f"members: {len(members):,} = seeds {seeds}{swept}")
    console.info(
        f"programs: {len(programs)} (at most {members_per_program} members each, "
        f"{members_per_step or 'all'} per device at a time)"
    )
    shown = programs[: MAX_PROGRAMS_LISTED - 2] if len(programs) > MAX_PROGRAMS_LISTED else programs
    for p in shown:
        words = []  # its compiled values: the outermost always, the others where they matter
        for k, (name, value) in enumerate(p.group.items()):
            meta = FIELDS[name].metadata
            if not applies(name, p.group) or (
                k and meta["label"] != "always" and value == FIELDS[name].default
            ):
                continue
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            words.append(text if meta["short"] is None else f"{meta['short']} {text}")
        console.info(
            f"  program {p.index}: {' '.join(words)}, {len(p.members)} members padded to "
            f"{p.num_padded}"
        )
    if len(shown) < len(programs):
        console.info(f"  ... and {len(programs) - len(shown):,} more programs")
    console.info(f"devices: {device_text(devices)}, {devices['process_count']} process(es)")
