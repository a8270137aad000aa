"""`jax.random`'s bits, uniforms and Bernoulli masks, bit for bit, as one fused kernel on CPU.

On CPU, jax lowers the threefry2x32 hash as a rolled loop of five iterations (to keep compile
time down for huge programs); inside a training step that is a while loop of a dozen small
operations and copies per dropout mask, and it costs more than the step's largest matmul. The
hash written out here is the same arithmetic, unrolled, so XLA fuses it with the counter and the
comparison into one elementwise kernel: the same values, several times faster, and quicker to
compile.

Same values means: for the default `threefry2x32` keys with `jax_threefry_partitionable` on (jax's
default), `random_bits(key, shape)` equals `jax.random.bits(key, shape, uint32)`, `uniform`
equals `jax.random.uniform(key, shape)` and `bernoulli` equals `jax.random.bernoulli`; the tests
check it against the installed jax. Any other key implementation or setting, or more than 2**32
values, falls back to `jax.random` itself, so results never depend on which path ran.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# Threefry-2x32 (Salmon et al. 2011, 20 rounds) as jax's `threefry2x32` computes it.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], x: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The threefry2x32 hash of the counter pairs `x` under `key`, unrolled (elementwise)."""
    schedule = (key[0], key[1], key[0] ^ key[1] ^ _KEY_PARITY)
    x0, x1 = x[0] + schedule[0], x[1] + schedule[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, rotation)
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _is_default_threefry(key: jax.Array) -> bool:
    return (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
    )


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 bits of `shape` from a typed key: `jax.random.bits(key, shape, jnp.uint32)`."""
    shape = tuple(shape)
    if not _is_default_threefry(key) or math.prod(shape) >= 2**32 or key.shape:
        return jax.random.bits(key, shape, jnp.uint32)
    data = jax.random.key_data(key)
    # The counter of each value is its row-major index as a 64-bit number, split in two words;
    # below 2**32 values its high word is zero.
    low = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    high, low = threefry2x32((data[0], data[1]), (jnp.zeros_like(low), low))
    return high ^ low


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 uniform in [0, 1) of `shape`: `jax.random.uniform(key, shape)`."""
    mantissa = random_bits(key, shape) >> np.uint32(32 - 23)
    one = np.float32(1.0).view(np.uint32)
    return jax.lax.bitcast_convert_type(mantissa | one, jnp.float32) - np.float32(1.0)


def bernoulli(key: jax.Array, p: float | jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A boolean mask of `shape`, True with probability `p` (float32, scalar or broadcastable):
    `jax.random.bernoulli(key, p, shape)`."""
    return uniform(key, shape) < jnp.asarray(p, jnp.float32)
