"""Per-configuration views of a sweep's `MemberResult`s: labels, per-seed values, learning curves
and paired differences between two configurations.

Pure functions over the list `run_sweep` returns (`SweepResult.members`); the CLI and the notebooks
call these rather than grouping results themselves. Diverged members are left out everywhere, as in
`summarize_by_config`. Dicts keep the order in which configurations first appear in the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mnist_jax.epochs import RECORD_METRICS, metric_keys
from mnist_jax.labels import config_label, config_labels  # noqa: F401  (re-exported)
from mnist_jax.stats import paired_difference  # noqa: F401  (re-exported: the seed-by-seed view)
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, ConfigKey
from mnist_jax.sweep.stats import MEMBER_METRICS


def row_key(row: Mapping) -> ConfigKey:
    """A `summarize_by_config` row's configuration key (for `config_label`)."""
    return tuple(
        tuple(row[name]) if isinstance(row[name], list) else row[name] for name in CONFIG_KEY_FIELDS
    )


def _live(results: Sequence) -> list:
    return [r for r in results if r.diverged_epoch is None]


def values_by_config(
    results: Sequence, metric: str = "test_accuracy"
) -> dict[ConfigKey, dict[int, float]]:
    """Per configuration: seed -> `metric` of that member, for the non-diverged members.

    `metric` is one of `MemberResult.metrics()`'s names (`MEMBER_METRICS`: "test_accuracy",
    "final_val_accuracy", "best_epoch"...). Members without the value (no test metrics) are left
    out; a configuration with no values left is absent.
    """
    if metric not in MEMBER_METRICS:
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(MEMBER_METRICS)}")
    out: dict[ConfigKey, dict[int, float]] = {}
    for r in _live(results):
        value = r.metrics()[metric]
        if value is not None:
            out.setdefault(r.member.config_key, {})[r.member.seed] = float(value)
    return out


def curves_by_config(
    results: Sequence, metric: str = "val_accuracy"
) -> dict[ConfigKey, np.ndarray]:
    """Per configuration: the float64 array (members, epochs) of `metric` per epoch, one row per
    non-diverged member in the order of `results` (the input of `plots.plot_learning_curves_band`).

    `metric` is any per-epoch metric of the history records (`epochs.metric_keys`: "train_loss",
    "train_accuracy", "train_grad_norm", "val_loss", "val_accuracy", ...). A member that stopped
    before the others of its configuration (`--patience`, `--stop-at-target`) has NaN for the
    epochs it did not train, and a record without the metric (written before it existed) NaN.
    """
    live = _live(results)
    known = {key for r in live for record in r.history for key in metric_keys(record)}
    if metric not in known | set(RECORD_METRICS):
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(sorted(known))}")
    rows: dict[ConfigKey, list[list[float]]] = {}
    for r in live:
        curve = [record.get(metric, np.nan) for record in r.history]
        rows.setdefault(r.member.config_key, []).append(curve)
    out = {}
    for key, curves in rows.items():
        table = np.full((len(curves), max(map(len, curves))), np.nan)
        for row, curve in zip(table, curves):
            row[: len(curve)] = curve
        out[key] = table
    return out
