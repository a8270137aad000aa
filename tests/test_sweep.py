"""Sweeps: members, grouping, chunking; vmapped init/training equal the single run's; statistics."""

import math
import warnings

import jax
import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, TrainingError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.memory import member_bytes
from mnist_jax.models import mlp
from mnist_jax.sweep import (
    Member,
    expand_members,
    init_members,
    parse_int_ranges,
    run_sweep,
    summarize,
    summarize_by_config,
)
from mnist_jax.sweep.members import chunk_sizes, group_members, padded_size
from mnist_jax.sweep.plan import plan_programs, plan_sweep
from mnist_jax.sweep.program import members_per_program
from mnist_jax.train import TrainSpec, create_train_state, epoch_plan, init_train_state

SPEC = TrainSpec(mlp((32,)), batch_size=64)
CONFIG = TrainConfig(hidden_sizes=(32,), batch_size=64, epochs=3, eval_batch_size=250)


def synthetic_data(num_train=600, num_test=1000, seed=0) -> DeviceData:
    """Noisy copies of 10 random prototypes: learnable in a few epochs, tiny, no files
    (1 test example = 0.1 point at the default size)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(10, 784))
    labels = rng.integers(0, 10, size=num_train + num_test).astype(np.int32)
    images = (0.3 * prototypes[labels] + rng.normal(size=(labels.size, 784))).astype(np.float32)
    train, test = (images[:num_train], labels[:num_train]), (images[num_train:], labels[num_train:])
    return DeviceData(*jax.device_put([*train, *test, *test]), num_classes=10)


def member_state(stacked, k):
    return jax.tree_util.tree_map(lambda x: x[k], stacked)


def assert_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# Members, groups, ranges --------------------------------------------------------------------------


def test_expand_members_gives_the_grid_with_seeds_innermost():
    members = expand_members([0, 1], [1e-3, 3e-3], [0.25], [(32,), (64, 64)])
    assert len(members) == 8
    assert members[0] == Member(0, 1e-3, 0.25, (32,))
    assert members[1] == Member(1, 1e-3, 0.25, (32,))
    assert members[2] == Member(0, 3e-3, 0.25, (32,))
    assert members[-1] == Member(1, 3e-3, 0.25, (64, 64))


def test_group_members_puts_equal_hidden_sizes_in_one_group():
    groups = group_members(expand_members([0, 1], [1e-3, 3e-3], [0.0, 0.5], [(32,), (64, 64)]))
    # A group's key: the compiled fields' values (model, hidden sizes, optimizer, schedule).
    assert list(groups) == [
        ("mlp", (32,), "adam", "constant"),
        ("mlp", (64, 64), "adam", "constant"),
    ]
    assert all(len(g) == 8 and {m.group_key for m in g} == {k} for k, g in groups.items())


def test_models_form_their_own_groups_and_the_cnn_refuses_hidden_sizes():
    members = expand_members([0, 1], [1e-3], [0.25], [(128, 128)], ["mlp", "cnn"])
    assert [key[:2] for key in group_members(members)] == [("mlp", (128, 128)), ("cnn", (128, 128))]
    with pytest.raises(ConfigError, match="model='cnn'"):
        expand_members([0], [1e-3], [0.25], [(32,)], ["mlp", "cnn"])


@pytest.mark.parametrize(
    "bad",
    [
        dict(seeds=[]),
        dict(seeds=[1, 1]),
        dict(dropout_rates=[0.1, 0.1000000001]),  # one float32: the same members twice
        dict(learning_rates=[-1.0]),
        dict(dropout_rates=[1.0]),
        dict(hidden_sizes_list=[(0,)]),
    ],
)
def test_expand_members_rejects_empty_repeated_or_invalid_values(bad):
    args = dict(seeds=[0], learning_rates=[1e-3], dropout_rates=[0.25], hidden_sizes_list=[(32,)])
    with pytest.raises(ConfigError):
        expand_members(**{**args, **bad})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0-3,7", [0, 1, 2, 3, 7]),
        ("5", [5]),
        (" 2 - 2 , 9", None),
        ("10-12", [10, 11, 12]),
        ("3,1", [3, 1]),
    ],
)
def test_parse_int_ranges_reads_integers_and_inclusive_ranges(text, expected):
    if expected is None:
        with pytest.raises(ConfigError):
            parse_int_ranges(text)
    else:
        assert parse_int_ranges(text) == expected


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "0-2,1", "1.5"])
def test_parse_int_ranges_rejects_bad_input_with_a_config_error(text):
    with pytest.raises(ConfigError, match="invalid integer list"):
        parse_int_ranges(text)


@pytest.mark.parametrize(
    "members, limit, devices, expected",
    [
        (10, 8, 1, [5, 5]),
        (10, 8, 8, [8, 2]),
        (3, 100, 8, [3]),
        (5, 2, 1, [2, 2, 1]),
        (7, 3, 4, [3, 3, 1]),
    ],
)
def test_chunk_sizes_cut_a_group_evenly_under_the_limit(members, limit, devices, expected):
    assert chunk_sizes(members, limit, devices) == expected


def test_padded_size_is_a_multiple_of_the_devices_with_two_members_each():
    assert [padded_size(n, 1) for n in (1, 2, 3)] == [2, 2, 3]
    assert [padded_size(n, 8) for n in (1, 3, 16, 17)] == [16, 16, 16, 24]
    assert [padded_size(n, 8, members_per_step=2) for n in (1, 17)] == [16, 24]


def test_members_trained_one_per_step_are_padded_only_to_the_devices():
    assert [padded_size(n, 1, members_per_step=1) for n in (1, 2, 3)] == [1, 2, 3]
    assert [padded_size(n, 8, members_per_step=1) for n in (1, 3, 16, 17)] == [8, 8, 16, 24]


# Init and training equal the single run -----------------------------------------------------------


@pytest.mark.slow
def test_vmapped_init_equals_per_seed_init_bitwise():
    members = [
        Member(0, 1e-3, 0.25, (32,)),
        Member(7, 3e-3, 0.0, (32,)),
        Member(123, 1e-2, 0.5, (32,)),
    ]
    stacked = init_members(SPEC, members)
    for k, m in enumerate(members):
        single = init_train_state(SPEC, m.seed, m.learning_rate, m.dropout_rate)
        assert_bitwise_equal(member_state(stacked, k), single)
        assert float(stacked.opt_state.hyperparams["learning_rate"][k]) == np.float32(
            m.learning_rate
        )
        assert float(stacked.dropout_rate[k]) == np.float32(m.dropout_rate)


@pytest.mark.slow
def test_sweep_members_start_from_the_single_runs_state_and_epoch_order():
    members = expand_members([0, 1], [1e-3], [0.25], [(32,)])
    stacked = init_members(SPEC, members)
    order, weights = jax.vmap(epoch_plan, in_axes=(0, None, None))(stacked, 600, 64)
    for k, m in enumerate(members):
        single = create_train_state(m.config(CONFIG), SPEC)  # what `fit` starts from
        assert_bitwise_equal(member_state(stacked, k), single)
        single_order, single_weights = epoch_plan(single, 600, 64)
        np.testing.assert_array_equal(order[k], single_order)
        np.testing.assert_array_equal(weights[k], single_weights)


@pytest.mark.slow
def test_two_member_sweep_matches_two_single_runs_within_a_fifth_of_a_point():
    data = synthetic_data()
    members = expand_members([0, 1], [1e-3], [0.25], [(32,)])
    sweep = run_sweep(CONFIG, members, data)
    for result in sweep.members:
        single = fit(result.member.config(CONFIG), data)
        assert len(result.history) == len(single.history) == CONFIG.epochs
        # Same keys and data order; vmap only changes float rounding (batched matmuls).
        assert abs(result.history[-1]["val_accuracy"] - single.history[-1]["val_accuracy"]) <= 0.002
        assert result.history[-1]["val_loss"] == pytest.approx(
            single.history[-1]["val_loss"], rel=1e-3
        )
        assert int(result.state.step) == int(single.state.step)
        np.testing.assert_array_equal(result.state.key, single.state.key)


@pytest.mark.slow
def test_members_trained_one_per_step_equal_their_single_runs_bitwise():
    """One member per step (the CPU default) runs the single run's unbatched `train_epoch`."""
    data = synthetic_data()
    members = expand_members([0, 1, 2], [1e-3, 3e-3], [0.25], [(32,)])
    sweep = run_sweep(CONFIG, members, data, members_per_step=1)
    for result in sweep.members:
        single = fit(result.member.config(CONFIG), data)
        assert_bitwise_equal(jax.device_get(single.state), result.state)
        strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
        assert strip(result.history) == strip(single.history)


@pytest.mark.slow
def test_an_unpadded_one_member_program_equals_that_member_in_larger_and_padded_ones_bitwise():
    """One member per step: no dummy member (what `fit` trains), and the member computes the same
    alone, padded to two (the plan of older sweeps, which they resume with) or among others."""
    data = synthetic_data(num_test=100)
    config = CONFIG.replace(epochs=2)
    one = expand_members([0], [1e-3], [0.25], [(32,)])
    alone = run_sweep(config, one, data, members_per_step=1)
    assert [p.num_padded for p in alone.programs] == [1]
    padded = plan_sweep(config, one, data, 1)  # the vmapped default pads to two
    assert [p.num_padded for p in padded] == [2]
    others = [
        run_sweep(config, one, data, members_per_step=1, programs=padded),
        run_sweep(
            config, expand_members([0, 1], [1e-3], [0.25], [(32,)]), data, members_per_step=1
        ),
        run_sweep(
            config, expand_members([0, 1, 2], [1e-3], [0.25], [(32,)]), data, members_per_step=1
        ),
    ]
    assert [p.num_padded for p in others[2].programs] == [3]
    member = alone.members[0]
    single = fit(member.member.config(config), data)
    assert_bitwise_equal(jax.device_get(single.state), member.state)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(single.history) == strip(member.history)
    for other in others:
        assert other.members[0].member == member.member
        assert_bitwise_equal(other.members[0].state, member.state)
        np.testing.assert_array_equal(other.members[0].test_logits, member.test_logits)
        assert strip(other.members[0].history) == strip(member.history)


@pytest.mark.slow
def test_members_per_step_does_not_change_which_members_train_together():
    data = synthetic_data()
    members = expand_members([0, 1, 2, 3], [1e-3], [0.25], [(32,)])
    one = run_sweep(CONFIG, members, data, members_per_step=1)
    two = run_sweep(CONFIG, members, data, members_per_step=2)
    everything = run_sweep(CONFIG, members, data, members_per_step=None)
    for a, b, c in zip(one.members, two.members, everything.members):
        assert a.member == b.member == c.member
        for x, y in ((a, b), (a, c)):
            assert abs(x.history[-1]["val_accuracy"] - y.history[-1]["val_accuracy"]) <= 0.002
            np.testing.assert_array_equal(x.state.key, y.state.key)


@pytest.mark.slow
def test_sweep_records_the_same_history_keys_as_fit():
    sweep = run_sweep(
        CONFIG.replace(epochs=1),
        expand_members([0], [1e-3], [0.25], [(32,)]),
        synthetic_data(num_test=100),
    )
    assert list(sweep.members[0].history[0]) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "train_grad_norm",
        "train_param_norm",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
    ]


@pytest.mark.slow
def test_a_small_memory_budget_splits_the_sweep_into_programs_with_unchanged_results():
    data = synthetic_data(num_test=200)
    members = expand_members([0, 1, 2], [1e-3], [0.0, 0.25], [(32,)])
    budget = int(2.5 * member_bytes(SPEC, 600, eval_examples=200, eval_chunk_size=250))
    limit = members_per_program(
        SPEC, 600, budget, num_devices=1, eval_examples=200, eval_chunk_size=250
    )
    assert limit == 2
    split = run_sweep(CONFIG.replace(epochs=2), members, data, members_per_program=limit)
    whole = run_sweep(CONFIG.replace(epochs=2), members, data)
    assert [len(p.members) for p in split.programs] == [2, 2, 2]
    assert len(whole.programs) == 1
    for a, b in zip(split.members, whole.members):
        assert a.member == b.member
        assert_bitwise_equal(a.state, b.state)
        np.testing.assert_array_equal(a.test_logits, b.test_logits)


def test_members_trained_one_at_a_time_count_one_working_set_per_program():
    # Four members of a user's model became two program calls under a CPU's 2 GiB budget, as if
    # each member's whole working set were held at once.
    budget, devices = 2**31, 1
    vmapped = members_per_program(SPEC, 50_000, budget, num_devices=devices)
    one_at_a_time = members_per_program(
        SPEC, 50_000, budget, num_devices=devices, members_per_step=1
    )
    assert vmapped == budget // member_bytes(SPEC, 50_000)
    assert one_at_a_time > 10 * vmapped
    # A working set larger than the budget still leaves half of it to the members' states.
    small = members_per_program(SPEC, 50_000, 1000, num_devices=devices, members_per_step=1)
    assert small == 1
    two_devices = members_per_program(SPEC, 50_000, budget, num_devices=2, members_per_step=1)
    assert two_devices == 2 * one_at_a_time


def test_each_hidden_size_gets_its_own_program():
    programs = plan_programs(expand_members([0, 1], [1e-3], [0.25], [(32,), (16, 16)]), 100, 1)
    assert [(p.model, p.hidden_sizes, len(p.members), p.num_padded) for p in programs] == [
        ("mlp", (32,), 2, 2),
        ("mlp", (16, 16), 2, 2),
    ]


@pytest.mark.slow
def test_callbacks_see_each_epochs_stacked_state_and_records():
    seen = []
    members = expand_members([0, 1, 2], [1e-3], [0.25], [(32,)])
    run_sweep(
        CONFIG.replace(epochs=2),
        members,
        synthetic_data(num_test=100),
        callbacks=[
            lambda program, state, records, histories: seen.append(
                (
                    program.members,
                    state.epoch.tolist(),
                    [r["epoch"] for r in records],
                    [len(h) for h in histories],
                )
            )
        ],
    )
    assert seen == [
        (tuple(members), [1, 1, 1], [1, 1, 1], [1, 1, 1]),
        (tuple(members), [2, 2, 2], [2, 2, 2], [2, 2, 2]),
    ]


@pytest.mark.slow
def test_a_diverged_member_is_marked_and_left_out_of_the_statistics():
    members = [
        Member(0, 1e-3, 0.25, (32,)),
        Member(1, 1e-3, 0.25, (32,)),
        Member(0, 1e30, 0.25, (32,)),
    ]
    sweep = run_sweep(CONFIG.replace(epochs=2), members, synthetic_data(num_test=100))
    good, bad = sweep.members[:2], sweep.members[2]
    assert bad.diverged_epoch == 1 and len(bad.history) == 1 and bad.test is None
    assert all(r.diverged_epoch is None and r.test is not None for r in good)
    rows = {row["learning_rate"]: row for row in sweep.summary()}
    assert rows[1e30]["diverged"] == [0] and rows[1e30]["test_accuracy"]["n"] == 0
    assert rows[1e-3]["test_accuracy"]["n"] == 2 and rows[1e-3]["ensemble_size"] == 2


@pytest.mark.slow
def test_raise_on_divergence_names_the_member():
    members = [Member(0, 1e-3, 0.25, (32,)), Member(3, 1e30, 0.25, (32,))]
    with pytest.raises(TrainingError, match=r"seed=3.*diverged at epoch 1"):
        run_sweep(
            CONFIG.replace(epochs=1),
            members,
            synthetic_data(num_test=100),
            raise_on_divergence=True,
        )


@pytest.mark.slow
def test_ensemble_accuracy_is_that_of_the_mean_softmax_probabilities():
    data = synthetic_data(num_test=300)
    sweep = run_sweep(
        CONFIG.replace(epochs=1), expand_members([0, 1, 2], [1e-3], [0.25], [(32,)]), data
    )
    probabilities = np.mean([jax.nn.softmax(r.test_logits) for r in sweep.members], axis=0)
    expected = float(np.mean(np.argmax(probabilities, -1) == np.asarray(data.test_labels)))
    (ensemble,) = sweep.ensembles.values()
    assert ensemble["ensemble_accuracy"] == pytest.approx(expected)
    assert ensemble["ensemble_size"] == 3


# Statistics ---------------------------------------------------------------------------------------


def test_summarize_matches_a_hand_computed_t_interval():
    s = summarize([0.97, 0.98, 0.99])
    # mean 0.98, sample std 0.01, t(0.975, df=2) = 4.302653, half-width = 4.302653 * 0.01 / sqrt(3).
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.98)
    assert s["std"] == pytest.approx(0.01)
    assert s["ci95_low"] == pytest.approx(0.98 - half) and s["ci95_high"] == pytest.approx(
        0.98 + half
    )
    assert (s["min"], s["max"]) == (pytest.approx(0.97), pytest.approx(0.99))


def test_summarize_leaves_the_spread_of_one_value_undefined():
    assert summarize([0.5]) == {
        "mean": 0.5,
        "std": None,
        "ci95_low": None,
        "ci95_high": None,
        "min": 0.5,
        "max": 0.5,
        "n": 1,
    }


def test_summarize_by_config_has_one_row_per_configuration_over_seeds():
    class Fake:
        def __init__(self, member, accuracy):
            self.member, self.diverged_epoch, self.accuracy = member, None, accuracy

        def metrics(self):
            return {"test_accuracy": self.accuracy}

    results = [
        Fake(Member(s, lr, 0.25, (32,)), acc)
        for lr, accs in ((1e-3, [0.97, 0.98, 0.99]), (3e-3, [0.5, 0.7]))
        for s, acc in enumerate(accs)
    ]
    rows = summarize_by_config(results, metrics=("test_accuracy",))
    assert [(r["learning_rate"], r["seeds"]) for r in rows] == [(1e-3, [0, 1, 2]), (3e-3, [0, 1])]
    assert rows[0]["test_accuracy"] == summarize([0.97, 0.98, 0.99])
    assert rows[1]["test_accuracy"]["mean"] == pytest.approx(0.6)


# Multi-process start-up ---------------------------------------------------------------------------


def test_the_grid_takes_compiled_fields_outermost_a_model_then_its_settings():
    members = expand_members(
        [0], hidden_sizes_list=[(64,), (128,)], optimizer=["adam", "sgd"], schedule=["constant"]
    )
    assert [(m.hidden_sizes, m.optimizer) for m in members] == [
        ((64,), "adam"),
        ((64,), "sgd"),
        ((128,), "adam"),
        ((128,), "sgd"),
    ]


def test_the_schema_marks_compiled_exactly_the_sweep_fields_that_change_the_spec():
    # A sweep field not marked compiled must leave TrainSpec as it is (members differing in it
    # share one program); one marked compiled must change it.
    from mnist_jax.config import COMPILED_SWEEP_FIELDS, SWEEP_FIELDS
    from mnist_jax.train import TrainSpec

    base = TrainConfig(optimizer="sgd", schedule="warmup-cosine", epochs=3)
    changed = {
        "model": "cnn",
        "hidden_sizes": (64,),
        "optimizer": "adamw",
        "schedule": "cosine",
        "learning_rate": 0.3,
        "weight_decay": 1e-3,
        "momentum": 0.5,
        "warmup_epochs": 1.0,
        "final_lr_fraction": 0.1,
        "dropout_rate": 0.5,
        "label_smoothing": 0.1,
        "z_loss": 1e-4,
    }
    assert set(changed) == set(SWEEP_FIELDS)
    for name, value in changed.items():
        other = base.replace(
            **{name: value}, **({"hidden_sizes": (128, 128)} if name == "model" else {})
        )
        differs = TrainSpec.from_config(other) != TrainSpec.from_config(base)
        assert differs == (name in COMPILED_SWEEP_FIELDS), name


def test_expand_members_takes_unlisted_values_from_base_and_run_sweep_warns_of_unused_ones():
    # TrainConfig(learning_rate=3e-3, dropout_rate=0.1) with expand_members(range(1)) trained at
    # 1e-3 and 0.25 without a word.
    config = TrainConfig(learning_rate=3e-3, dropout_rate=0.1, hidden_sizes=(32,))
    (member,) = expand_members(range(1), base=config, weight_decay=[0.0])
    assert (member.learning_rate, member.dropout_rate, member.hidden_sizes) == (3e-3, 0.1, (32,))
    assert expand_members(range(1), base=config, learning_rates=[1e-2])[0].learning_rate == 1e-2
    defaults = expand_members(range(1))
    refused = pytest.raises(ConfigError, match="planned programs")  # no program holds them
    with pytest.warns(UserWarning) as caught, refused:
        run_sweep(config, defaults, synthetic_data(60, 20), programs=[])
    messages = sorted(str(w.message).split(" trains")[0] for w in caught)
    assert messages == [
        "the configuration's dropout_rate=0.1",
        "the configuration's hidden_sizes=(32,)",
        "the configuration's learning_rate=0.003",
    ]
    refused = pytest.raises(ConfigError, match="planned programs")
    with warnings.catch_warnings(), refused:
        warnings.simplefilter("error")  # members that take the configuration's values: silent
        run_sweep(config, [member], synthetic_data(60, 20), programs=[])
