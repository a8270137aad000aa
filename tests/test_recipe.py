"""Training recipes: optimizers and schedules against optax's own, per-member recipe values in
the optimizer state, sweep members equal to single runs, and resume mid-schedule, bitwise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_bitwise_equal, teacher_data

from experiments import baseline, cli, sweep
from mnist_jax.checkpoint import RunCheckpointer, restore_checkpoint
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.recipe import make_optimizer, schedule_multiplier, set_recipe
from mnist_jax.sweep import Member, expand_members, init_members, run_sweep
from mnist_jax.train import TrainSpec, create_train_state

CONFIG = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=3, eval_batch_size=64)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return teacher_data(seed=0)


# Schedules and optimizers against optax ----------------------------------------------------------


@pytest.mark.parametrize("final", [0.0, 0.1])
def test_cosine_equals_optax_cosine_decay_schedule(final):
    theirs = optax.cosine_decay_schedule(2e-3, decay_steps=40, alpha=final)
    for count in [0, 1, 7, 20, 39, 40, 45]:
        ours = 2e-3 * schedule_multiplier("cosine", count, 0.0, 40.0, final)
        np.testing.assert_allclose(ours, theirs(count), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("warmup, final", [(5, 0.0), (12, 0.25), (0, 0.0)])
def test_warmup_cosine_equals_optax_warmup_cosine_decay_schedule(warmup, final):
    theirs = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup, 50, end_value=1e-2 * final)
    for count in [0, 1, 4, 5, 6, 11, 12, 13, 30, 49, 50, 60]:
        ours = 1e-2 * schedule_multiplier("warmup-cosine", count, warmup, 50.0, final)
        np.testing.assert_allclose(ours, theirs(count), rtol=1e-5, atol=1e-9)


def test_the_constant_schedule_is_one():
    assert float(schedule_multiplier("constant", 123, 0.0, 10.0, 0.0)) == 1.0


def updates_of(tx, steps=4):
    """Updates of `tx` over a few gradient steps on a small fixed problem."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
    state, out = tx.init(params), []
    for k in range(steps):
        grads = jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1)), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


LR = 3e-3


def configured(optimizer, schedule, nesterov=False, **values):
    """`make_optimizer` with learning rate LR and `values` written into its state at init."""
    tx = make_optimizer(optimizer, schedule, epsilon=1e-7, nesterov=nesterov)

    def init(params):
        state = tx.init(params)
        set_recipe(state, LR, values)
        return state

    return optax.GradientTransformation(init, tx.update)


@pytest.mark.slow
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: configured("adamw", "cosine", weight_decay=0.01, decay_steps=4.0),
            lambda: optax.adamw(optax.cosine_decay_schedule(LR, 4), eps=1e-7, weight_decay=0.01),
        ),
        (
            lambda: configured("sgd", "constant", momentum=0.8, nesterov=True),
            lambda: optax.sgd(LR, momentum=0.8, nesterov=True),
        ),
        (
            lambda: configured(
                "sgd", "warmup-cosine", momentum=0.5, warmup_steps=2.0, decay_steps=4.0
            ),
            lambda: optax.sgd(optax.warmup_cosine_decay_schedule(0.0, LR, 2, 4), momentum=0.5),
        ),
        (
            lambda: configured("adam", "cosine", decay_steps=4.0, final_lr_fraction=0.5),
            lambda: optax.adam(optax.cosine_decay_schedule(LR, 4, alpha=0.5), eps=1e-7),
        ),
    ],
    ids=["adamw-cosine", "sgd-nesterov", "sgd-warmup-cosine", "adam-cosine"],
)
def test_optimizers_equal_optax_own(ours, theirs):
    for a, b in zip(updates_of(ours()), updates_of(theirs())):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-9), a, b)


def test_sgd_weight_decay_is_an_l2_term_in_the_gradient():
    ours = configured("sgd", "constant", momentum=0.0, weight_decay=0.1)
    theirs = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(LR))
    for a, b in zip(updates_of(ours), updates_of(theirs)):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


# Per-member values, sweeps and resume ------------------------------------------------------------


def test_weight_decay_momentum_and_schedule_lengths_reach_each_members_optimizer_state():
    config = CONFIG.replace(optimizer="sgd", schedule="warmup-cosine")
    members = expand_members(
        [0],
        [0.1],
        optimizer=["sgd"],
        schedule=["warmup-cosine"],
        weight_decay=[0.0, 1e-3],
        momentum=[0.5, 0.9],
        warmup_epochs=[0.0, 1.5],
    )
    assert len(members) == 8
    spec = TrainSpec.from_config(config)
    stacked = init_members(spec, members, base=config, train_examples=160)
    hyper = stacked.opt_state.hyperparams
    for k, m in enumerate(members):
        assert float(hyper["weight_decay"][k]) == np.float32(m.weight_decay)
        assert float(hyper["momentum"][k]) == np.float32(m.momentum)
        assert float(hyper["warmup_steps"][k]) == np.float32(m.warmup_epochs * 5)  # 160 / 32
        assert float(hyper["decay_steps"][k]) == 15.0


@pytest.mark.slow
def test_a_sweep_member_with_a_recipe_equals_its_single_run_bitwise(data):
    config = CONFIG.replace(optimizer="sgd", schedule="warmup-cosine", nesterov=True)
    members = [
        Member(0, 0.05, 0.25, (16,), optimizer="sgd", schedule="warmup-cosine", momentum=0.8),
        Member(
            1,
            0.1,
            0.0,
            (16,),
            optimizer="sgd",
            schedule="warmup-cosine",
            weight_decay=1e-3,
            warmup_epochs=1.0,
            final_lr_fraction=0.1,
        ),
    ]
    result = run_sweep(config, members, data, members_per_step=1)
    for r in result.members:
        single = fit(r.member.config(config), data)
        assert_bitwise_equal(r.state, single.state)
        assert [h["learning_rate"] for h in r.history] == [
            h["learning_rate"] for h in single.history
        ]


@pytest.mark.slow
def test_the_learning_rate_in_effect_is_recorded_each_epoch(data):
    config = CONFIG.replace(schedule="cosine", learning_rate=1e-2, final_lr_fraction=0.1)
    history = fit(config, data).history
    steps = [5 * e - 1 for e in (1, 2, 3)]  # the last step of each epoch: 160 / 32 steps each
    expected = [1e-2 * float(schedule_multiplier("cosine", s, 0.0, 15.0, 0.1)) for s in steps]
    np.testing.assert_allclose([h["learning_rate"] for h in history], expected, rtol=1e-6)
    assert 1e-3 < history[-1]["learning_rate"] < 1.2e-3  # one step short of the final 10%
    assert fit(CONFIG.replace(epochs=1), data).history[0]["learning_rate"] == pytest.approx(1e-3)


@pytest.mark.slow
def test_a_run_resumed_mid_schedule_ends_bitwise_where_the_uninterrupted_run_does(data, tmp_path):
    config = CONFIG.replace(optimizer="adamw", schedule="warmup-cosine", weight_decay=1e-2)
    config = config.replace(warmup_epochs=1.0, epochs=4)
    with RunCheckpointer(tmp_path, config) as checkpoints:
        whole = fit(config, data, callbacks=[checkpoints])
    template = create_train_state(config, TrainSpec.from_config(config), 160)
    state, info = restore_checkpoint(tmp_path, template, 2)
    resumed = fit(config, data, state=state, history=info["history"])
    assert_bitwise_equal(resumed.state, whole.state)
    assert [h["learning_rate"] for h in resumed.history] == [
        h["learning_rate"] for h in whole.history
    ]


# Configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"weight_decay": 1e-4}, "adam takes no weight decay"),
        ({"momentum": 0.5}, "only sgd has momentum"),
        ({"nesterov": True}, "only sgd has Nesterov"),
        ({"warmup_epochs": 1.0}, "only --schedule warmup-cosine"),
        ({"final_lr_fraction": 0.1}, "only the cosine schedules"),
        ({"optimizer": "sgd", "momentum": 1.0}, r"\[0, 1\)"),
        ({"optimizer": "sgd", "nesterov": True, "momentum": 0.0}, "Nesterov momentum needs"),
        ({"schedule": "warmup-cosine", "warmup_epochs": 3.0, "epochs": 3}, "fewer than"),
        ({"optimizer": "adamw", "weight_decay": -1.0}, ">= 0"),
        ({"optimizer": "lion"}, "adam or adamw or sgd"),
        ({"epochs": 0}, "invalid epochs=0"),
    ],
)
def test_recipe_values_out_of_range_or_without_effect_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_recipe_flags_build_the_config_and_sweep_lists():
    args = baseline.build_parser().parse_args(
        ["--optimizer", "sgd", "--nesterov", "--schedule", "warmup-cosine", "--warmup-epochs", "1"]
    )
    config = cli.config_from_args(args)
    assert (config.optimizer, config.nesterov, config.schedule) == ("sgd", True, "warmup-cosine")
    assert config.warmup_epochs == 1.0
    listed = sweep.build_parser().parse_args(
        ["--optimizer", "adamw", "--weight-decay", "1e-4,1e-3", "--schedule", "constant,cosine"]
    )
    assert listed.weight_decay == [1e-4, 1e-3] and listed.schedule == ["constant", "cosine"]


def test_a_schedule_without_its_length_is_refused_rather_than_decayed_to_zero():
    from mnist_jax.train import init_train_state

    spec = TrainSpec.from_config(CONFIG.replace(schedule="cosine"))
    with pytest.raises(ValueError, match="recipe_values"):
        init_train_state(spec, 0)


def test_adam_epsilon_with_sgd_is_a_config_error():
    with pytest.raises(ConfigError, match="sgd has no epsilon"):
        TrainConfig(optimizer="sgd", adam_epsilon=1e-3)


def test_a_sweep_member_whose_warmup_outlasts_the_run_is_refused_before_any_folder(
    tmp_path, capsys
):
    from experiments.cli import run_main
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=64, num_test=20, shape=(28, 28))
    argv = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--epochs", "2"]
    argv += ["--schedule", "warmup-cosine", "--warmup-epochs", "0,3,1"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(sweep.main, sweep.PROG, [*argv, "--out", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "warmup_epochs=3" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "sweep").exists()


# Label smoothing: a traced hyper-parameter in the train state -------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_is_cross_entropy_against_optax_smoothed_labels(smoothing):
    from mnist_jax.train import weighted_cross_entropy

    logits = jax.random.normal(jax.random.key(0), (6, 10))
    labels = jnp.array([0, 3, 9, 1, 1, 5])
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last row is padding
    targets = optax.smooth_labels(jax.nn.one_hot(labels, 10), smoothing)
    expected = jnp.sum(optax.softmax_cross_entropy(logits, targets)[:5]) / 5
    ours = weighted_cross_entropy(logits, labels, weights, jnp.float32(smoothing))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    if smoothing == 0.0:  # unsmoothed: exactly the loss before label smoothing existed
        plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        assert ours == jnp.sum(plain * weights) / 5


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_label_smoothing_outside_zero_to_one_is_refused(value):
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(label_smoothing=value)


@pytest.mark.slow
def test_sweep_members_differing_in_label_smoothing_equal_their_single_runs_bitwise(data):
    members = expand_members([0], label_smoothing=[0.0, 0.2], hidden_sizes=[(16,)])
    result = run_sweep(CONFIG.replace(epochs=2), members, data, members_per_step=1)
    assert [float(r.state.hyper["label_smoothing"]) for r in result.members] == [
        0.0,
        np.float32(0.2),
    ]
    for r in result.members:
        single = fit(r.member.config(CONFIG.replace(epochs=2)), data)
        assert_bitwise_equal(r.state, single.state)
    # Smoothing changed the training: the two members' parameters differ.
    a, b = (r.state.params for r in result.members)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
