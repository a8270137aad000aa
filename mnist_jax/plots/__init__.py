"""Figures for MNIST experiments, as pure functions from arrays to `matplotlib.figure.Figure`.

Nothing here trains, loads data or touches pyplot: every function builds a fresh
`Figure` (no global state, no GUI backend, safe to call from scripts and threads),
so a notebook can show the result (a Figure returned by a cell displays as a PNG once
`%matplotlib inline` has run) and an experiment can write it with `save_figure`.

Inputs are numpy-like (jax arrays work: everything goes through `np.asarray`).
Images may be square, ``(N, 28, 28)``, or flattened, ``(N, 784)``; uint8 images are
drawn on a 0..255 grey scale, floats in [0, 1] on 0..1, anything else auto-scaled.
Functions that show classes take ``class_names`` (default ``"0"``, ``"1"``, ...).

The figures live in one module per subject: `images` (samples per class, top errors, one
prediction), `training` (training curves, learning rate, confusion matrix), `sweeps` (accuracy
across seeds, learning-curve bands, ensembles of growing size, expected best result after n
trials) and `calibration` (reliability diagram); all are importable from here, with `save_figure`.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from mnist_jax.fileio import save
from mnist_jax.plots.calibration import plot_reliability_diagram
from mnist_jax.plots.images import plot_sample_prediction, plot_samples_per_class, plot_top_errors
from mnist_jax.plots.sweeps import (
    plot_accuracy_distribution,
    plot_ensemble_curves,
    plot_expected_max,
    plot_learning_curves_band,
)
from mnist_jax.plots.training import (
    plot_confusion_matrix,
    plot_learning_rate,
    plot_training_curves,
)

__all__ = [
    "plot_samples_per_class",
    "plot_training_curves",
    "plot_learning_rate",
    "plot_confusion_matrix",
    "plot_top_errors",
    "plot_sample_prediction",
    "plot_accuracy_distribution",
    "plot_learning_curves_band",
    "plot_ensemble_curves",
    "plot_expected_max",
    "plot_reliability_diagram",
    "save_figure",
]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write `fig` to `path` atomically and return the path.

    Parent directories are created. The image is written through `mnist_jax.fileio.save`, so a
    reader never sees a half-written file, a failure leaves the old file intact, and a file that
    cannot be written (disk full, read-only folder) is an `OutputError` naming it. The format
    follows the suffix (PNG when there is none or it is ``.png``).
    """
    target = Path(path)
    fmt = target.suffix[1:].lower() or "png"
    return save(target, lambda handle: fig.savefig(handle, format=fmt, dpi=dpi))
