"""The run configuration: one frozen, validated dataclass.

Everything that decides what a run computes lives here, so a run directory's `config.json` is enough to
re-create the run. Validation happens once, in `__post_init__`: an invalid value can never reach the
training code, and the error names the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mnist_jax.errors import ConfigError

VALIDATION_MODES = ("test", "holdout")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of one training run. Defaults reproduce the Keras notebook.

    Attributes:
      dataset: dataset name (`mnist`, `fashion_mnist`, `kmnist`, any IDX dataset, or `tfds:NAME`).
      data_dir: folder holding the IDX files; None resolves it (MNIST_JAX_DATA, cache, download).
      hidden_sizes: widths of the ReLU hidden layers.
      dropout_rate: dropout after the last hidden layer, in [0, 1).
      learning_rate: Adam's step size.
      adam_epsilon: Adam's epsilon; 1e-7 is Keras's default (optax's own default is 1e-8).
      batch_size: examples per optimizer step; the epoch's last, smaller batch is kept.
      epochs: passes over the training set.
      seed: the one root of every random stream of the run (init, shuffling, dropout).
      validation: `test` validates on the test set each epoch (what the notebook did); `holdout`
        holds out the last `validation_size` training examples instead (Keras's validation_split).
      validation_size: examples held out when `validation == "holdout"`.
      eval_batch_size: examples per chunk in evaluation; bounds evaluation memory, not its result.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    hidden_sizes: tuple[int, ...] = (128, 128)
    dropout_rate: float = 0.25
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-7
    batch_size: int = 512
    epochs: int = 10
    seed: int = 0
    validation: str = "test"
    validation_size: int = 10_000
    eval_batch_size: int = 2_000

    def __post_init__(self) -> None:
        # Normalise containers first so that a config read back from JSON (lists) compares equal.
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        _check(
            bool(self.dataset) and isinstance(self.dataset, str),
            "dataset",
            self.dataset,
            "a non-empty name",
        )
        _check(
            len(self.hidden_sizes) >= 1 and all(_is_int(h) and h > 0 for h in self.hidden_sizes),
            "hidden_sizes",
            self.hidden_sizes,
            "one or more positive integers",
        )
        _check(
            _is_real(self.dropout_rate) and 0.0 <= self.dropout_rate < 1.0,
            "dropout_rate",
            self.dropout_rate,
            "a number in [0, 1)",
        )
        _check(
            _is_real(self.learning_rate) and self.learning_rate > 0,
            "learning_rate",
            self.learning_rate,
            "a positive number",
        )
        _check(
            _is_real(self.adam_epsilon) and self.adam_epsilon > 0,
            "adam_epsilon",
            self.adam_epsilon,
            "a positive number",
        )
        for name in ("batch_size", "epochs", "validation_size", "eval_batch_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value > 0, name, value, "a positive integer")
        _check(
            _is_int(self.seed) and 0 <= self.seed < 2**32,
            "seed",
            self.seed,
            "an integer in [0, 2**32)",
        )
        _check(
            self.validation in VALIDATION_MODES,
            "validation",
            self.validation,
            " or ".join(VALIDATION_MODES),
        )

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
        """Inverse of `to_dict`; unknown keys are an error, so a config from another version is noticed."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown configuration field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: expected {expected}")
