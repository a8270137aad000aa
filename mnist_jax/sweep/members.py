"""The members of a sweep: a seed and the values of the configuration's sweep fields each, and
how they are grouped into compiled programs.

Members equal in the compiled fields (model, hidden sizes, optimizer, schedule: the configuration's
schema says which) share one compiled, vmapped program (a "group"); seed, learning rate, dropout
rate and the recipe's numbers are arrays in the train state and are vmapped over. A group larger
than the memory bound is cut into chunks, each one program call.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from mnist_jax.config import (
    COMPILED_SWEEP_FIELDS,
    FIELDS,
    GRID_ORDER,
    MODELS,
    SWEEP_FIELDS,
    ModelsOwn,
    TrainConfig,
    is_model_name,
)
from mnist_jax.errors import ConfigError
from mnist_jax.models import Model, own_dropout_rate
from mnist_jax.models.imported import import_model

MAX_MEMBERS = 100_000  # bounds the work (and memory) of planning before anything is checked
# What a member sets beyond its seed, in the order labels name them: a configuration's key
# (`Member.config_key`). Read off the configuration's schema (`config.SWEEP_FIELDS`).
CONFIG_KEY_FIELDS = SWEEP_FIELDS
ConfigKey = tuple  # the values of CONFIG_KEY_FIELDS
GroupKey = tuple  # the values of COMPILED_SWEEP_FIELDS: what fixes a member's program
# `Member(seed, learning_rate, dropout_rate, hidden_sizes, model)`: the positional order members
# were written in before the schema; any field may be given by name.
POSITIONAL_FIELDS = ("learning_rate", "dropout_rate", "hidden_sizes", "model")
# Members are validated against a run of any length: the warm-up is checked against the sweep's
# epochs when the sweep is planned (`run.plan_sweep`).
_ANY_RUN = TrainConfig(epochs=2**31 - 1)


class Member:
    """One run of a sweep: a seed and the values of `CONFIG_KEY_FIELDS` (a field not given takes
    the configuration's default). Its results equal `fit` with these values (bitwise one member per
    step, up to vmap rounding with --members-per-step all).

    Members equal in the compiled fields (`config.COMPILED_SWEEP_FIELDS`: model, hidden sizes,
    optimizer, schedule) share a compiled program; the other values are arrays in the train state,
    vmapped over. Fields read as attributes (`member.learning_rate`). Immutable and hashable.
    """

    __slots__ = ("seed", "config_key")

    def __init__(self, seed: int, *positional, **values) -> None:
        if len(positional) > len(POSITIONAL_FIELDS):
            raise TypeError(f"Member takes at most {len(POSITIONAL_FIELDS) + 1} positional values")
        given = dict(zip(POSITIONAL_FIELDS, positional))
        twice = sorted(set(given) & set(values))
        unknown = sorted(set(values) - set(CONFIG_KEY_FIELDS))
        if twice:
            raise TypeError(f"Member: {', '.join(twice)} given twice")
        if unknown:
            raise TypeError(
                f"Member: unknown field(s) {', '.join(unknown)}; a member has a seed and any of "
                f"{', '.join(CONFIG_KEY_FIELDS)}"
            )
        given.update(values)
        key = tuple(
            _normal(name, given.get(name, FIELDS[name].default)) for name in CONFIG_KEY_FIELDS
        )
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "config_key", key)
        model = self.model
        if not (isinstance(model, str) and model):
            raise ConfigError(f"invalid model={model!r}: expected a model's name")
        # One place validates run values: TrainConfig raises ConfigError naming the field and value.
        # Once per configuration (a grid's members share a few): seeds only need their range.
        _validate_key(key)
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32):
            _ANY_RUN.replace(seed=seed)  # raises TrainConfig's own message

    def __getattr__(self, name: str):
        if name in Member.__slots__:  # not set yet
            raise AttributeError(name)
        try:
            return self.config_key[CONFIG_KEY_FIELDS.index(name)]
        except ValueError:
            raise AttributeError(f"Member has no field {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a Member is immutable")

    def __eq__(self, other) -> bool:
        if not isinstance(other, Member):
            return NotImplemented
        return (self.seed, self.config_key) == (other.seed, other.config_key)

    def __hash__(self) -> int:
        return hash((self.seed, self.config_key))

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in zip(CONFIG_KEY_FIELDS, self.config_key))
        return f"Member(seed={self.seed!r}, {values})"

    def __reduce__(self):
        return functools.partial(Member, **self.to_dict()), ()

    def replace(self, **values) -> Member:
        """A copy with some values (or the seed) changed, validated again."""
        return Member(**{**self.to_dict(), **values})

    @classmethod
    def from_key(cls, seed: int, key: ConfigKey) -> Member:
        """The member of configuration `key` (a `config_key`) with this seed."""
        return cls(seed, **dict(zip(CONFIG_KEY_FIELDS, key, strict=True)))

    @property
    def group_key(self) -> GroupKey:
        """What fixes the program: members with equal keys share a compiled program."""
        return tuple(getattr(self, name) for name in COMPILED_SWEEP_FIELDS)

    def config(self, base: TrainConfig) -> TrainConfig:
        """`base` with this member's values: the single-run configuration this member reproduces
        (a user's model, not a configuration value, leaves `base.model` as it is)."""
        values = dict(zip(CONFIG_KEY_FIELDS, self.config_key))
        if not is_model_name(self.model):
            del values["model"]
        return base.replace(seed=self.seed, **values)

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            **{name: json_value(v) for name, v in zip(CONFIG_KEY_FIELDS, self.config_key)},
        }


@functools.lru_cache(maxsize=4096)
def _validate_key(key: ConfigKey) -> None:
    values = dict(zip(CONFIG_KEY_FIELDS, key))
    if not is_model_name(values["model"]):  # a model given in models=: not a configuration value
        del values["model"]
    _ANY_RUN.replace(**values)


def _normal(name: str, value):
    """A field's value as members hold it: a sequence field's (its default is a tuple, e.g.
    hidden sizes) as a tuple of ints (hashable; a record read back from JSON holds lists)."""
    if isinstance(FIELDS[name].default, tuple) and not isinstance(value, str):
        try:
            return tuple(int(v) if isinstance(v, (int, np.integer)) else v for v in value)
        except TypeError:
            return value  # not a sequence: TrainConfig names it
    return value


def json_value(value):
    """A field's value as JSON holds it (a tuple as a list)."""
    return list(value) if isinstance(value, tuple) else value


# `expand_members`'s names for the lists of the positional fields.
_LIST_NAMES = {
    "learning_rates": "learning_rate",
    "dropout_rates": "dropout_rate",
    "hidden_sizes_list": "hidden_sizes",
    "models": "model",
}


def expand_members(
    seeds: Iterable[int],
    learning_rates: Iterable[float] | None = None,
    dropout_rates: Iterable[float] | None = None,
    hidden_sizes_list: Iterable[Sequence[int]] | None = None,
    models: Iterable[str] | None = None,
    *,
    base: TrainConfig | None = None,
    **lists: Iterable,
) -> list[Member]:
    """The grid of every combination of the lists, then seed (innermost, so the seeds of one
    configuration are neighbours and usually share a program chunk), in `GRID_ORDER`. `lists`
    holds any field's list by its name (`weight_decay=[0, 1e-4]`, `schedule=["constant",
    "cosine"]`...); a field without a list takes `base`'s value, or without `base` the field's
    default (`TrainConfig`'s).

    Raises ConfigError for an empty list, an invalid value or a repeated value, and for a value
    crossed with one it does nothing with (hidden sizes with the CNN, momentum with adam...).
    """
    positional = dict(zip(_LIST_NAMES, (learning_rates, dropout_rates, hidden_sizes_list, models)))
    for name, values in positional.items():
        if values is not None:
            if _LIST_NAMES[name] in lists:
                raise TypeError(f"expand_members: {name} and {_LIST_NAMES[name]} given both")
            lists[_LIST_NAMES[name]] = values
    unknown = sorted(set(lists) - set(GRID_ORDER))
    if unknown:
        raise ConfigError(f"unknown sweep list(s) {', '.join(unknown)}")
    seeds = list(seeds)
    axes = {name: [_normal(name, v) for v in lists[name]] for name in GRID_ORDER if name in lists}
    for name, values in {"seeds": seeds, **axes}.items():
        if not values:
            raise ConfigError(f"invalid {name}: empty; give at least one value")
        # Numbers compare as the float32 the members train with: 0.1 and 0.1000000001 are one.
        trained = [float(np.float32(v)) if isinstance(v, float) else v for v in values]
        if len(set(trained)) != len(values):
            raise ConfigError(
                f"invalid {name}={values!r}: values repeat (a sweep would train the same run "
                "twice; numbers are compared in float32, as training uses them)"
            )
    if math.prod(len(values) for values in axes.values()) * len(seeds) > MAX_MEMBERS:
        raise ConfigError(f"a sweep of more than {MAX_MEMBERS:,} members is several sweeps")
    fixed = {} if base is None else {name: getattr(base, name) for name in CONFIG_KEY_FIELDS}
    return with_own_dropout(
        (
            Member(seed=seed, **{**fixed, **dict(zip(axes, combination))})
            for combination in itertools.product(*axes.values())
            for seed in seeds
        ),
        refuse_unused=True,
    )


def with_own_dropout(
    members: Iterable[Member],
    models: Mapping[str, Model] | None = None,
    *,
    refuse_unused: bool = False,
) -> list[Member]:
    """`members`, those whose dropout rate is unset (`config.ModelsOwn`) at their model's own
    (a user's module declaring one: `models.own_dropout_rate`), so that records say what trains.
    Their model is `models[name]`, or one named `package.module:factory`. `refuse_unused` (a new
    sweep): a rate given for a model that keeps its own dropout is a ConfigError."""

    @functools.cache
    def model_of(name: str) -> Model | None:
        model = (models or {}).get(name)
        if model is None and name not in MODELS and is_model_name(name):
            model = import_model(name)
        return model

    resolved = []
    for member in members:
        if isinstance(member.dropout_rate, ModelsOwn):
            own = own_dropout_rate(model_of(member.model))
            if own is not None:
                member = member.replace(dropout_rate=own)
        elif refuse_unused and not getattr(model_of(member.model), "takes_dropout_rate", True):
            raise ConfigError(
                f"model {member.model} keeps its own dropout, so dropout_rate="
                f"{member.dropout_rate} would do nothing; leave it unset"
            )
        resolved.append(member)
    return resolved


def group_members(members: Iterable[Member]) -> dict[GroupKey, list[Member]]:
    """Members by model, hidden sizes, optimizer and schedule (one compiled program each), in
    first-appearance order."""
    groups: dict[GroupKey, list[Member]] = {}
    for member in members:
        groups.setdefault(member.group_key, []).append(member)
    return groups


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_int_ranges(text: str) -> list[int]:
    """`"0-3,7"` -> [0, 1, 2, 3, 7]: comma-separated integers and inclusive ranges, kept in order.

    Raises ConfigError for an empty string or item, a non-integer, a descending range, or a value
    given twice.
    """
    values: list[int] = []
    items = [item.strip() for item in str(text).split(",")]
    for item in items:
        match = _RANGE.match(item)
        if not match:
            raise ConfigError(
                f"invalid integer list {text!r}: {item!r} is not N or N-M (write e.g. '0-3,7')"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high >= 2**32:
            raise ConfigError(f"invalid integer list {text!r}: seeds are below 2**32")
        if high - low + len(values) >= MAX_MEMBERS:
            raise ConfigError(
                f"invalid integer list {text!r}: more than {MAX_MEMBERS:,} values; a sweep that "
                "large is several sweeps"
            )
        if high < low:
            raise ConfigError(
                f"invalid integer list {text!r}: range {item!r} goes down; write {high}-{low}"
            )
        values.extend(range(low, high + 1))
    if len(set(values)) != len(values):
        repeated = sorted(v for v, n in collections.Counter(values).items() if n > 1)
        raise ConfigError(f"invalid integer list {text!r}: {repeated} given more than once")
    return values


def chunk_sizes(num_members: int, members_per_program: int, num_devices: int) -> list[int]:
    """How a group of `num_members` is cut into program calls of at most `members_per_program`
    (after rounding it down to a multiple of `num_devices` when it is at least that), as evenly as
    possible.

    Each chunk is then padded to a multiple of `num_devices` (`padded_size`).
    """
    if members_per_program < 1:
        raise ConfigError(f"invalid members_per_program={members_per_program}: expected >= 1")
    limit = members_per_program
    if limit >= num_devices:
        limit -= limit % num_devices
    count = math.ceil(num_members / limit)
    size = math.ceil(num_members / count)
    if limit % num_devices == 0:
        size = min(limit, math.ceil(size / num_devices) * num_devices)
    return [min(size, num_members - start) for start in range(0, num_members, size)]


# XLA simplifies a batched matmul with batch size 1 to a plain matmul, whose rounding differs from
# the batched kernel's (measured on CPU: a 1-member program's parameters differ in the last bits
# from the same member's in a 2- or 3-member program, while 2 and 3 agree bitwise). Where members
# are vmapped, padding every device to at least 2 members keeps each member's result bitwise
# independent of the device count and of how a sweep is cut into programs, at the cost of one dummy
# member per device in the smallest sweeps. Members trained one per step are never batched (each
# computes what a single run computes), so they are padded only to a multiple of the devices.
MIN_MEMBERS_PER_DEVICE = 2


def padded_size(num_members: int, num_devices: int, members_per_step: int | None = None) -> int:
    """The members a program call computes: a multiple of `num_devices` (the leading axis must
    divide evenly) holding `num_members`, with at least `MIN_MEMBERS_PER_DEVICE` on each device
    unless the members train one per step (`members_per_step=1`)."""
    least = 1 if members_per_step == 1 else MIN_MEMBERS_PER_DEVICE
    return max(least, math.ceil(num_members / num_devices)) * num_devices
