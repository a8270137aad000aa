"""The run configuration: one frozen, validated dataclass.

Everything that decides what a run computes lives here, so a run directory's `config.json` is
enough to re-create the run. Validation happens once, in `__post_init__`: an invalid value can never
reach the training code, and the error names the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mnist_jax.errors import ConfigError

VALIDATION_MODES = ("test", "holdout")
MODELS = ("mlp", "cnn")  # the built-in models (`mnist_jax.models.model_from_config`)
# A user's model by import name, `package.module:factory` (`mnist_jax.models.imported`).
_IMPORT_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup-cosine")
PRECISIONS = ("f32", "bf16")  # `mnist_jax.models.precision`
DEFAULT_HIDDEN_SIZES = (128, 128)


def parse_sizes(text: str) -> tuple[int, ...]:
    """`"128,128"` -> (128, 128): the command-line form of `hidden_sizes`."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"invalid hidden sizes {text!r}: expected e.g. 128,128") from None
    if any(size <= 0 for size in sizes):
        raise ValueError(f"invalid hidden sizes {text!r}: sizes must be positive")
    return sizes


FLOAT32_TINY, FLOAT32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
_Rule = tuple[Callable[[Any], bool], str]  # (whether a value is valid, what is expected instead)


def _field(
    default: Any,
    help: str,
    *,
    valid: _Rule | None = None,
    aliases: tuple[str, ...] = (),
    group: str = "training",
    sweep: bool = False,
    defines_run: bool = True,
    parse: Any = None,
    choices: tuple[str, ...] | None = None,
    list_separator: str = ",",
    short: str | None = None,
    label: str = "changed",
    applies: tuple[Callable[[Mapping[str, Any]], bool], str] | None = None,
    compiled: int = 0,
    in_state: bool = False,
) -> Any:
    """A configuration field with everything the rest of the code knows about it, next to it.

    `valid` is (ok, expected): whether a value is in range, and what is expected instead (a field
    with `choices` must be one of them, a `parse="flag"` one true or false). The flag is the field
    name (`--learning-rate`); `aliases` keep older spellings working; `sweep` marks a value the
    sweep command takes as a list (`list_separator` between values): a sweep's members differ in
    it; `compiled` (for a sweep field: 1, 2, ... its place among the sweep grid's outer loops): it
    is part of the compiled program (`TrainSpec`), so members that differ in it train in separate
    programs, where the others are arrays in the train state that a program vmaps over;
    `defines_run`: a resumed run takes it from its config.json and refuses the flag; `parse` turns
    the flag's text into the value (default: the default's type). `short` names it in labels and
    selections (`lr=0.003`; None: a text value stands for itself, e.g. `sgd`); `label` says when a
    configuration's label shows it: "always", or when "changed" from the default. `applies` is
    (when, why): `when(values)` says whether the field does anything with the configuration's
    other values; where it does not it must keep its default (a silently ignored value is an
    error, `why` says so: a format string of the values), and labels leave it out. `in_state`: a
    traced number kept in the train state's `hyper` dict (`train.state_hyperparams`), where the
    training code reads it.
    """
    if valid is None and choices is not None:
        valid = (lambda value: value in choices, " or ".join(choices))
    elif valid is None and parse == "flag":
        valid = (lambda value: isinstance(value, bool), "true or false")
    metadata = {key: value for key, value in locals().items() if key != "default"}  # every keyword
    return dataclasses.field(default=default, metadata=metadata)


def _float32_in(low: float, high: float, expected: str, *, below_high: bool = False) -> _Rule:
    """A finite number whose float32 value is in [low, high] (or [low, high)). Training computes in
    float32: a value that rounds to 0, 1 or infinity there would silently train something else (a
    learning rate of 1e-50 trains nothing)."""

    def ok(value: Any) -> bool:
        if not _is_real(value):
            return False
        x = _float32(value)
        return low <= x and (x < high if below_high else x <= high)

    return ok, expected


def _int_in(low: int, end: int, expected: str) -> _Rule:
    """An integer (not a bool) in [low, end)."""
    return (lambda value: _is_int(value) and low <= value < end), expected


_UNIT_FRACTION = _float32_in(
    0.0, 1.0, "a number in [0, 1) (and below 1 in float32)", below_high=True
)
_POSITIVE_FLOAT32 = _float32_in(
    FLOAT32_TINY,
    FLOAT32_MAX,
    f"a positive number from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g} (float32's range)",
)
# Counts of epochs or examples become int32 scalars of the train state (epoch, patience...).
_COUNT = _int_in(1, 2**31, "a positive integer below 2**31")


def _when(field: str, *names: str) -> Callable[[Mapping[str, Any]], bool]:
    """An `applies` condition: the configuration's `field` (missing: its default) is one of
    `names`."""
    return lambda values: values.get(field, FIELDS[field].default) in names


def is_model_name(name: Any) -> bool:
    """Whether a configuration can name this model: built in, or `package.module:factory`."""
    return isinstance(name, str) and (name in MODELS or bool(_IMPORT_NAME.fullmatch(name)))


def _model_name(text: str) -> str:
    if not is_model_name(text):
        raise ValueError(
            f"invalid model {text!r}: expected {' or '.join(MODELS)}, or a model of yours as "
            "PACKAGE.MODULE:FACTORY"
        )
    return text


class ModelsOwn(float):
    """The default dropout rate, 0.25 (the notebook's), marked as not set: a user's module that
    declares its own rate keeps it (`models.resolve_dropout`); everywhere else it is the number.
    A value given (a flag, `TrainConfig(dropout_rate=...)`, a config.json) is a plain float."""

    __slots__ = ()

    def __repr__(self) -> str:
        return float.__repr__(self)


DEFAULT_DROPOUT_RATE = ModelsOwn(0.25)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of one training run. Defaults reproduce the Keras notebook.

    Each field's help text (its meaning) and flag metadata sit next to it; `experiments.cli`
    builds every command's flags from them, so a new field is one edit here.
    """

    dataset: str = _field(
        "mnist",
        "mnist, fashion_mnist, kmnist, any dataset in IDX format given by --data-dir, or "
        "tfds:NAME for a prepared tensorflow-datasets dataset",
        valid=(lambda value: isinstance(value, str) and bool(value), "a non-empty name"),
        group="data",
    )
    data_dir: str | None = _field(
        None,
        "folder with the four *-ubyte(.gz) files (default: $MNIST_JAX_DATA, then "
        "~/.cache/mnist_jax/DATASET, then a verified download)",
        group="data",
        defines_run=False,
    )
    model: str = _field(
        "mlp",
        "mlp (the notebook's, layers from --hidden-sizes), cnn (the Flax examples' CNN: two "
        "3x3 convolutions with average pooling, Dense 256), or a model of yours imported as "
        "PACKAGE.MODULE:FACTORY (a flax.linen module class, an nnx module class or factory "
        "taking rngs, or a function of num_classes returning a Model)",
        valid=(is_model_name, f"{' or '.join(MODELS)}, or PACKAGE.MODULE:FACTORY"),
        sweep=True,
        parse=_model_name,
        compiled=1,
    )
    optimizer: str = _field(
        "adam",
        "adam (Keras's), adamw (adam with decoupled --weight-decay) or sgd (with --momentum, "
        "--nesterov, and --weight-decay as an L2 term in the gradient)",
        sweep=True,
        choices=OPTIMIZERS,
        compiled=3,
    )
    schedule: str = _field(
        "constant",
        "constant, cosine (decay over the run's epochs to --final-lr-fraction of the peak) or "
        "warmup-cosine (linear warm-up from 0 over --warmup-epochs, then that cosine decay)",
        sweep=True,
        choices=SCHEDULES,
        compiled=4,
    )
    learning_rate: float = _field(
        1e-3,
        "the (peak) learning rate; the schedule scales it",
        valid=_POSITIVE_FLOAT32,
        sweep=True,
        short="lr",
        label="always",
    )
    weight_decay: float = _field(
        0.0,
        "weight decay for adamw (decoupled) and sgd (L2); adam takes none",
        valid=_float32_in(0.0, FLOAT32_MAX, "a number >= 0"),
        sweep=True,
        short="wd",
        applies=(
            _when("optimizer", "adamw", "sgd"),
            "adam takes no weight decay: use --optimizer adamw or sgd",
        ),
    )
    momentum: float = _field(
        0.9,
        "sgd's momentum, in [0, 1)",
        valid=_float32_in(0.0, 1.0, "a number in [0, 1)", below_high=True),
        sweep=True,
        short="momentum",
        applies=(_when("optimizer", "sgd"), "only sgd has momentum"),
    )
    nesterov: bool = _field(
        False,
        "sgd with Nesterov momentum",
        parse="flag",
        applies=(_when("optimizer", "sgd"), "only sgd has Nesterov momentum"),
    )
    warmup_epochs: float = _field(
        0.0,
        "epochs of linear warm-up with --schedule warmup-cosine",
        valid=_float32_in(0.0, FLOAT32_MAX, "a number of epochs >= 0"),
        sweep=True,
        short="warmup",
        applies=(_when("schedule", "warmup-cosine"), "only --schedule warmup-cosine warms up"),
    )
    final_lr_fraction: float = _field(
        0.0,
        "where the cosine decay ends, as a fraction of the peak learning rate",
        valid=_float32_in(0.0, 1.0, "a number in [0, 1]"),
        sweep=True,
        short="final",
        applies=(_when("schedule", "cosine", "warmup-cosine"), "only the cosine schedules decay"),
    )
    dropout_rate: float = _field(
        DEFAULT_DROPOUT_RATE,
        "dropout rate after the last hidden layer, in [0, 1); unset, a model of yours with its "
        "own rate keeps it",
        valid=_UNIT_FRACTION,
        aliases=("--dropout",),
        sweep=True,
        short="dropout",
        label="always",
    )
    label_smoothing: float = _field(
        0.0,
        "label smoothing of the training loss, in [0, 1): the targets are optax.smooth_labels' "
        "(1 - this on the label, this spread over every class); validation and test losses are "
        "not smoothed",
        valid=_UNIT_FRACTION,
        sweep=True,
        short="ls",
        in_state=True,
    )
    z_loss: float = _field(
        0.0,
        "coefficient of the logit z-loss added to the training loss: this x the mean over the "
        "batch's examples of logsumexp(logits)^2 (PaLM's, which keeps the softmax's normaliser "
        "near 1); validation and test losses leave it out",
        valid=_float32_in(0.0, FLOAT32_MAX, "a number >= 0 (finite in float32)"),
        sweep=True,
        short="zl",
        in_state=True,
    )
    hidden_sizes: tuple[int, ...] = _field(
        DEFAULT_HIDDEN_SIZES,
        "widths of the MLP's ReLU hidden layers, e.g. 128,128",
        valid=(
            lambda sizes: len(sizes) >= 1 and all(_is_int(h) and 0 < h < 2**31 for h in sizes),
            "one or more positive integers below 2**31",
        ),
        aliases=("--hidden",),
        sweep=True,
        parse=parse_sizes,
        list_separator=":",
        short="hidden",
        label="always",
        applies=(
            _when("model", "mlp"),
            "model={model!r} has no hidden sizes, they set the MLP's layers",
        ),
        compiled=2,
    )
    adam_epsilon: float = _field(
        1e-7,
        "epsilon of adam and adamw (Keras's default; optax's is 1e-8)",
        valid=_POSITIVE_FLOAT32,
        applies=(_when("optimizer", "adam", "adamw"), "sgd has no epsilon"),
    )
    precision: str = _field(
        "f32",
        "f32, or bf16: the model computes in bfloat16 (matmul inputs, activations) on float32 "
        "parameters, gradients and optimizer state; refused where the device has no hardware "
        "bfloat16",
        choices=PRECISIONS,
    )
    patience: int = _field(
        0,
        "stop a run (a sweep member) once its validation accuracy has not improved for this "
        "many epochs; 0: never",
        valid=_int_in(0, 2**31, "an integer in [0, 2**31)"),
    )
    target_accuracy: float | None = _field(
        None,
        "report the first epoch, and the training seconds, at which the validation accuracy "
        "reached this value (in (0, 1])",
        valid=(
            lambda value: value is None or (_is_real(value) and 0.0 < value <= 1.0),
            "a number in (0, 1]",
        ),
        parse=float,
    )
    stop_at_target: bool = _field(
        False,
        "end a run when it reaches --target-accuracy (a sweep: when every member has)",
        parse="flag",
    )
    batch_size: int = _field(
        512, "examples per optimizer step; the last, smaller batch is kept", valid=_COUNT
    )
    epochs: int = _field(10, "passes over the training set", valid=_COUNT)
    seed: int = _field(
        0,
        "root of every random stream of the run: init, shuffling, dropout",
        valid=_int_in(0, 2**32, "an integer in [0, 2**32)"),
    )
    validation: str = _field(
        "test",
        "validate each epoch on the test set (as the notebook did) or on the last "
        "--validation-size training examples (Keras's validation_split)",
        group="data",
        choices=VALIDATION_MODES,
    )
    validation_size: int = _field(
        10_000,
        "examples held out with --validation holdout",
        valid=_COUNT,
        group="data",
        applies=(_when("validation", "holdout"), "only --validation holdout holds examples out"),
    )
    eval_batch_size: int = _field(
        2_000,
        "examples per chunk in evaluation: bounds its memory, not its result",
        valid=_COUNT,
        defines_run=False,
    )

    def __post_init__(self) -> None:
        # Normalise containers first so that a config read back from JSON (lists) compares equal.
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        values = {name: getattr(self, name) for name in FIELDS}
        # In declaration order, so that the fields an `applies` reads (model, optimizer, schedule,
        # validation) are checked before the fields that depend on them.
        for name, field in FIELDS.items():
            value, valid = values[name], field.metadata["valid"]
            if valid is not None and not valid[0](value):
                _refuse(name, value, valid[1])
            if not applies(name, values) and value != field.default:  # it would be ignored
                why = field.metadata["applies"][1].format(**values)
                _refuse(name, value, "the default here: " + why)
        if self.nesterov and _float32(self.momentum) == 0.0:  # the look-ahead is a momentum step
            _refuse("nesterov", True, "false with momentum 0 (Nesterov momentum needs momentum)")
        if self.warmup_epochs >= self.epochs:
            _refuse(
                "warmup_epochs", self.warmup_epochs, f"fewer than the run's {self.epochs} epochs"
            )
        if self.stop_at_target and self.target_accuracy is None:
            _refuse("stop_at_target", True, "false without --target-accuracy")

    @property
    def sets_dropout_rate(self) -> bool:
        """Whether the dropout rate was given, rather than left at its default (`ModelsOwn`)."""
        return not isinstance(self.dropout_rate, ModelsOwn)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error (a config from another version)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(
                f"unknown configuration field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(sorted(FIELDS))}"
            )
        if values.get("validation", "test") != "holdout":  # a record from before the rule:
            values = {k: v for k, v in values.items() if k != "validation_size"}  # it did nothing
        return cls(**values)


# The schema, read off the fields' metadata: what the sweep, the labels and the selections use.
FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
# What a sweep's members differ in besides the seed, in the order labels name them: the fields of
# a configuration's key (`sweep.members.Member.config_key`).
SWEEP_FIELDS = tuple(name for name, field in FIELDS.items() if field.metadata["sweep"])
# Those compiled into the program, by their place among the sweep grid's outer loops (a model,
# then its own settings): members that differ in one train in separate programs.
COMPILED_SWEEP_FIELDS = tuple(
    sorted(
        (name for name in SWEEP_FIELDS if FIELDS[name].metadata["compiled"]),
        key=lambda name: FIELDS[name].metadata["compiled"],
    )
)
# The sweep grid's order, outermost first: the compiled fields (so that a program's members are
# neighbours), then the others as declared.
GRID_ORDER = COMPILED_SWEEP_FIELDS + tuple(
    name for name in SWEEP_FIELDS if name not in COMPILED_SWEEP_FIELDS
)
# Short names in labels and selections (`lr=0.003`) -> the field.
SHORT_NAMES = {
    field.metadata["short"]: name for name, field in FIELDS.items() if field.metadata["short"]
}


def applies(name: str, values: Mapping[str, Any]) -> bool:
    """Whether field `name` does anything in a configuration with these `values` (missing ones
    at their defaults): momentum only for sgd, hidden sizes only for the MLP..."""
    rule = FIELDS[name].metadata["applies"]
    return rule is None or rule[0](values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _float32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _refuse(name: str, value: Any, expected: str) -> None:
    raise ConfigError(f"invalid {name}={value!r}: expected {expected}")
