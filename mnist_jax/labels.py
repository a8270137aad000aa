"""Configurations as text: `config_label` names one, `config_labels` tells several apart.

Read off the configuration's schema (each field's short name, when its label shows it, when it
applies), so a new sweepable field is labelled with no edit here. A configuration is a
`Member.config_key` (the values of `config.SWEEP_FIELDS` in order) or a mapping of some of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mnist_jax.config import FIELDS, SWEEP_FIELDS, applies

CONFIG_KEY_FIELDS = SWEEP_FIELDS
ConfigKey = tuple


def _default(field: str):
    return FIELDS[field].default


def _word(field: str, value, precise: bool = False) -> str:
    """A field's word in a label: a text value stands for itself ("sgd"), others are
    "short=value" ("lr=0.001", "hidden=128,128")."""
    short = FIELDS[field].metadata["short"]
    if short is None:
        return str(value)
    if isinstance(value, (tuple, list)):
        text = ",".join(map(str, value))
    else:
        text = repr(float(value)) if precise else f"{value:g}"
    return f"{short}={text}"


def config_label(key: ConfigKey | Sequence | Mapping) -> str:
    """A configuration (a `Member.config_key`, or a mapping of some of its fields, the others at
    their defaults) as one line of text, e.g. "lr=0.001 dropout=0.25 hidden=128,128" for the MLP,
    "cnn lr=0.001 dropout=0.25" for another model (its hidden sizes are the MLP's setting, left
    out). A field is named where it does something (`config.applies`), and then always or when it
    differs from its default, as the configuration's schema says: "sgd cosine lr=0.1 momentum=0.8
    ..." for a recipe other than adam at a constant rate."""
    values = _values(key)
    return " ".join(
        _word(field, values[field])
        for field in CONFIG_KEY_FIELDS
        if applies(field, values)
        and (FIELDS[field].metadata["label"] == "always" or values[field] != _default(field))
    )


def _values(key: ConfigKey | Sequence | Mapping) -> dict:
    """A key's values by field, every field of `CONFIG_KEY_FIELDS` (missing ones: defaults)."""
    if not isinstance(key, Mapping) and len(key) != len(CONFIG_KEY_FIELDS):
        raise ValueError(
            f"a configuration key has {len(CONFIG_KEY_FIELDS)} values "
            f"({', '.join(CONFIG_KEY_FIELDS)}), not {len(key)}: give a Member's config_key, or a "
            "mapping of some of these fields"
        )
    given = dict(key) if isinstance(key, Mapping) else dict(zip(CONFIG_KEY_FIELDS, key))
    return {field: given.get(field, _default(field)) for field in CONFIG_KEY_FIELDS}


def config_labels(keys: Sequence[ConfigKey | Sequence]) -> dict[ConfigKey, str]:
    """Short labels for configurations shown side by side: each names only the fields whose values
    differ between `keys` (e.g. "lr=0.001" and "lr=0.003"; "mlp" and "cnn" when only the model
    differs), in `config_label`'s words and order.

    A field is named only for the configurations it does something for (hidden sizes for the MLP,
    momentum for sgd, weight decay for adamw and sgd, warm-up for warmup-cosine, the final rate
    for the cosine schedules): where its value differs among them, or where only some of the keys
    use it and its value is not the default (adam against "sgd momentum=0.8"). One distinct key
    (nothing varies) gets its full `config_label`. Distinct keys always get distinct labels: when
    the short labels would collide (keys that differ only in a value that does nothing, or in
    digits `:g` rounds away), every field that differs is named for every key with its value's
    full precision, and failing that the key itself is the label. The result keeps the order of
    `keys`, each key once; keys are hashable (`Member.config_key`, `row_key`).
    """
    unique = list(dict.fromkeys(keys))
    if len(unique) <= 1:
        return {key: config_label(key) for key in unique}
    values = [_values(key) for key in unique]

    def short_label(v: Mapping) -> str:
        words = []
        for field in CONFIG_KEY_FIELDS:
            users = [u[field] for u in values if applies(field, u)]
            if not applies(field, v):
                continue
            value = v[field]
            if len(set(users)) > 1 or (len(users) < len(values) and value != _default(field)):
                words.append(_word(field, value))
        return " ".join(words)

    def precise_label(v: Mapping) -> str:
        return " ".join(
            _word(field, v[field], precise=True)
            for field in CONFIG_KEY_FIELDS
            if len({u[field] for u in values}) > 1
        )

    for label in (short_label, precise_label):
        texts = [label(v) for v in values]
        if all(texts) and len(set(texts)) == len(texts):
            return dict(zip(unique, texts))
    return {key: str(tuple(key)) for key in unique}
