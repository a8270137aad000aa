"""A search space over the sweep's fields: `lr=loguniform(1e-4,1e-2) schedule=choice(a|b)`.

Each item is a field of the configuration key (its name or short name, as `--reference` takes them),
`=`, and a distribution: `loguniform(LOW,HIGH)`, `uniform(LOW,HIGH)`, `int(LOW,HIGH)` (whole
numbers, both ends included, e.g. warm-up epochs) or `choice(A|B|...)` with values as the sweep's
flags take them (hidden sizes as `256,256`). Every value the space can give is checked, as a
sweep's members are, before anything is created: the bounds of ranges and every choice. A space
file holds the same items, one or more a line, `#` comments.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from mnist_jax.config import COMPILED_SWEEP_FIELDS, FIELDS, TrainConfig
from mnist_jax.device_data import check_fits
from mnist_jax.errors import ConfigError
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, Member, with_own_dropout
from mnist_jax.sweep.select import SHORT_NAMES, parse_value

KINDS = ("loguniform", "uniform", "int", "choice")
_ITEM = re.compile(r"^([A-Za-z_-]+)=([a-z]+)\((.*)\)$")


def parse_space(texts: Iterable[str], base: Mapping | None = None) -> dict[str, tuple]:
    """`["lr=loguniform(1e-4,1e-2) dropout=uniform(0,0.5)"]` (or a file's path) -> `{field:
    (kind, values)}`: (low, high) for ranges, the values for a choice. ConfigError names the
    first item that is not a distribution over a sweep field, or a value no member may take with
    `base`'s other values (a member's fields, e.g. the optimizer for a weight decay)."""
    items: list[str] = []
    for text in texts:
        if Path(text).is_file():
            try:
                lines = Path(text).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(
                    f"--space {text}: cannot be read as a text file ({error})"
                ) from None
            items += [w for line in lines for w in line.partition("#")[0].split()]
        elif "=" not in text and ("/" in text or Path(text).suffix[1:].isalpha()):
            raise ConfigError(f"--space {text}: no such file (an item is NAME=KIND(...))")
        else:
            items += text.split()
    space: dict[str, tuple] = {}
    for item in items:
        match = _ITEM.match(item)
        name = match.group(1) if match else item.partition("=")[0]
        field = SHORT_NAMES.get(name, name.replace("-", "_"))
        if not match or field not in CONFIG_KEY_FIELDS or match.group(2) not in KINDS:
            known = ", ".join([*SHORT_NAMES, *CONFIG_KEY_FIELDS])
            raise ConfigError(
                f"invalid search space item {item!r}: expected NAME=KIND(...), KIND one of "
                f"{', '.join(KINDS)}, NAME one of {known}"
            )
        if field in space:
            raise ConfigError(f"invalid search space: {name} is given twice")
        space[field] = _distribution(item, field, match.group(2), match.group(3), base or {})
    if not space:
        raise ConfigError("an empty search space: give e.g. 'lr=loguniform(1e-4,1e-2)'")
    return space


def _distribution(item: str, field: str, kind: str, inside: str, base: Mapping) -> tuple:
    try:
        if kind == "choice":
            values = tuple(parse_value(field, v) for v in inside.split("|"))
            if len(set(values)) != len(values):
                raise ValueError("values repeat")
        else:
            low, high = (int(v) if kind == "int" else float(v) for v in inside.split(","))
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError("expected finite LOW < HIGH")
            if kind == "loguniform" and low <= 0:
                raise ValueError("loguniform needs LOW > 0")
            if not isinstance(FIELDS[field].default, float):
                raise ValueError(f"{field} is not a number: use choice")
            values = (low, high)
        for value in values:  # a member with it raises TrainConfig's own message
            Member(0, **{**base, field: value})
    except (ValueError, TypeError) as error:
        raise ConfigError(f"invalid search space item {item!r}: {error}") from None
    return (kind, values)


def corner_members(config: TrainConfig, space: Mapping[str, tuple]) -> list[Member]:
    """Members at each value the space can give a field (both ends of a range, every choice), the
    others the configuration's; and at each combination of the choices of the compiled fields
    (model, hidden sizes, optimizer, schedule: a program each) with each dropout rate. A
    combination that fails only together (a model without hidden sizes) is left to its trial."""
    base = {name: getattr(config, name) for name in CONFIG_KEY_FIELDS}

    def values(field):
        kind, given = space[field]
        return [float(v) for v in given] if kind == "int" else list(given)

    members = [Member(0, **{**base, field: v}) for field in space for v in values(field)]
    crossed = [f for f in space if f in COMPILED_SWEEP_FIELDS or f == "dropout_rate"]
    for combination in itertools.product(*map(values, crossed)):
        try:
            members.append(Member(0, **{**base, **dict(zip(crossed, combination))}))
        except (ConfigError, ValueError):
            continue
    return members


def check_space(config: TrainConfig, space: Mapping[str, tuple], dataset) -> list[TrainConfig]:
    """ConfigError (one line) where a value of the space cannot train on `dataset`, checked on
    `corner_members` before anything is created: each model named imports and passes
    `check_model`, a dropout rate is not given to a model that keeps its own, a warm-up fits the
    epochs. Returns the members' configurations."""
    members = with_own_dropout(corner_members(config, space), refuse_unused=True)
    configs = {m.config_key: m.config(config) for m in members}
    for member in {m.group_key: m for m in members}.values():  # one per program's shapes
        check_fits(configs[member.config_key], dataset)
    return list(configs.values())


def optuna_distributions(space: Mapping[str, tuple]) -> dict:
    """The space as Optuna distributions, by field name (Optuna imported here, not at load)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for field, (kind, values) in space.items():
        if kind == "choice":  # Optuna's choices are None, bool, int, float or str
            out[field] = CategoricalDistribution([_choice_value(v) for v in values])
        elif kind == "int":
            out[field] = IntDistribution(*values)
        else:
            out[field] = FloatDistribution(*values, log=kind == "loguniform")
    return out


def _choice_value(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def member_values(space: Mapping[str, tuple], params: Mapping) -> dict:
    """A trial's parameters as a member's values (hidden sizes back to a tuple)."""
    out = {}
    for field, value in params.items():
        if field in space and space[field][0] == "choice":
            value = next(v for v in space[field][1] if _choice_value(v) == value)
        elif field in space and space[field][0] == "int":  # whole numbers of a real field
            value = float(value)
        out[field] = value
    return out


def space_text(space: Mapping[str, tuple]) -> str:
    """The space as parse_space reads it (search.json keeps it)."""
    parts = []
    for field, (kind, values) in space.items():
        separator = "|" if kind == "choice" else ","
        parts.append(f"{field}={kind}({separator.join(str(_choice_value(v)) for v in values)})")
    return " ".join(parts)
