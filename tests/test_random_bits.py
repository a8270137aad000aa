"""`mnist_jax.random_bits` draws exactly what `jax.random` draws (the installed jax is the
reference), falls back to it where it cannot, and compiles to one kernel with no loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import random_bits

SHAPES = [(), (1,), (7,), (2, 3, 5), (512, 128), (60_000,)]


def keys():
    for seed in (0, 1, 2**31 + 7):
        yield jax.random.fold_in(jax.random.key(seed), 3)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_bits_uniform_and_bernoulli_equal_jax_random(shape):
    for key in keys():
        np.testing.assert_array_equal(
            random_bits.random_bits(key, shape), jax.random.bits(key, shape, jnp.uint32)
        )
        np.testing.assert_array_equal(
            random_bits.uniform(key, shape), jax.random.uniform(key, shape)
        )
        for p in (0.0, 0.3, 0.75, 1.0, jnp.float32(0.9)):
            np.testing.assert_array_equal(
                random_bits.bernoulli(key, p, shape), jax.random.bernoulli(key, p, shape)
            )


@pytest.mark.slow
def test_equal_under_jit_and_vmap():
    batch = jax.random.split(jax.random.key(5), 4)
    ours = jax.jit(jax.vmap(lambda k: random_bits.bernoulli(k, 0.75, (64, 8))))(batch)
    theirs = jax.vmap(lambda k: jax.random.bernoulli(k, 0.75, (64, 8)))(batch)
    np.testing.assert_array_equal(ours, theirs)


def test_other_key_implementations_fall_back_to_jax_random():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(
        random_bits.random_bits(key, (16,)), jax.random.bits(key, (16,), jnp.uint32)
    )


def test_compiles_without_a_loop():
    """The point of the module: on CPU, jax.random's hash is a while loop; ours is not."""
    hlo = (
        jax.jit(lambda k: random_bits.bernoulli(k, 0.75, (512, 128)))
        .lower(jax.random.key(0))
        .as_text()
    )
    assert "while" not in hlo
