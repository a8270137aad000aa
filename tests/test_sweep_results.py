"""Per-configuration views of sweep results (`mnist_jax.sweep.results`), on hand-made MemberResults:
labels, per-seed values, learning-curve arrays and paired differences; diverged members left out."""

import math

import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.sweep import (
    Member,
    MemberResult,
    config_label,
    config_labels,
    curves_by_config,
    paired_difference,
    summarize,
    values_by_config,
)
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS

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
        return MemberResult(Member.from_key(seed, key), history, diverged_epoch=len(history))
    return MemberResult(
        Member.from_key(seed, key),
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
    # A mapping of some fields names a configuration too, the others at their defaults.
    assert config_label({"learning_rate": 0.01, "dropout_rate": 0.0, "hidden_sizes": [64]}) == (
        "lr=0.01 dropout=0 hidden=64"
    )


def key(lr=1e-3, dropout=0.25, hidden=(128, 128), model="mlp", **recipe):
    return Member(0, lr, dropout, hidden, model, **recipe).config_key


def raw_key(**values):
    """A configuration key as a tuple, unvalidated (a Member would refuse some of these)."""
    return tuple(
        values.get(f, TrainConfig.__dataclass_fields__[f].default) for f in CONFIG_KEY_FIELDS
    )


def test_config_labels_name_only_the_field_that_varies():
    assert config_labels([BASE, FAST]) == {BASE: "lr=0.001", FAST: "lr=0.003"}
    dropouts = [key(dropout=d) for d in (0.0, 0.25, 0.5)]
    assert list(config_labels(dropouts).values()) == ["dropout=0", "dropout=0.25", "dropout=0.5"]
    two = config_labels([key(lr=3e-3, hidden=(64,)), key(hidden=(256, 256))])
    assert list(two.values()) == ["lr=0.003 hidden=64", "lr=0.001 hidden=256,256"]


def test_config_labels_name_the_mlp_when_the_model_varies_without_its_hidden_sizes_elsewhere():
    assert list(config_labels([key(), key(model="cnn")]).values()) == ["mlp", "cnn"]
    mixed = config_labels([key(hidden=(64,)), key(model="cnn"), key()])
    assert list(mixed.values()) == ["mlp hidden=64", "cnn", "mlp hidden=128,128"]
    # the CNN's (default) hidden sizes differ from the MLP's but mean nothing there
    assert list(config_labels([key(hidden=(64,)), key(model="cnn")]).values()) == [
        "mlp hidden=64",
        "cnn",
    ]


def test_config_labels_name_a_recipe_value_only_where_it_does_something():
    sgd = key(model="cnn", optimizer="sgd", momentum=0.8, schedule="warmup-cosine", warmup_epochs=1)
    assert list(config_labels([sgd, key(model="cnn")]).values()) == [
        "sgd warmup-cosine momentum=0.8 warmup=1",
        "adam constant",
    ]
    # sgd's default momentum is not named against adam, as in config_label
    assert list(config_labels([key(optimizer="sgd"), key()]).values()) == ["sgd", "adam"]
    momenta = [key(optimizer="sgd", momentum=m) for m in (0.8, 0.9)]
    assert list(config_labels(momenta).values()) == ["momentum=0.8", "momentum=0.9"]
    decays = [key(optimizer="sgd"), key(optimizer="adamw", weight_decay=1e-4)]
    assert list(config_labels(decays).values()) == ["sgd wd=0", "adamw wd=0.0001"]


def test_config_labels_of_one_configuration_is_its_full_label():
    assert config_labels([BASE]) == {BASE: config_label(BASE)}
    assert config_labels([BASE, BASE]) == {BASE: "lr=0.001 dropout=0.25 hidden=128,128"}
    cnn = key(model="cnn", optimizer="sgd", momentum=0.8)
    assert config_labels([cnn]) == {cnn: "cnn sgd lr=0.001 momentum=0.8 dropout=0.25"}
    assert config_labels([]) == {}


def test_config_labels_keep_the_order_of_the_keys_once_each():
    keys = [FAST, BASE, key(lr=1e-2), BASE, FAST]
    labels = config_labels(keys)
    assert list(labels) == [FAST, BASE, key(lr=1e-2)]
    assert list(labels.values()) == ["lr=0.003", "lr=0.001", "lr=0.01"]


def test_config_labels_are_distinct_for_distinct_keys_even_where_short_ones_collide():
    # hidden sizes do nothing for the CNN, but these hand-made keys differ only there
    fields = {"learning_rate": 1e-3, "dropout_rate": 0.25, "model": "cnn"}
    cnns = [raw_key(**fields, hidden_sizes=(64,)), raw_key(**fields, hidden_sizes=(32,))]
    assert list(config_labels(cnns).values()) == ["hidden=64", "hidden=32"]
    # `:g` keeps six digits: the full precision tells these apart
    close = [key(lr=1e-3), key(lr=1.0000001e-3)]
    assert list(config_labels(close).values()) == ["lr=0.001", "lr=0.0010000001"]
    grid = [
        key(lr=lr, dropout=d, hidden=h, model=m)
        for m in ("mlp", "cnn")
        for h in ((64,), (128, 128))
        for lr in (1e-3, 3e-3)
        for d in (0.0, 0.5)
        if m == "mlp" or h == (128, 128)
    ]
    labels = config_labels(grid)
    assert len(set(labels.values())) == len(grid) == 12
    assert labels[key(model="cnn", lr=3e-3, dropout=0.5)] == "cnn lr=0.003 dropout=0.5"
    assert labels[key(hidden=(64,), dropout=0.0)] == "mlp lr=0.001 dropout=0 hidden=64"


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


def test_curves_by_config_pads_a_member_that_stopped_early_with_nan():
    curves = curves_by_config([result(0, BASE, [0.9], 0.9), result(1, BASE, [0.9, 0.95], 0.95)])
    np.testing.assert_array_equal(curves[BASE], [[0.9, np.nan], [0.9, 0.95]])


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
