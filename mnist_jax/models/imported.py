"""A user's model by import name, `package.module:factory`, as big_vision picks models by name.

A configuration records the name (`TrainConfig.model`), so `--resume`, `experiments.evaluate` and
a sweep's `--model` lists rebuild the model from config.json alone. The name may point at a
`flax.linen` module class (given `num_classes=` where it has that field); a `flax.nnx` module
class or factory taking `rngs` (and `num_classes` if it names it); a function of `num_classes`
returning a `Model` or a linen module; or such a `Model` or module itself. Nothing else is called
(`os:abort` is refused, not run). One that takes images says so with `input_layout = "image"`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import warnings
from typing import Any

import flax.linen as nn

from mnist_jax.errors import ConfigError
from mnist_jax.models.base import LinenModel, Model, _json_value


@functools.lru_cache(maxsize=64)  # one object per name: jit keys its programs on the model
def import_model(name: str, num_classes: int = 10) -> Model:
    """The model `name` (`package.module:factory`) points at, for `num_classes` classes."""
    module_name, _, attribute = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (Exception, SystemExit) as error:  # a missing name, or the module's own failure
        raise ConfigError(
            f"model {name} does not import ({_reason(error)}); the module must be importable "
            "from the current folder or the Python path"
        ) from None
    try:
        model = _as_model(found, name, num_classes)
    except (Exception, SystemExit) as error:  # the user's code, or a layout LinenModel refuses
        raise ConfigError(f"model {name} failed to build: {_reason(error)}") from None
    if model is None:
        raise ConfigError(
            f"model {name} is a {type(found).__name__}, not a flax.linen module class, an nnx "
            "module class or factory taking rngs, or a function of num_classes returning a "
            "mnist_jax Model or a linen module"
        )
    return model


def _reason(error: BaseException) -> str:
    try:
        first = (str(error).strip().splitlines() or [""])[0]
    except Exception:  # an exception whose own text fails
        first = ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _as_model(found: Any, name: str, num_classes: int, called: bool = False) -> Model | None:
    layout = getattr(found, "input_layout", "flat")
    if isinstance(found, Model):
        return found
    if isinstance(found, nn.Module):
        return LinenModel(found, input_layout=layout, label=name)
    if isinstance(found, type) and issubclass(found, nn.Module):
        fields = getattr(found, "__dataclass_fields__", {})
        module = found(**({"num_classes": num_classes} if "num_classes" in fields else {}))
        return LinenModel(module, input_layout=layout, label=name)
    if called or not (inspect.isfunction(found) or isinstance(found, type)):
        return None  # never call what is not a factory of ours (os.abort, sys.exit...)
    parameters, required = _parameters(found)
    if "rngs" in parameters:  # an nnx module class or factory
        from mnist_jax.models.nnx_adapter import NNXModel

        make = found
        if "num_classes" in parameters:
            make = functools.partial(found, num_classes=num_classes)
        return NNXModel(make, input_layout=layout, label=name)
    if "num_classes" not in parameters or required - {"num_classes"}:
        return None
    return _as_model(found(num_classes=num_classes), name, num_classes, called=True)


def _parameters(function: Any) -> tuple[set[str], set[str]]:
    """Names of the parameters a call may give by name, and of those it must give."""
    if isinstance(function, type):  # a class's own __init__ (nnx's metaclass hides it)
        function = functools.partial(function.__init__, None)
    try:
        named = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return set(), set()
    return {p.name for p in named}, {p.name for p in named if p.default is p.empty}


def model_from_record(stored: Any) -> Model | None:
    """A user's model rebuilt from its record in config.json or a checkpoint (`describe()`: the
    module class or nnx factory by its import path, its settings, its layout), where that path
    imports; None where it does not (a module defined in a notebook or a script's `__main__`)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("module"), str):
        return None
    path, settings = stored["module"], stored.get("settings") or {}
    module_name, _, attribute = path.rpartition(".")
    label = stored.get("name") if stored.get("name") != path else None
    layout = stored.get("input_layout", "flat")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
        if isinstance(found, type) and issubclass(found, nn.Module):
            values = _constructor_values(found, settings)
            if values is None:
                return None
            return LinenModel(found(**values), input_layout=layout, label=label)
        if callable(found) and "rngs" in _parameters(found)[0] and not settings:
            from mnist_jax.models.nnx_adapter import NNXModel

            return NNXModel(found, input_layout=layout, label=label)
    except Exception:  # not importable here, or settings the class no longer takes
        return None
    return None


def _constructor_values(module_class: type, settings: dict) -> dict | None:
    """The keyword arguments that rebuild a module from its recorded settings: those that differ
    from the class's defaults, and a placeholder for a rate field without one (training sets the
    rate); None where a differing setting was recorded as text for an object (a function)."""
    fields = {f.name: f for f in dataclasses.fields(module_class)}
    values = {}
    for name, value in settings.items():
        field = fields.get(name)
        default = field.default if field is not None else dataclasses.MISSING
        if default is not dataclasses.MISSING and _json_value(default) == value:
            continue  # the class's own default: nothing to pass
        if isinstance(value, str) and not isinstance(default, str | type(dataclasses.MISSING)):
            return None  # an object recorded by its name
        values[name] = _hashable(value)
    rate = fields.get("dropout_rate")
    if rate is not None and "dropout_rate" not in settings and rate.default is dataclasses.MISSING:
        values["dropout_rate"] = 0.0  # skipped in the record; the train state gives the rate
    return values


def _hashable(value: Any) -> Any:
    """A JSON value as a module field holds it: lists (JSON's tuples) back to tuples."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def code_digest(model: Model) -> str | None:
    """sha256 of the source of a user's module class or nnx factory (None for a built-in model or
    unreadable source): recorded, so that a run evaluated or resumed after its code changed says
    so rather than giving other numbers in silence."""
    model = getattr(model, "model", model)  # under `BFloat16Model`
    if isinstance(model, LinenModel):
        code = type(model.module)
    elif type(model).__name__ == "NNXModel":  # not imported here: flax.nnx loads only for it
        code = getattr(model.make, "func", model.make)  # a factory given its num_classes
    else:
        return None
    try:
        source = inspect.getsource(code)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def warn_if_code_changed(recorded: Any, model: Model, where: str) -> None:
    """A warning where the model's code is not the code the run recorded (`code_digest`)."""
    before = recorded.get("code_sha256") if isinstance(recorded, dict) else None
    now = code_digest(model)
    if before and now and before != now:
        warnings.warn(
            f"the code of model {model.name} changed since {where} was trained: its results "
            "here may differ from the run's",
            stacklevel=2,
        )
