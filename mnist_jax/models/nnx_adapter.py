"""A `flax.nnx` module as a model. Training keeps parameters as a plain pytree, so the adapter
takes the module's `nnx.Param` state as a pure dict at init, and at each call rebuilds the module
inside the traced function and puts the parameters into it (its own initialisation is dead code
that XLA removes).

Not supported, and refused rather than trained differently: variables other than `nnx.Param`
(RNG state aside), which would not be carried between steps; a traced dropout rate (`nnx.Dropout`
keeps its own, so a sweep over dropout rates refuses the model).
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
    """`make(rngs)` builds the module (e.g. `lambda rngs: MyNet(rngs=rngs)`), called as `module(x)`
    for logits, `train()`/`eval()` switching its dropout, which draws from the "dropout" (or
    "default") stream, seeded from the train state's dropout key. On CPUs its `nnx.Conv` layers
    compute as slices and a matmul (`conv_matmul`) unless `cpu_conv_as_matmul=False`."""

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
