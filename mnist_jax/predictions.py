"""Test-set predictions kept on disk: each model's predicted class and its probability per example.

A run directory (and a sweep directory, one row per member in members.json's order) holds them as
`predictions.npz`, a numpy archive of plain arrays (read with `allow_pickle=False`):

- `predicted` (models, examples): the predicted class;
- `confidence` (models, examples) float32: the probability given to it;
- `labels` (examples,): the true classes, so two files can be checked to cover one test set;
- `valid` (models,) bool: False for a sweep member that diverged (its rows are zeros).

This is what comparing models example by example (McNemar's test, the two runs' interval), a run's
Wilson interval and a sweep's interval over seeds and test images need, at three bytes per example
and model less than the logits.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_jax.errors import ConfigError
from mnist_jax.fileio import save

PREDICTIONS_FILE = "predictions.npz"
_ARRAYS = ("predicted", "confidence", "labels", "valid")


@dataclasses.dataclass(frozen=True)
class Predictions:
    predicted: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        models, examples = np.shape(self.predicted) if np.ndim(self.predicted) == 2 else (-1, -1)
        if (
            models < 0
            or np.shape(self.confidence) != (models, examples)
            or np.shape(self.labels) != (examples,)
            or np.shape(self.valid) != (models,)
        ):
            raise ValueError(
                "predictions need predicted and confidence of shape (models, examples), labels "
                f"(examples,) and valid (models,); got {np.shape(self.predicted)}, "
                f"{np.shape(self.confidence)}, {np.shape(self.labels)}, {np.shape(self.valid)}"
            )

    @property
    def num_models(self) -> int:
        return int(self.predicted.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """(models, examples) bool: the prediction is the label (False for invalid rows)."""
        return (self.predicted == self.labels[None, :]) & self.valid[:, None]

    @property
    def accuracy(self) -> np.ndarray:
        """(models,) test accuracy; NaN for invalid rows."""
        return np.where(self.valid, self.correct.mean(axis=1), np.nan)

    def rows(self, indices: Sequence[int]) -> Predictions:
        """The predictions of the models at `indices`."""
        indices = list(indices)
        return Predictions(
            self.predicted[indices], self.confidence[indices], self.labels, self.valid[indices]
        )

    @classmethod
    def from_probabilities(
        cls, probabilities: Sequence[np.ndarray | None], labels: np.ndarray
    ) -> Predictions:
        """From each model's probabilities (examples, classes), or None for a model without
        predictions (a diverged sweep member)."""
        labels = np.asarray(labels)
        examples = labels.shape[0]
        num_classes = max(
            [int(labels.max(initial=0)) + 1]
            + [int(np.shape(p)[-1]) for p in probabilities if p is not None]
        )
        dtype = np.min_scalar_type(max(num_classes - 1, 0))
        predicted = np.zeros((len(probabilities), examples), dtype)
        confidence = np.zeros((len(probabilities), examples), np.float32)
        valid = np.zeros(len(probabilities), bool)
        for k, p in enumerate(probabilities):
            if p is None:
                continue
            p = np.asarray(p)
            if p.shape[0] != examples:
                raise ValueError(f"model {k} has {p.shape[0]} predictions for {examples} labels")
            predicted[k] = np.argmax(p, axis=-1)
            confidence[k] = np.max(p, axis=-1)
            valid[k] = True
        return cls(predicted, confidence, labels.astype(dtype), valid)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the archive atomically (`fileio.save`)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{name: getattr(self, name) for name in _ARRAYS})
        return save(path, lambda file: file.write(buffer.getvalue()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        """Read an archive `save` wrote; ConfigError naming the file if it is missing, damaged or
        not predictions."""
        path = Path(path)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an archive of named arrays")
            with loaded as archive:
                arrays = {name: archive[name] for name in _ARRAYS}
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            raise ConfigError(f"{path} is not a readable predictions file ({error})") from None
        try:
            valid = arrays["valid"]
            if valid.dtype != bool and not np.isin(valid, (0, 1)).all():
                raise ValueError("valid must be true or false for each model")
            arrays["valid"] = valid.astype(bool)
            predictions = cls(**arrays)
            _check_values(predictions)
        except ValueError as error:
            raise ConfigError(f"{path} is not a readable predictions file ({error})") from None
        return predictions


def _check_values(predictions: Predictions) -> None:
    """What shapes alone do not say: integer classes, probabilities, something to compare."""
    if not (
        np.issubdtype(predictions.predicted.dtype, np.integer)
        and np.issubdtype(predictions.labels.dtype, np.integer)
    ):
        raise ValueError("classes must be integers")
    if predictions.num_models == 0 or predictions.labels.size == 0:
        raise ValueError("no models or no test images")
    confidence = predictions.confidence[predictions.valid]
    if not np.all((confidence >= 0) & (confidence <= 1)):
        raise ValueError("confidences must be probabilities in [0, 1]")
    if np.any(predictions.labels < 0) or np.any(predictions.predicted < 0):
        raise ValueError("classes must not be negative")
