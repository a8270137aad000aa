"""A `flax.nnx` module as a model: a thin adapter onto the core's pure functions.

NNX modules hold their parameters as object state; training here keeps parameters as a plain
pytree in the train state (for vmap, sharding and orbax). The adapter builds the module from a
factory, takes its `nnx.Param` state as a pure dict at init, and at each call rebuilds the module
inside the traced function and puts the given parameters into it (`nnx.update`); the module's
own initialisation is then dead code that XLA removes.

Not supported (say so rather than train something else): variables other than `nnx.Param`
(BatchNorm statistics and other mutable state are not carried between steps: the factory is
refused if it makes any, RNG state excepted); a traced dropout rate: `nnx.Dropout` keeps its rate
in the module, so `dropout_rate` of the config or a sweep does not reach it (`takes_dropout_rate`
is False and a sweep over dropout rates refuses the model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mnist_jax.models.base import Model, Params, example_shape, qualified_name
from mnist_jax.models.conv_matmul import patch_nnx_convs


@dataclasses.dataclass(frozen=True)
class NNXModel(Model):
    """`make(rngs)` builds the module (e.g. `lambda rngs: MyNet(rngs=rngs)`); the module is called
    as `module(x)` on a batch and returns logits, with `module.train()`/`module.eval()` switching
    its dropout. Its `nnx.Dropout` layers draw from the "dropout" stream of the `rngs` given to
    `make` (or "default"), which the adapter seeds from the train state's dropout key. On CPUs
    its `nnx.Conv` layers compute as slices and a matmul (`conv_matmul`: the same parameters and
    maths); `cpu_conv_as_matmul=False` keeps lax's convolution."""

    make: Callable[[nnx.Rngs], nnx.Module]
    input_layout: str = "flat"
    label: str | None = None
    cpu_conv_as_matmul: bool = True

    def __post_init__(self) -> None:
        example_shape(self.input_layout, (28, 28))  # validates the layout

    @property
    def takes_dropout_rate(self) -> bool:
        return False

    def _module(self, params_key: jax.Array, dropout_key: jax.Array) -> nnx.Module:
        module = self.make(nnx.Rngs(default=dropout_key, params=params_key, dropout=dropout_key))
        other = nnx.state(module, nnx.Not(nnx.Any(nnx.Param, nnx.RngState)))
        if jax.tree_util.tree_leaves(other):
            raise TypeError(
                f"{self.name} holds variables other than nnx.Param (e.g. BatchNorm statistics); "
                "NNXModel trains modules whose only state is parameters"
            )
        return module

    def init(self, key: jax.Array, example_shape: tuple[int, ...]) -> Params:
        module = self._module(key, key)
        return nnx.to_pure_dict(nnx.state(module, nnx.Param))

    def apply(
        self,
        params: Params,
        x: jax.Array,
        *,
        dropout_rate: float | jax.Array = 0.0,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        train = dropout_key is not None
        unused = jax.random.key(0)
        module = self._module(unused, dropout_key if train else unused)
        if self.cpu_conv_as_matmul and jax.default_backend() == "cpu":
            patch_nnx_convs(module)
        state = nnx.state(module, nnx.Param)
        nnx.replace_by_pure_dict(state, params)
        nnx.update(module, state)
        module.train() if train else module.eval()
        return jnp.asarray(module(x))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.label or qualified_name(self.make),
            "module": qualified_name(self.make),
            "settings": {},
            "input_layout": self.input_layout,
        }
