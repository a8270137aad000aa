"""Models: the boundary training sees (`Model`), the built-in MLP and CNN, and adapters for a
user's own `flax.linen` (`LinenModel`) or `flax.nnx` (`NNXModel`) module.

`model_from_config` builds a built-in model from a configuration (`--model mlp|cnn`);
`check_model` traces a model once against the data's shapes, so a model that cannot train here
is one clear error before anything is compiled or written.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mnist_jax.config import MODELS, ModelsOwn, is_model_name
from mnist_jax.errors import ConfigError
from mnist_jax.models.base import (
    INPUT_LAYOUTS,
    LinenModel,
    Model,
    Params,
    count_params,
    describe_text,
    dropout,
    example_shape,
    param_shapes,
)
from mnist_jax.models.cnn import CNN, cnn
from mnist_jax.models.mlp import MLP, MLPModel, init_params, mlp

# The built-in models by the name `TrainConfig.model` gives (`config.MODELS`), each built from the
# configuration and the number of classes.
BUILDERS = {
    "mlp": lambda config, num_classes: mlp(config.hidden_sizes, num_classes),
    "cnn": lambda config, num_classes: cnn(num_classes),
}
BUILTIN_MODELS = MODELS


def model_from_config(config: Any, num_classes: int = 10) -> Model:
    """The model a `TrainConfig` names (`config.model`), for `num_classes` classes: a built-in
    one, or a user's by import name (`package.module:factory`, `models.imported`)."""
    if config.model in BUILDERS:
        return BUILDERS[config.model](config, num_classes)
    if not is_model_name(config.model):
        raise ConfigError(
            f"unknown model {config.model!r}: expected one of {', '.join(BUILTIN_MODELS)}"
        )
    from mnist_jax.models.imported import import_model

    return import_model(config.model, num_classes)


def own_dropout_rate(model: Model | None) -> float | None:
    """The dropout rate a user's linen module declares in its rate field (None: the model has
    none of its own, and trains at the configuration's)."""
    model = getattr(model, "model", model)  # under `BFloat16Model`
    if isinstance(model, LinenModel) and model.takes_dropout_rate:
        value = getattr(model.module, model.rate_field)
        return float(value) if isinstance(value, (int, float)) else None
    return None


def resolve_dropout(config: Any, model: Model | None) -> Any:
    """`config` with the dropout rate that trains `model`: the module's own where the
    configuration leaves the rate unset (`TrainConfig.sets_dropout_rate`), so that a module
    declaring 0.1 trains, and is recorded, at 0.1 rather than the default 0.25."""
    own = own_dropout_rate(model)
    if own is None or not isinstance(config.dropout_rate, ModelsOwn):
        return config
    return config.replace(dropout_rate=own)


def parameter_count(model: Model, example: tuple[int, ...]) -> int:
    """The model's number of scalar parameters, computed from shapes only (nothing is drawn)."""
    shapes = jax.eval_shape(lambda key: model.init(key, example), jax.random.key(0))
    return count_params(shapes)


class Footprint(NamedTuple):
    """A model's size in float32 values: its parameters, and the values one example's forward pass
    in train mode creates (its input included), the basis of the memory estimates."""

    parameters: int
    activations_per_example: int


def footprint(model: Model, example: tuple[int, ...]) -> Footprint:
    """`Footprint` of `model`, from shapes only: the forward pass of a batch of one is traced to
    a jaxpr and the sizes of every value it creates are summed (nothing is computed)."""
    params = jax.eval_shape(lambda key: model.init(key, example), jax.random.key(0))
    jaxpr = jax.make_jaxpr(lambda p, x, k: model.apply(p, x, dropout_rate=0.5, dropout_key=k))(
        params, jax.ShapeDtypeStruct((1, *example), jnp.float32), jax.random.key(0)
    )
    created = sum(
        math.prod(getattr(v.aval, "shape", ())) for eqn in jaxpr.eqns for v in eqn.outvars
    )
    return Footprint(count_params(params), int(created) + math.prod(example))


def model_record(model: Model, example: tuple[int, ...]) -> dict[str, Any]:
    """What config.json and reports say of a model: its description, parameter count, the digest
    of a user's code, and whether its dropout is its own (the configuration's rate not reaching it).
    """
    from mnist_jax.models.imported import code_digest

    own = {} if model.takes_dropout_rate else {"dropout": "its own"}
    digest = code_digest(model)
    code = {} if digest is None else {"code_sha256": digest}
    return {**model.describe(), "parameters": parameter_count(model, example), **own, **code}


def check_model(model: Model, example: tuple[int, ...], num_classes: int) -> None:
    """Trace `init` and both modes of `apply` on shapes only; ConfigError if the model cannot
    train on examples of shape `example` with `num_classes` classes (wrong output width, a
    traced dropout rate it cannot take, variables other than params, any trace error)."""
    try:
        hash(model)
    except TypeError as error:  # jit takes the model as a static argument
        raise ConfigError(
            f"model {model.name} cannot be hashed, which compiling needs "
            f"({str(error).strip().splitlines()[0]}); give the module tuples rather than lists"
        ) from None
    try:  # started here first, so that a backend that cannot start is not blamed on the model
        jax.devices()
    except Exception as error:  # JAX_PLATFORMS naming no device, XLA_FLAGS jax refuses...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"jax cannot start its backend: {first}") from None
    try:
        params = jax.eval_shape(lambda key: model.init(key, example), jax.random.key(0))
        batch = jax.ShapeDtypeStruct((2, *example), jnp.float32)
        key = jax.eval_shape(lambda: jax.random.key(0))
        rate = jax.ShapeDtypeStruct((), jnp.float32)
        train_mode = lambda p, x, r, k: model.apply(p, x, dropout_rate=r, dropout_key=k)
        train = jax.eval_shape(train_mode, params, batch, rate, key)
        evaluation = jax.eval_shape(model.apply, params, batch)
        # A second batch size: logits of a fixed batch (x[:2]) would pass at 2, and fail later.
        odd = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((3, *example), jnp.float32))
    except Exception as error:  # a user's module can fail in any way; say which and why
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        # The usual slip: a convolutional module left with the default, flat layout.
        hint = "; if it takes images, give it input_layout='image' (examples (H, W, 1))"
        raise ConfigError(
            f"model {model.name} cannot train on examples of shape {example}: "
            f"{type(error).__name__}: {first}{hint if len(example) == 1 else ''}"
        ) from None
    for mode, out, size in (("train", train, 2), ("eval", evaluation, 2), ("eval", odd, 3)):
        if getattr(out, "shape", None) != (size, num_classes):
            raise ConfigError(
                f"model {model.name} returns {getattr(out, 'shape', type(out).__name__)} in "
                f"{mode} mode for a batch of {size}; expected logits of shape ({size}, "
                f"{num_classes}) for {num_classes} classes"
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):  # its gradient is not defined
            raise ConfigError(
                f"model {model.name} returns logits of dtype {out.dtype} in {mode} mode; "
                "expected floating-point logits (the loss is differentiated through them)"
            )


def __getattr__(name: str):  # NNX is imported only by those who use it
    if name == "NNXModel":
        from mnist_jax.models.nnx_adapter import NNXModel

        return NNXModel
    raise AttributeError(name)


__all__ = [
    "BUILTIN_MODELS",
    "CNN",
    "INPUT_LAYOUTS",
    "MLP",
    "LinenModel",
    "MLPModel",
    "Model",
    "NNXModel",
    "Params",
    "check_model",
    "cnn",
    "count_params",
    "describe_text",
    "dropout",
    "example_shape",
    "footprint",
    "Footprint",
    "init_params",
    "mlp",
    "model_from_config",
    "model_record",
    "own_dropout_rate",
    "resolve_dropout",
    "param_shapes",
    "parameter_count",
]
