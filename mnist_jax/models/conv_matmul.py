"""Convolutions as shifted slices and one matmul, for CPUs: the built-in CNN's layers and, without
changing the module, a user's `nn.Conv`/`nnx.Conv` layers.

XLA:CPU runs a convolution inside a loop (the epoch's `lax.scan`) about 20 times slower than
outside one (jax-ml/jax#12868); the same maths as slices concatenated along the channels and one
matmul runs at matmul speed there. `conv_general_dilated` is a drop-in for lax's that computes
the cases it can exactly (channels-last, no input dilation, one feature group) and hands on the
others; `intercept_linen_conv` and `patch_nnx_convs` give it to flax's layers as their setting,
everything else (parameters, padding modes, mask, dtypes) staying flax's own code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def conv_as_matmul(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    kernel_dilation: Sequence[int],
    precision: Any = None,
) -> jax.Array:
    """`lax.conv_general_dilated`'s cross-correlation of channels-last `x` (..., *spatial, C) with
    `kernel` (*window, C, F), one feature group, no input dilation; padding "SAME", "VALID" or
    non-negative (low, high) pairs."""
    window = kernel.shape[:-2]
    spatial = x.shape[-len(window) - 1 : -1]
    dilated = [(k - 1) * d + 1 for k, d in zip(window, kernel_dilation)]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(spatial, dilated, strides, padding)
    out = [
        (n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(spatial, padding, dilated, strides)
    ]
    if min(out) < 1:  # as lax.conv_general_dilated, rather than an empty result
        raise ValueError(f"a convolution window {dilated} larger than its padded input {spatial}")
    lead = x.ndim - len(window) - 1
    x = jnp.pad(x, [(0, 0)] * lead + [tuple(p) for p in padding] + [(0, 0)])

    def tap(offset):  # what the kernel's tap at `offset` sees at each output position
        start = [i * d for i, d in zip(offset, kernel_dilation)]
        limit = [b + (m - 1) * s + 1 for b, m, s in zip(start, out, strides)]
        ones = (1,) * lead
        return lax.slice(
            x,
            (0,) * lead + (*start, 0),
            (*x.shape[:lead], *limit, x.shape[-1]),
            (*ones, *strides, 1),
        )

    # (..., *out, prod(window) * C), ordered as the kernel's (*window, C) axes
    patches = jnp.concatenate([tap(o) for o in itertools.product(*map(range, window))], axis=-1)
    return jnp.matmul(patches, kernel.reshape(-1, kernel.shape[-1]), precision=precision)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **rest,
):
    """`lax.conv_general_dilated`, as `conv_as_matmul` where that computes the same."""
    n = lhs.ndim - 2
    spec = (0, n + 1, *range(1, n + 1))  # channels-last: flax's layers' (NHWC, HWIO, NHWC)
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if (
        n >= 1
        and tuple(numbers) == (spec, (n + 1, n, *range(n)), spec)
        and tuple(lhs_dilation or (1,) * n) == (1,) * n
        and feature_group_count == 1
        # no preferred_element_type, sharding or batch groups
        and all(v is None or (k, v) == ("batch_group_count", 1) for k, v in rest.items())
        and (
            padding in ("SAME", "VALID")
            if isinstance(padding, str)
            else min(map(min, padding)) >= 0
        )
    ):
        return conv_as_matmul(
            lhs, rhs, window_strides, padding, rhs_dilation or (1,) * n, precision
        )
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        precision=precision,
        **rest,
    )


def intercept_linen_conv(next_fun, args, kwargs, context):
    """An `nn.intercept_methods` interceptor: `nn.Conv` layers that use lax's convolution run
    their own `__call__` with `conv_general_dilated` instead (through its `conv_general_dilated`
    setting, set for this call only; a layer given its own function keeps it)."""
    module = context.module
    if not (
        isinstance(module, nn.Conv)
        and context.method_name == "__call__"
        # flax marks the setting deprecated: where a later flax drops it, lax's convolution runs
        and getattr(module, "conv_general_dilated", False) is None
        and getattr(module, "conv_general_dilated_cls", None) is None
    ):
        return next_fun(*args, **kwargs)
    object.__setattr__(module, "conv_general_dilated", conv_general_dilated)  # modules are frozen
    try:
        return next_fun(*args, **kwargs)
    finally:
        object.__setattr__(module, "conv_general_dilated", None)


def patch_nnx_convs(module: Any) -> None:
    """Gives the `nnx.Conv` layers of `module` that use lax's convolution `conv_general_dilated`
    (an attribute of each layer); a layer given its own function keeps it."""
    from flax import nnx  # NNX is imported only by those who use it

    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Conv) and node.conv_general_dilated is lax.conv_general_dilated:
            node.conv_general_dilated = conv_general_dilated
