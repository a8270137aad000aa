"""Statistics over a sweep's seeds, per configuration: `stats.summarize` (mean, sample standard
deviation, Student-t 95% interval) of each member metric, and time to target.

Values that are undefined (the standard deviation and interval of fewer than two values) are None,
so the dicts are valid JSON as they are.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mnist_jax.epochs import time_to_target
from mnist_jax.stats import summarize
from mnist_jax.sweep.members import ConfigKey

# The final numbers of a member (`MemberResult.metrics()`), summarised over seeds.
MEMBER_METRICS = (
    "test_accuracy",
    "test_loss",
    "final_val_accuracy",
    "final_val_loss",
    "best_epoch",
    "best_val_accuracy",
    "best_test_accuracy",
)


def summarize_by_config(
    member_results: Sequence,
    ensembles: Mapping[ConfigKey, dict] | None = None,
    metrics: Sequence[str] = MEMBER_METRICS,
) -> list[dict]:
    """One row per configuration (every `CONFIG_KEY_FIELDS` value: model, optimizer, schedule,
    learning rate...), over its seeds.

    `member_results` are `MemberResult`s (anything with `.member`, `.diverged_epoch` and
    `.metrics()`). Diverged members are counted in `diverged` and left out of the statistics. Each
    row holds `summarize` of every metric in `metrics`, and the configuration's ensemble numbers
    when given.
    """
    rows: dict[ConfigKey, dict] = {}
    for result in member_results:
        key = result.member.config_key
        if key not in rows:
            fields = {k: v for k, v in result.member.to_dict().items() if k != "seed"}
            rows[key] = {**fields, "seeds": [], "diverged": [], "_values": {m: [] for m in metrics}}
        row = rows[key]
        row["seeds"].append(result.member.seed)
        if result.diverged_epoch is not None:
            row["diverged"].append(result.member.seed)
            continue
        values = result.metrics()
        for m in metrics:
            if values.get(m) is not None:
                row["_values"][m].append(values[m])
    for key, row in rows.items():
        for m, values in row.pop("_values").items():
            row[m] = summarize(values)
        if ensembles is not None and key in ensembles:
            row.update(ensembles[key])
    return list(rows.values())


def time_to_target_by_config(
    member_results: Sequence,
    target: float,
    history: Callable[[Any], Sequence[dict]] = lambda r: r.history,
) -> dict:
    """Per configuration: how many members reached validation accuracy `target` (diverged ones
    count as not reaching it), and `summarize` of the epochs and training seconds they took.

    A record's seconds are its program's (the members of a program train together); with
    `history=member_histories(member_results)` they are the member's share of them, so
    configurations trained in programs of different sizes compare."""
    out: dict = {}
    for result in member_results:
        reached = time_to_target(history(result), target)
        row = out.setdefault(
            result.member.config_key, {"target": target, "members": 0, "epochs": [], "seconds": []}
        )
        row["members"] += 1
        if reached["reached"]:
            row["epochs"].append(reached["epoch"])
            row["seconds"].append(reached["seconds"])
    for row in out.values():
        row["reached"] = len(row["epochs"])
        row["epochs"], row["seconds"] = summarize(row["epochs"]), summarize(row["seconds"])
    return out


def member_histories(member_results: Sequence) -> Callable[[Any], list[dict]]:
    """Each member's history with every record's `seconds` cut to the member's share of its
    program's epoch: the epoch's time over the members of the program that trained it (those with
    a record for it). On a CPU each device takes its members one at a time, so this is close to
    the member's own time; a member stopped early (which then costs nothing there) or diverged
    no longer takes a share."""
    trained = collections.Counter(
        (r.program, record["epoch"]) for r in member_results for record in r.history
    )
    return lambda r: [
        {**record, "seconds": record["seconds"] / trained[(r.program, record["epoch"])]}
        for record in r.history
    ]
