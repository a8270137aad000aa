"""The members of a sweep: one (seed, learning rate, dropout rate, hidden sizes, model) each, and
how they are grouped into compiled programs.

Members of one model with equal hidden sizes have the same parameter shapes, so they share one
compiled, vmapped program (a "group"); seed, learning rate and dropout rate are arrays in the train
state and are vmapped over. A group larger than the memory bound is cut into chunks, each one
program call.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from mnist_jax.config import MODELS, TrainConfig
from mnist_jax.errors import ConfigError

MAX_MEMBERS = 100_000  # bounds the work (and memory) of planning before anything is checked
# What a member sets beyond its seed, in this order: a configuration's key (`Member.config_key`).
CONFIG_KEY_FIELDS = (
    "learning_rate",
    "dropout_rate",
    "hidden_sizes",
    "model",
    "optimizer",
    "weight_decay",
    "momentum",
    "schedule",
    "warmup_epochs",
    "final_lr_fraction",
)
ConfigKey = tuple  # the values of CONFIG_KEY_FIELDS
GroupKey = tuple[str, tuple[int, ...], str, str]  # (model, hidden_sizes, optimizer, schedule)
# Members are validated against a run of any length: the warm-up is checked against the sweep's
# epochs when the sweep is planned (`run.plan_sweep`).
_ANY_RUN = TrainConfig(epochs=2**31 - 1)


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of a sweep. Its results equal (up to vmap rounding) `fit` with these values.

    Members of one model, hidden sizes, optimizer and schedule share a compiled program; the other
    values are arrays in the train state, vmapped over.
    """

    seed: int
    learning_rate: float
    dropout_rate: float
    hidden_sizes: tuple[int, ...]
    # A built-in model's name (`TrainConfig.model`), or the name `run_sweep(models=...)` gives a
    # user's model.
    model: str = "mlp"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    final_lr_fraction: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if not (isinstance(self.model, str) and self.model):
            raise ConfigError(f"invalid model={self.model!r}: expected a model's name")
        # One place validates run values: TrainConfig raises ConfigError naming the field and value.
        self.config(_ANY_RUN)

    @property
    def config_key(self) -> ConfigKey:
        """The hyper-parameters without the seed: members with equal keys are repeats over seeds."""
        return tuple(getattr(self, name) for name in CONFIG_KEY_FIELDS)

    @property
    def group_key(self) -> GroupKey:
        """What fixes the program: members with equal keys share a compiled program."""
        return (self.model, self.hidden_sizes, self.optimizer, self.schedule)

    def config(self, base: TrainConfig) -> TrainConfig:
        """`base` with this member's values: the single-run configuration this member reproduces
        (a user's model, not a configuration value, leaves `base.model` as it is)."""
        values = {name: getattr(self, name) for name in CONFIG_KEY_FIELDS}
        if self.model not in MODELS:
            del values["model"]
        return base.replace(seed=self.seed, **values)

    def to_dict(self) -> dict:
        out = {"seed": self.seed, **{name: getattr(self, name) for name in CONFIG_KEY_FIELDS}}
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out


# The sweep's lists beyond seeds, by field, in the grid's order (outermost first): what forms
# programs first, so that a program's members are neighbours.
GRID_ORDER = (
    "model",
    "hidden_sizes",
    "optimizer",
    "schedule",
    "learning_rate",
    "weight_decay",
    "momentum",
    "warmup_epochs",
    "final_lr_fraction",
    "dropout_rate",
)


def expand_members(
    seeds: Iterable[int],
    learning_rates: Iterable[float] = (1e-3,),
    dropout_rates: Iterable[float] = (0.25,),
    hidden_sizes_list: Iterable[Sequence[int]] = ((128, 128),),
    models: Iterable[str] = ("mlp",),
    **lists: Iterable,
) -> list[Member]:
    """The grid of every combination: model, hidden sizes, optimizer, schedule, learning rate, the
    other recipe values, dropout rate, then seed (innermost, so the seeds of one configuration are
    neighbours and usually share a program chunk). `lists` holds the other fields' lists by name
    (`weight_decay=[0, 1e-4]`, `schedule=["constant", "cosine"]`...).

    Raises ConfigError for an empty list, an invalid value or a repeated value, and for a value
    crossed with one it does nothing with (hidden sizes with the CNN, momentum with adam...).
    """
    unknown = sorted(set(lists) - set(GRID_ORDER))
    if unknown:
        raise ConfigError(f"unknown sweep list(s) {', '.join(unknown)}")
    seeds = list(seeds)
    axes = {
        "learning_rate": list(learning_rates),
        "dropout_rate": list(dropout_rates),
        "hidden_sizes": [tuple(h) for h in hidden_sizes_list],
        "model": list(models),
        **{name: list(values) for name, values in lists.items()},
    }
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
    names = [name for name in GRID_ORDER if name in axes]
    return [
        Member(seed=seed, **dict(zip(names, combination)))
        for combination in itertools.product(*(axes[name] for name in names))
        for seed in seeds
    ]


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
    sizes = []
    remaining = num_members
    while remaining > 0:
        sizes.append(min(size, remaining))
        remaining -= sizes[-1]
    return sizes


# XLA simplifies a batched matmul with batch size 1 to a plain matmul, whose rounding differs from
# the batched kernel's (measured on CPU: a 1-member program's parameters differ in the last bits
# from the same member's in a 2- or 3-member program, while 2 and 3 agree bitwise). Padding every
# device to at least 2 members keeps each member's result bitwise independent of the device count
# and of how a sweep is cut into programs, at the cost of one dummy member per device in the
# smallest sweeps.
MIN_MEMBERS_PER_DEVICE = 2


def padded_size(num_members: int, num_devices: int) -> int:
    """The members a program call computes: a multiple of `num_devices` (the leading axis must
    divide evenly) holding `num_members`, with at least `MIN_MEMBERS_PER_DEVICE` on each device."""
    return max(MIN_MEMBERS_PER_DEVICE, math.ceil(num_members / num_devices)) * num_devices
