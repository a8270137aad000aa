"""The model boundary: what training needs from a model, and the adapter for `flax.linen` modules.

A model is a hashable value (part of the static `TrainSpec`: equal models share one compiled
program) with `init(key, example_shape)`, fresh parameters as a plain pytree of arrays (for orbax,
`vmap` and sharding); `apply(params, x, dropout_rate=, dropout_key=)`, logits of a batch, in train
mode when given a `dropout_key` (`dropout_rate` is a traced scalar from the train state, so sweeps
vmap over it); `input_layout`, "flat" (B, H*W) or "image" (B, H, W, 1); and `describe()`, its name
and static settings as JSON, recorded in config.json and checkpoints. Nothing outside
`mnist_jax.models` knows what layers a model has.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax import random_bits
from mnist_jax.models.conv_matmul import intercept_linen_conv

Params = Any  # a pytree of arrays, e.g. {"Dense_0": {"kernel", "bias"}, ...}
INPUT_LAYOUTS = ("flat", "image")


def example_shape(layout: str, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one example in `layout`: (H*W,) flat, (H, W, 1) as a one-channel image."""
    if layout == "flat":
        return (math.prod(image_shape),)
    if layout == "image":
        return (*image_shape, 1)
    raise ValueError(f"unknown input layout {layout!r}: expected one of {INPUT_LAYOUTS}")


def dropout(
    x: jax.Array, rate: float | jax.Array, key: jax.Array, broadcast_dims: tuple[int, ...] = ()
) -> jax.Array:
    """`flax.linen.Dropout`'s maths (the same draws for the same key) without its Python branch on
    `rate`, so that a sweep vmaps over members' rates in [0, 1); the mask is
    `jax.random.bernoulli`'s, drawn by `random_bits` (one fused kernel on CPU)."""
    keep_prob = 1.0 - rate
    shape = tuple(1 if d in broadcast_dims else n for d, n in enumerate(x.shape))
    mask = jnp.broadcast_to(random_bits.bernoulli(key, keep_prob, shape), x.shape)
    # The survivors' scale in x's dtype: a bfloat16 model's activations stay bfloat16.
    return jnp.where(mask, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))


def _traced_rate_dropout(next_fun, args, kwargs, context):
    """Runs `nn.Dropout` layers whose rate is an array (a sweep's traced rate, on which flax's
    code branches in Python) with `dropout`, so that a user's module written the documented way
    trains at the train state's rate. Static rates run flax's own code."""
    module = context.module
    if not (
        isinstance(module, nn.Dropout)
        and context.method_name == "__call__"
        and isinstance(module.rate, jax.Array)
    ):
        return next_fun(*args, **kwargs)
    inputs, *rest = args
    given = kwargs.get("deterministic", rest[0] if rest else None)
    if nn.merge_param("deterministic", module.deterministic, given):
        return inputs
    rng = kwargs.get("rng", rest[1] if len(rest) > 1 else None)
    if rng is None:
        rng = module.make_rng(module.rng_collection)
    return dropout(inputs, module.rate, rng, tuple(module.broadcast_dims))


class Model(abc.ABC):
    """What training needs from a model; see the module docstring. Subclasses are frozen
    dataclasses (hashable, compared by value)."""

    input_layout: str

    @abc.abstractmethod
    def init(self, key: jax.Array, example_shape: tuple[int, ...]) -> Params:
        """Fresh parameters from `key` for examples of `example_shape`."""

    @abc.abstractmethod
    def apply(
        self,
        params: Params,
        x: jax.Array,
        *,
        dropout_rate: float | jax.Array = 0.0,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """Logits (B, classes) of a batch `x`; train mode when `dropout_key` is given."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Name and static settings, JSON-ready; equal models describe equally."""

    @property
    def takes_dropout_rate(self) -> bool:
        """Whether `apply` uses `dropout_rate` (else the model's dropout, if any, is its own)."""
        return True

    @property
    def name(self) -> str:
        return self.describe()["name"]

    def example_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        return example_shape(self.input_layout, image_shape)


def qualified_name(obj: Any) -> str:
    """`package.module.Name` of a class or function, or of an instance's class."""
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def _json_value(value: Any) -> Any:
    """A setting as JSON that is the same in every process: functions by their qualified name,
    other objects by their repr without memory addresses."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if callable(value) and hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"{value.__module__}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def module_settings(module: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass module's own fields (not flax's `parent`/`name`), JSON-ready."""
    return {
        f.name: _json_value(getattr(module, f.name))
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name", *skip)
    }


@dataclasses.dataclass(frozen=True)
class LinenModel(Model):
    """A `flax.linen` module as a model, unchanged: called as `module(x, train=...)`, it returns
    logits and has no variables but `params`. Each call sets its field `rate_field`, where it has
    one, to the train state's (traced) dropout rate; without it, its dropout is its own. `label`
    names it in records (default: its class's path). On CPUs its `nn.Conv` layers compute as
    slices and a matmul (`conv_matmul`: 4-7x faster in the epoch's loop, the same maths) unless
    `cpu_conv_as_matmul=False`."""

    module: nn.Module
    input_layout: str = "flat"
    rate_field: str | None = "dropout_rate"
    label: str | None = None
    cpu_conv_as_matmul: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise TypeError(f"LinenModel needs a flax.linen Module, got {type(self.module)}")
        example_shape(self.input_layout, (28, 28))  # validates the layout

    @property
    def takes_dropout_rate(self) -> bool:
        return self.rate_field is not None and self.rate_field in {
            f.name for f in dataclasses.fields(self.module)
        }

    def init(self, key: jax.Array, example_shape: tuple[int, ...]) -> Params:
        dummy = jnp.zeros((1, *example_shape), jnp.float32)
        with self._convs():
            variables = self.module.init({"params": key}, dummy, train=False)
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise TypeError(
                f"{self.name} has variables other than params ({', '.join(extra)}); "
                "LinenModel trains modules whose only variables are params"
            )
        return variables["params"]

    def apply(
        self,
        params: Params,
        x: jax.Array,
        *,
        dropout_rate: float | jax.Array = 0.0,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        with self._convs():
            if dropout_key is None:
                return self.module.apply({"params": params}, x, train=False)
            module = self.module
            if self.takes_dropout_rate:
                module = module.clone(**{self.rate_field: jnp.asarray(dropout_rate, jnp.float32)})
            with nn.intercept_methods(_traced_rate_dropout):
                return module.apply(
                    {"params": params}, x, train=True, rngs={"dropout": dropout_key}
                )

    def _convs(self) -> contextlib.AbstractContextManager:
        if self.cpu_conv_as_matmul and jax.default_backend() == "cpu":
            return nn.intercept_methods(intercept_linen_conv)
        return contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        skip = (self.rate_field,) if self.takes_dropout_rate else ()
        return {
            "name": self.label or qualified_name(self.module),
            "module": qualified_name(self.module),
            "settings": module_settings(self.module, skip),
            "input_layout": self.input_layout,
        }


def count_params(params: Params) -> int:
    """Number of scalar parameters (118,282 for the notebook's MLP)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def param_shapes(params: Params) -> dict[str, tuple[int, ...]]:
    """Layer path -> shape, e.g. {"Dense_0/kernel": (784, 128), ...}, for notebooks."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape) for path, leaf in flat
    }


def describe_text(description: dict[str, Any]) -> str:
    """A model description as one line: `mlp(hidden_sizes=[128, 128], num_classes=10)`."""
    settings = description.get("settings") or {}
    inner = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"{description.get('name')}({inner})"
