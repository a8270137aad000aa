"""Per-configuration views of sweep results (`mnist_jax.sweep.results`), on hand-made MemberResults:
labels, per-seed values, learning-curve arrays and paired differences; diverged members left out."""

import math

import numpy as np
import pytest

from mnist_jax.sweep import (
    Member,
    MemberResult,
    config_label,
    curves_by_config,
    paired_difference,
    summarize,
    values_by_config,
)

BASE = Member(0, 1e-3, 0.25, (128, 128)).config_key
FAST = Member(0, 3e-3, 0.25, (128, 128)).config_key


def result(seed, key, val_accuracy, test_accuracy=None, diverged=False):
    """A member: one history record per `val_accuracy` value and, unless diverged, test metrics."""
    history = [
        {
            "epoch": e,
            "train_loss": 0.5 / e,
            "train_accuracy": 0.9,
            "val_loss": 0.4 / e,
            "val_accuracy": v,
            "seconds": 1.0,
        }
        for e, v in enumerate(val_accuracy, start=1)
    ]
    if diverged:
        history[-1]["train_loss"] = math.nan
        return MemberResult(Member(seed, *key), history, diverged_epoch=len(history))
    return MemberResult(
        Member(seed, *key),
        history,
        test={"test_accuracy": test_accuracy, "test_loss": 1 - test_accuracy},
    )


RESULTS = [
    result(0, BASE, [0.90, 0.95], 0.970),
    result(1, BASE, [0.91, 0.96], 0.972),
    result(2, BASE, [0.80, math.nan], diverged=True),
    result(0, FAST, [0.92, 0.97], 0.975),
    result(1, FAST, [0.93, 0.96], 0.971),
    result(2, FAST, [0.94, 0.98], 0.978),
]


def test_config_label_is_the_cli_format():
    assert config_label(BASE) == "lr=0.001 dropout=0.25 hidden=128,128"
    assert config_label((0.01, 0.0, [64])) == "lr=0.01 dropout=0 hidden=64"


def test_values_by_config_maps_seeds_to_values_without_diverged_members():
    values = values_by_config(RESULTS)
    assert list(values) == [BASE, FAST]
    assert values[BASE] == {0: 0.970, 1: 0.972}
    assert values[FAST] == {0: 0.975, 1: 0.971, 2: 0.978}
    assert values_by_config(RESULTS, "final_val_accuracy")[FAST] == {0: 0.97, 1: 0.96, 2: 0.98}
    assert values_by_config(RESULTS, "test_loss")[BASE] == pytest.approx({0: 0.030, 1: 0.028})


def test_values_by_config_leaves_out_configurations_that_all_diverged_and_refuses_unknown_metrics():
    only_diverged = [result(0, BASE, [0.5], diverged=True), result(0, FAST, [0.9], 0.96)]
    assert values_by_config(only_diverged) == {FAST: {0: 0.96}}
    assert values_by_config([]) == {}
    with pytest.raises(ValueError, match="unknown metric 'val_accuracy'"):
        values_by_config(RESULTS, "val_accuracy")


def test_curves_by_config_stacks_members_by_epoch():
    curves = curves_by_config(RESULTS)
    assert list(curves) == [BASE, FAST]
    np.testing.assert_array_equal(curves[BASE], [[0.90, 0.95], [0.91, 0.96]])
    assert curves[FAST].shape == (3, 2) and curves[FAST].dtype == np.float64
    np.testing.assert_allclose(
        curves_by_config(RESULTS, "val_loss")[BASE], [[0.4, 0.2], [0.4, 0.2]]
    )
    with pytest.raises(ValueError, match="unknown metric"):
        curves_by_config(RESULTS, "test_accuracy")


def test_curves_by_config_refuses_members_of_unequal_length():
    with pytest.raises(ValueError, match=r"lr=0.001 .*\[1, 2\] epochs"):
        curves_by_config([result(0, BASE, [0.9], 0.9), result(1, BASE, [0.9, 0.95], 0.95)])


def test_paired_difference_is_the_summary_of_b_minus_a_over_common_seeds():
    values = values_by_config(RESULTS)
    paired = paired_difference(values[BASE], values[FAST])
    assert paired["seeds"] == [0, 1] and paired["n"] == 2
    expected = summarize([0.975 - 0.970, 0.971 - 0.972])
    for name in ("mean", "std", "ci95_low", "ci95_high", "min", "max"):
        assert paired[name] == pytest.approx(expected[name])
    reverse = paired_difference(values[FAST], values[BASE])
    assert reverse["mean"] == pytest.approx(-paired["mean"])


def test_paired_difference_of_too_few_pairs_has_no_interval():
    one = paired_difference({0: 0.5, 1: 0.6}, {1: 0.7, 2: 0.9})
    assert one["seeds"] == [1] and one["n"] == 1 and one["mean"] == pytest.approx(0.1)
    assert one["std"] is None and one["ci95_low"] is None
    none = paired_difference({0: 0.5}, {1: 0.7})
    assert none["n"] == 0 and none["mean"] is None and none["seeds"] == []
