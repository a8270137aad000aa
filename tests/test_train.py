"""Training: the step learns, the padded last batch is exact, epochs are deterministic per seed."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.errors import TrainingError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.train import (
    Batch,
    TrainSpec,
    create_train_state,
    epoch_batches,
    epoch_plan,
    init_train_state,
    train_epoch_jit,
    train_step,
    train_step_jit,
)


def synthetic_data(num_train=600, num_test=200, seed=0) -> DeviceData:
    """Labels from a fixed random linear teacher: learnable, tiny, no files."""
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(784, 10))
    images = rng.uniform(size=(num_train + num_test, 784)).astype(np.float32)
    labels = np.argmax(images @ teacher, axis=1).astype(np.int32)
    train, test = (images[:num_train], labels[:num_train]), (images[num_train:], labels[num_train:])
    return DeviceData(*jax.device_put([*train, *test, *test]), num_classes=10)


def leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


SPEC = TrainSpec(batch_size=64)


@pytest.mark.slow
def test_train_steps_lower_the_loss_on_a_fixed_batch():
    data = synthetic_data()
    state = init_train_state(SPEC, 0)
    batch = Batch(data.train_images[:64], data.train_labels[:64], jnp.ones(64))
    state, first = train_step_jit(SPEC, state, batch)
    for _ in range(20):
        state, last = train_step_jit(SPEC, state, batch)
    assert float(last["loss"]) < 0.5 * float(first["loss"])
    assert int(state.step) == 21


@pytest.mark.slow
def test_padded_last_batch_takes_the_same_step_as_the_unpadded_batch():
    data = synthetic_data()
    # Plain SGD with step 1 makes the update the gradient itself (Adam's first step, ~lr * sign(g),
    # would amplify rounding in near-zero gradients); no dropout, since masks depend on the shape.
    spec = TrainSpec(batch_size=64, tx=optax.sgd(1.0))
    state = init_train_state(spec, 0, dropout_rate=0.0)
    images, labels = data.train_images[:24], data.train_labels[:24]
    padded = Batch(
        jnp.concatenate([images, jnp.zeros((40, 784))]),
        jnp.concatenate([labels, jnp.zeros(40, jnp.int32)]),
        jnp.concatenate([jnp.ones(24), jnp.zeros(40)]),
    )
    step = jax.jit(train_step, static_argnums=0)  # not train_step_jit: `state` is used again
    after_padded, m_padded = step(spec, state, padded)
    after_plain, m_plain = step(spec, state, Batch(images, labels, jnp.ones(24)))
    for before, x, y in zip(
        jax.tree_util.tree_leaves(state.params),
        jax.tree_util.tree_leaves(after_padded.params),
        jax.tree_util.tree_leaves(after_plain.params),
    ):
        np.testing.assert_allclose(x - before, y - before, rtol=1e-5, atol=5e-8)
    np.testing.assert_allclose(m_padded["loss"], m_plain["loss"], rtol=1e-5)
    assert float(m_padded["count"]) == 24


def test_epoch_batches_visit_every_example_once_and_pad_the_last_batch():
    order, weights = epoch_batches(jax.random.key(0), 1000, 512)
    assert order.shape == weights.shape == (2, 512)
    real = np.asarray(order)[np.asarray(weights) == 1]
    assert sorted(real.tolist()) == list(range(1000))
    assert np.asarray(weights)[1, 1000 - 512 :].sum() == 0


def test_epoch_order_depends_on_the_key():
    a, _ = epoch_batches(jax.random.key(0), 1000, 100)
    b, _ = epoch_batches(jax.random.key(1), 1000, 100)
    assert not np.array_equal(a, b)


def test_each_epoch_draws_a_new_order_from_the_runs_key():
    state = init_train_state(SPEC, 0)
    first, _ = epoch_plan(state, 1000, 100)
    again, _ = epoch_plan(state, 1000, 100)
    second, _ = epoch_plan(state.replace(epoch=state.epoch + 1), 1000, 100)
    other_seed, _ = epoch_plan(init_train_state(SPEC, 1), 1000, 100)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, other_seed)


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_parameters_and_metrics():
    data = synthetic_data()
    runs = []
    for _ in range(2):
        state = init_train_state(SPEC, 3)
        for _ in range(2):
            state, metrics = train_epoch_jit(SPEC, state, data.train_images, data.train_labels)
        runs.append((jax.device_get(state), jax.device_get(metrics)))
    assert leaves_equal(runs[0], runs[1])


def test_different_seeds_give_different_parameters():
    a, b = init_train_state(SPEC, 0), init_train_state(SPEC, 1)
    assert not np.array_equal(a.params["Dense_0"]["kernel"], b.params["Dense_0"]["kernel"])


def test_learning_rate_lives_in_the_state():
    state = init_train_state(SPEC, 0, learning_rate=3e-3)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(3e-3)


@pytest.mark.slow
def test_a_custom_optax_transformation_can_be_passed():
    data = synthetic_data()
    spec = TrainSpec(batch_size=64, tx=optax.sgd(0.1))
    state = init_train_state(spec, 0)
    state, metrics = train_epoch_jit(spec, state, data.train_images, data.train_labels)
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 10


@pytest.mark.slow
def test_fit_records_history_and_calls_callbacks_each_epoch():
    config = TrainConfig(epochs=3, batch_size=64)
    seen = []
    result = fit(
        config, synthetic_data(), callbacks=[lambda s, r, h: seen.append((int(s.epoch), r))]
    )
    assert [e for e, _ in seen] == [1, 2, 3]
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "train_grad_norm",
        "train_param_norm",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
    }
    assert all(r["train_grad_norm"] > 0 for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.compile_seconds > 0


@pytest.mark.slow
def test_fit_in_two_parts_equals_fit_in_one_bitwise():
    """The basis of resuming: the state alone decides what the next epochs compute."""
    data = synthetic_data()
    whole = fit(TrainConfig(epochs=3, batch_size=64), data)
    first = fit(TrainConfig(epochs=1, batch_size=64), data)
    rest = fit(TrainConfig(epochs=3, batch_size=64), data, state=first.state, history=first.history)
    assert leaves_equal(jax.device_get(whole.state), jax.device_get(rest.state))
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(whole.history) == strip(rest.history)


@pytest.mark.slow
def test_fit_stops_with_a_clear_error_when_the_loss_is_not_finite():
    data = synthetic_data()
    poisoned = data._replace(train_images=data.train_images.at[0, 0].set(np.nan))
    called = []
    with pytest.raises(TrainingError, match="diverged at epoch 1"):
        fit(TrainConfig(epochs=2, batch_size=64), poisoned, callbacks=[lambda *a: called.append(1)])
    assert called == []


def test_create_train_state_uses_the_configs_seed_and_hyperparameters():
    config = TrainConfig(seed=7, learning_rate=2e-3, dropout_rate=0.1)
    state = create_train_state(config)
    assert leaves_equal(state.params, init_train_state(TrainSpec(), 7).params)
    assert float(state.dropout_rate) == pytest.approx(0.1)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(2e-3)


def test_holdout_validation_trains_on_the_rest_and_validates_on_the_last_examples():
    from mnist_jax.data import Dataset
    from mnist_jax.fit import to_device

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 100).astype(np.uint8)
    dataset = Dataset(
        "toy", images, labels, images[:20], labels[:20], 10, "f", "mem", tuple("0123456789")
    )
    data = to_device(dataset, TrainConfig(validation="holdout", validation_size=30))
    assert data.train_images.shape == (70, 16) and data.val_images.shape == (30, 16)
    np.testing.assert_array_equal(data.val_labels, labels[70:])
    np.testing.assert_allclose(data.val_images, images[70:].reshape(30, 16) / np.float32(255))
    assert data.test_images.shape == (20, 16)
