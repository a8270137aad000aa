"""Naming configurations of a sweep on the command line: `lr=0.003 dropout=0.1`.

An assignment is a field of the configuration key (`CONFIG_KEY_FIELDS`, with `-` or `_`) or its
short name in the configuration's schema (`lr`, `dropout`, `hidden`, `wd`, `warmup`, `final`),
`=`, and a value as the sweep's flags take it (hidden sizes as `256,256`). A selection is the
configurations that match every assignment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from mnist_jax.config import FIELDS
from mnist_jax.config import SHORT_NAMES as ALL_SHORT_NAMES
from mnist_jax.errors import ConfigError
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS, ConfigKey

SHORT_NAMES = {short: name for short, name in ALL_SHORT_NAMES.items() if short != name}


def parse_value(field: str, text: str):
    """The value `text` names, as the field's flag reads it (a text field's value is its text)."""
    default, parse = FIELDS[field].default, FIELDS[field].metadata["parse"]
    if isinstance(default, str):
        return text
    if callable(parse):
        return parse(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_assignments(texts: Iterable[str]) -> dict[str, object]:
    """`["lr=0.003 dropout=0.1", "model=cnn"]` -> `{"learning_rate": 0.003, ...}` (each text may
    hold several assignments separated by spaces). ConfigError for an unknown field, a value that
    does not parse, or a field given twice."""
    out: dict[str, object] = {}
    for text in texts:
        for item in text.split():
            name, equals, raw = item.partition("=")
            field = SHORT_NAMES.get(name, name.replace("-", "_"))
            if not equals or field not in CONFIG_KEY_FIELDS:
                known = ", ".join([*SHORT_NAMES, *(f.replace("_", "-") for f in CONFIG_KEY_FIELDS)])
                raise ConfigError(
                    f"invalid selection {item!r}: expected NAME=VALUE, NAME one of {known}"
                )
            if field in out:
                raise ConfigError(f"invalid selection: {name} is given twice")
            try:
                out[field] = parse_value(field, raw)
            except ValueError:
                raise ConfigError(
                    f"invalid selection {item!r}: {raw!r} is not a value of {name}"
                ) from None
    if not out:
        raise ConfigError("an empty selection: name a configuration as NAME=VALUE, e.g. lr=0.003")
    return out


def _matches(key: ConfigKey, assignments: Mapping[str, object]) -> bool:
    values = dict(zip(CONFIG_KEY_FIELDS, key))
    for field, wanted in assignments.items():
        have = values[field]
        if isinstance(wanted, float):
            if not math.isclose(float(have), wanted, rel_tol=1e-9, abs_tol=0.0):
                return False
        elif (tuple(have) if isinstance(have, list) else have) != wanted:
            return False
    return True


def select_configuration(
    keys: Sequence[ConfigKey], assignments: Mapping[str, object], what: str, label=None
) -> ConfigKey:
    """The one configuration among `keys` matching `assignments`; ConfigError (naming `what`, e.g.
    "--reference") when none or several match. `label(key)` names keys in the message."""
    keys = list(dict.fromkeys(keys))
    found = [key for key in keys if _matches(key, assignments)]
    shown = label or repr
    if not found:
        choices = "; ".join(shown(key) for key in keys[:8]) + ("; ..." if len(keys) > 8 else "")
        raise ConfigError(f"{what} matches no configuration of the sweep (it has: {choices})")
    if len(found) > 1:
        raise ConfigError(
            f"{what} matches {len(found)} configurations ({'; '.join(map(shown, found[:4]))}"
            f"{'; ...' if len(found) > 4 else ''}): name more fields"
        )
    return found[0]
