"""What a sweep's report says beyond means over seeds, from the members and their predictions:
test intervals per configuration, comparisons with a reference (Holm-corrected), ensemble curves,
the search's expected best after n trials, and the configuration selected on validation data.

Each takes plain values (configuration keys in member order, `Predictions`, `MemberResult`
values), so the numbers can be recomputed from a sweep directory's members.json and predictions.npz.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnist_jax.predictions import Predictions
from mnist_jax.stats import (
    bootstrap_interval,
    calibration_bins,
    compare_with_reference,
    ensemble_curve,
    expected_calibration_error,
    expected_max,
    seeds_and_examples_interval,
    softmax,
)
from mnist_jax.sweep.members import ConfigKey
from mnist_jax.sweep.results import values_by_config


def test_intervals(
    keys: Sequence[ConfigKey], predictions: Predictions, *, seed: int = 0
) -> dict[ConfigKey, dict]:
    """Per configuration (`keys[i]` is member i's, the row order of `predictions`; invalid rows
    left out), intervals of the mean test accuracy beyond `summarize_by_config`'s Student-t one:

    - `over_seeds_bootstrap`: the expanded percentile bootstrap over seeds, test set fixed (None
      below `stats.intervals.MIN_BOOTSTRAP_SEEDS` seeds);
    - `over_seeds_and_examples`: `stats.seeds_and_examples_interval`, over seeds and test images
      (None below two seeds).
    """
    if len(keys) != predictions.num_models:
        raise ValueError(f"{len(keys)} members for {predictions.num_models} rows of predictions")
    by_config: dict[ConfigKey, list[int]] = {key: [] for key in keys}
    for index, key in enumerate(keys):
        if predictions.valid[index]:
            by_config[key].append(index)
    accuracy, correct = predictions.accuracy, predictions.correct
    out = {}
    for key, rows in by_config.items():
        interval = bootstrap_interval(accuracy[rows], seed=seed)
        out[key] = {
            "over_seeds_bootstrap": None if interval is None else list(interval),
            "over_seeds_and_examples": seeds_and_examples_interval(correct[rows], seed=seed),
        }
    return out


def comparisons(
    results: Sequence, reference: ConfigKey, metric: str = "test_accuracy", *, seed: int = 0
) -> dict[ConfigKey, dict]:
    """`stats.compare_with_reference` of every configuration's `metric` (an accuracy: higher is
    better) against `reference`, seed by seed over the non-diverged members (`MemberResult` values
    or anything with their fields)."""
    if "accuracy" not in metric:
        raise ValueError(f"comparisons are of accuracies (higher is better), not {metric!r}")
    values = values_by_config(results, metric)
    if reference not in values:
        return {}
    return compare_with_reference(values, reference, seed=seed)


def ensemble_curves(
    results: Sequence, test_labels: np.ndarray, *, seed: int = 0
) -> dict[ConfigKey, dict]:
    """Per configuration with at least two non-diverged members: `stats.ensemble_curve` of their
    test probabilities, and `reliability` (`calibration_bins`) and `ece` of the full ensemble."""
    probabilities: dict[ConfigKey, list[np.ndarray]] = {}
    for r in results:
        if r.test_logits is not None:
            probabilities.setdefault(r.member.config_key, []).append(softmax(r.test_logits))
    out = {}
    for key, members in probabilities.items():
        if len(members) < 2:
            continue
        stacked = np.stack(members)
        mean = stacked.mean(axis=0)
        predicted = np.argmax(mean, axis=-1)
        confidence, correct = mean[np.arange(len(predicted)), predicted], predicted == test_labels
        out[key] = {
            **ensemble_curve(stacked, test_labels, seed=seed),
            "reliability": {
                k: v.tolist() for k, v in calibration_bins(confidence, correct).items()
            },
            "full_ece": expected_calibration_error(confidence, correct),
        }
    return out


def search_curve(results: Sequence, metric: str = "final_val_accuracy") -> dict | None:
    """`stats.expected_max` of `metric` over the non-diverged members, each member one trial of
    the search (a configuration and a seed: its best includes the seed's luck): None with fewer
    than two configurations. Where some configuration has several seeds, `configurations` holds
    `expected_max` of the configurations' means over their seeds (each configuration one trial,
    `seeds` the fewest and most it has): the expected best configuration, the reader's question."""
    by_config = [list(seeds.values()) for seeds in values_by_config(results, metric).values()]
    if len(by_config) < 2:
        return None
    counts = [len(values) for values in by_config]
    configurations = None
    if max(counts) > 1:
        means = [float(np.mean(values)) for values in by_config]
        configurations = {**expected_max(means), "seeds": [min(counts), max(counts)]}
    every_member = expected_max(value for values in by_config for value in values)
    return {"metric": metric, **every_member, "configurations": configurations}


def selected_configuration(rows: Sequence[dict], metric: str = "final_val_accuracy") -> int | None:
    """The index in `rows` (`summarize_by_config` rows) of the configuration with the highest mean
    `metric` (a validation number: choosing by a test number would be test-set selection), among
    those none of whose members diverged when there are any (a configuration that diverges for
    some seeds is not one to pick by its survivors); the first of equals; None when no row has the
    metric."""
    means = [(row.get(metric) or {}).get("mean") for row in rows]
    stable = [i for i, row in enumerate(rows) if not row["diverged"] and means[i] is not None]
    pool = stable or [i for i, mean in enumerate(means) if mean is not None]
    return -max((means[i], -i) for i in pool)[1] if pool else None
