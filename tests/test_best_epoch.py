"""Best-epoch tracking and early stopping inside the compiled programs: selection and patience on
a hand-made validation sequence, masked updates, sweeps whose members stop apart, and resume
mid-patience."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_bitwise_equal, teacher_data

from mnist_jax.checkpoint import RunCheckpointer, restore_checkpoint
from mnist_jax.config import TrainConfig
from mnist_jax.fit import DeviceData, fit
from mnist_jax.sweep import Member, run_sweep
from mnist_jax.train import TrainSpec, create_train_state, track_best, train_epoch

CONFIG = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=8, eval_batch_size=64)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return teacher_data(seed=1)


def test_the_best_parameters_and_patience_follow_a_hand_made_validation_sequence():
    state = create_train_state(CONFIG, TrainSpec.from_config(CONFIG), 160)
    accuracies = [0.50, 0.60, 0.55, 0.60, 0.58, 0.70]  # best at 2; 3 and 4 do not improve
    expected = [  # (best epoch, stale epochs, stopped) after each epoch, patience 3
        (1, 0, False),
        (2, 0, False),
        (2, 1, False),
        (2, 2, False),  # equal is not better
        (2, 3, True),
        (2, 3, True),  # stopped: 0.70 comes too late and changes nothing
    ]
    for epoch, (accuracy, (best, stale, stopped)) in enumerate(zip(accuracies, expected), 1):
        marked = jax.tree.map(lambda p, e=epoch: jnp.full_like(p, e), state.params)
        state = state.replace(params=marked, epoch=jnp.int32(epoch))
        state = jax.jit(track_best, static_argnums=2)(state, jnp.float32(accuracy), 3)
        assert (int(state.best_epoch), int(state.stale_epochs), bool(state.stopped)) == (
            best,
            stale,
            stopped,
        )
    assert float(state.best_accuracy) == np.float32(0.60)
    assert all(np.all(np.asarray(p) == 2) for p in jax.tree.leaves(state.best_params))


def test_without_patience_nothing_stops_and_the_best_is_still_kept():
    state = create_train_state(CONFIG, TrainSpec.from_config(CONFIG), 160)
    for epoch, accuracy in enumerate([0.5, 0.4, 0.3, 0.2], 1):
        state = track_best(state.replace(epoch=jnp.int32(epoch)), jnp.float32(accuracy), 0)
    assert (int(state.best_epoch), bool(state.stopped)) == (1, False)


@pytest.mark.slow
def test_a_stopped_state_is_left_as_it_is_by_an_epoch(data):
    spec = TrainSpec.from_config(CONFIG)
    state = create_train_state(CONFIG, spec, 160).replace(stopped=jnp.bool_(True))
    after, metrics = jax.jit(train_epoch, static_argnums=0)(
        spec, state, data.train_images, data.train_labels
    )
    assert_bitwise_equal(after, state)
    # It did not train (a branch not taken): it has no loss or accuracy for the epoch.
    assert np.isnan(float(metrics["loss"])) and np.isnan(float(metrics["accuracy"]))


@pytest.mark.slow
def test_a_member_stopped_before_the_epoch_is_not_validated_and_the_others_are_as_alone(data):
    """Members taken one at a time: a stopped member's validation is a branch not taken (NaN
    metrics, its state unchanged); the other's equals its single run's validation bitwise."""
    from mnist_jax.sweep.program import init_members, member_mesh, validate_program
    from mnist_jax.train import validate_epoch

    spec = TrainSpec.from_config(CONFIG)
    mesh = member_mesh(jax.devices()[:1])
    members = [Member(0, 1e-3, 0.25, (16,)), Member(1, 1e-3, 0.25, (16,))]
    state = init_members(spec, members, mesh=mesh, base=CONFIG, train_examples=160)
    state = state.replace(stopped=jnp.asarray([True, False]))
    before = jax.device_get(state)
    program = validate_program(spec, mesh, CONFIG.eval_batch_size, 1)
    after, metrics = program(state, data.val_images, data.val_labels)
    after, metrics = jax.device_get((after, metrics))
    assert_bitwise_equal(jax.tree.map(lambda a: a[0], after), jax.tree.map(lambda a: a[0], before))
    assert np.isnan(metrics["loss"][0]) and np.isnan(metrics["accuracy"][0])
    assert metrics["stopped"].tolist() == [True, False]
    alone = jax.tree.map(lambda a: a[1], before)
    single = jax.jit(validate_epoch, static_argnums=(0, 4))(
        spec, alone, data.val_images, data.val_labels, CONFIG.eval_batch_size
    )
    assert_bitwise_equal(
        (jax.tree.map(lambda a: a[1], after), {k: v[1] for k, v in metrics.items()}), single
    )


@pytest.mark.slow
def test_patience_stops_a_run_and_its_best_epoch_is_reported(data):
    config = CONFIG.replace(patience=1, learning_rate=3e-2)
    result = fit(config, data)
    state, history = result.state, result.history
    assert bool(state.stopped) and len(history) < config.epochs
    accuracies = [r["val_accuracy"] for r in history]
    assert int(state.best_epoch) == 1 + int(np.argmax(accuracies))  # the first of the maxima
    assert float(state.best_accuracy) == np.float32(max(accuracies))


@pytest.mark.slow
@pytest.mark.parametrize("members_per_step", [1, 2, None])  # one at a time (a branch), or vmapped
def test_sweep_members_stop_apart_each_equal_to_its_single_run(data, members_per_step):
    config = CONFIG.replace(patience=1)
    members = [Member(0, 3e-2, 0.25, (16,)), Member(1, 1e-3, 0.25, (16,))]
    result = run_sweep(config, members, data, members_per_step=members_per_step)
    lengths = [len(r.history) for r in result.members]
    for r in result.members:
        single = fit(r.member.config(config), data)
        if members_per_step == 1:  # vmapped matmuls round differently from the single run's
            assert_bitwise_equal(r.state, single.state)
        assert len(r.history) == len(single.history)
        assert r.best["best_epoch"] == int(single.state.best_epoch)
        assert r.best["stopped_early"] == (len(r.history) < config.epochs)
        assert int(r.state.epoch) == len(r.history)  # a stopped member's state stays as it was
    assert len(set(lengths)) == 2  # one stopped before the other
    rows = result.summary()
    assert {"best_test_accuracy", "best_epoch"} <= set(rows[0])


@pytest.mark.slow
def test_a_run_resumed_mid_patience_ends_bitwise_where_the_uninterrupted_run_does(data, tmp_path):
    config = CONFIG.replace(patience=2, learning_rate=1e-2)
    with RunCheckpointer(tmp_path, config, keep_latest=20) as checkpoints:
        whole = fit(config, data, callbacks=[checkpoints])
    template = create_train_state(config, TrainSpec.from_config(config), 160)
    restored = [
        restore_checkpoint(tmp_path, template, epoch) for epoch in range(1, len(whole.history))
    ]
    middle = [(s, i) for s, i in restored if int(s.stale_epochs) >= 1]  # mid-patience
    assert middle, "no checkpoint between an improvement and the stop"
    state, info = middle[0]
    resumed = fit(config, data, state=state, history=info["history"])
    assert_bitwise_equal(resumed.state, whole.state)

    def without_seconds(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert without_seconds(resumed.history) == without_seconds(whole.history)
