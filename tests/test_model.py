"""The built-in MLP: size, shapes, Keras's initialisers, and dropout only in train mode."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.models import MLP, count_params, dropout, init_params, mlp, param_shapes

MODEL = mlp()


def apply_model(params, x, *, dropout_rate=0.25, dropout_key=None):
    return MODEL.apply(params, x, dropout_rate=dropout_rate, dropout_key=dropout_key)


def test_default_model_has_the_notebooks_118282_parameters():
    assert count_params(init_params(jax.random.key(0))) == 118_282


def test_parameter_shapes_follow_the_hidden_sizes():
    shapes = param_shapes(init_params(jax.random.key(0), hidden_sizes=(64, 32), num_classes=7))
    assert shapes == {
        "Dense_0/kernel": (784, 64),
        "Dense_0/bias": (64,),
        "Dense_1/kernel": (64, 32),
        "Dense_1/bias": (32,),
        "Dense_2/kernel": (32, 7),
        "Dense_2/bias": (7,),
    }


def test_biases_start_at_zero_and_kernels_are_glorot_uniform():
    params = init_params(jax.random.key(1))
    kernel = np.asarray(params["Dense_0"]["kernel"])
    limit = np.sqrt(6.0 / (784 + 128))
    assert np.all(np.asarray(params["Dense_0"]["bias"]) == 0)
    assert np.abs(kernel).max() <= limit
    # A uniform(-limit, limit) sample of 100k values has a std close to limit / sqrt(3).
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.01 * limit


def test_the_models_init_is_init_params_of_its_stream_key():
    key = jax.random.key(4)
    ours = MODEL.init(key, (784,))
    jax.tree.map(np.testing.assert_array_equal, ours, init_params(key))


def test_one_example_and_a_batch_give_the_same_logits():
    params = init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3, 784))
    batch = apply_model(params, x)
    single = jnp.stack([apply_model(params, x[i]) for i in range(3)])
    assert batch.shape == (3, 10)
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_eval_mode_is_deterministic_and_train_mode_drops_units():
    params = init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (8, 784))
    eval_a, eval_b = apply_model(params, x), apply_model(params, x)
    train_a = apply_model(params, x, dropout_key=jax.random.key(2))
    train_b = apply_model(params, x, dropout_key=jax.random.key(3))
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(train_a, eval_a)
    assert not np.allclose(train_a, train_b)


def test_zero_dropout_in_train_mode_equals_eval_mode():
    params = init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (8, 784))
    np.testing.assert_allclose(
        apply_model(params, x, dropout_rate=0.0, dropout_key=jax.random.key(2)),
        apply_model(params, x),
        rtol=1e-6,
    )


@pytest.mark.slow
def test_dropout_matches_flax_linen_dropout_for_the_same_key():
    x = jax.random.normal(jax.random.key(0), (16, 128))
    key = jax.random.key(5)
    ours = dropout(x, 0.25, key)
    theirs = nn.Dropout(rate=0.25, deterministic=False).apply({}, x, rng=key)
    np.testing.assert_array_equal(ours, theirs)


def test_dropout_rate_may_be_traced_so_sweeps_can_vmap_it():
    x = jnp.ones((4, 1000))
    rates = jnp.array([0.1, 0.5])
    out = jax.jit(jax.vmap(lambda r: dropout(x, r, jax.random.key(0))))(rates)
    kept = np.asarray((out != 0).mean(axis=(1, 2)))
    np.testing.assert_allclose(kept, [0.9, 0.5], atol=0.02)


def test_module_is_plain_linen():
    assert isinstance(MLP(), nn.Module)


@pytest.mark.slow
def test_init_params_builds_the_tree_that_linen_init_builds():
    ours = init_params(jax.random.key(0), hidden_sizes=(64, 32), num_classes=7, input_size=20)
    linen = MLP(hidden_sizes=(64, 32), num_classes=7).init(
        jax.random.key(0), jnp.zeros(20), train=False
    )["params"]
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(linen)
    assert jax.tree_util.tree_map(jnp.shape, ours) == jax.tree_util.tree_map(jnp.shape, linen)
    assert jax.tree_util.tree_map(lambda a: a.dtype, ours) == jax.tree_util.tree_map(
        lambda a: a.dtype, linen
    )


def test_every_layers_kernel_spans_its_own_glorot_limit():
    params = init_params(jax.random.key(2))
    for name, (fan_in, fan_out) in {
        "Dense_0": (784, 128),
        "Dense_1": (128, 128),
        "Dense_2": (128, 10),
    }.items():
        kernel = np.asarray(params[name]["kernel"])
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
