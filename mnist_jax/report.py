"""What a finished run leaves behind: test metrics, plots and a readable report, from arrays alone.

`evaluate_test_set` computes the notebook's final evaluation from parameters; `write_run_outputs`
turns it into `metrics.json`, `predictions.npz` (each test image's predicted class and its
probability, for comparing runs example by example), the PNG plots and `report.md`. The baseline
calls both after training, and `experiments.evaluate` calls the same two on parameters restored
from a checkpoint, which is what makes a run directory enough to re-evaluate a run and re-draw its
plots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from mnist_jax import plots
from mnist_jax.epochs import metric_keys, metric_words
from mnist_jax.evaluate import predict_logits
from mnist_jax.fileio import write_json_atomic, write_text_atomic
from mnist_jax.metrics import classification_arrays, report_from_arrays
from mnist_jax.models import Model, describe_text
from mnist_jax.predictions import PREDICTIONS_FILE, Predictions
from mnist_jax.rundir import METRICS_FILE
from mnist_jax.stats import wilson_interval

# The test image shown with its prediction: the first one, so every run shows the same.
SAMPLE_INDEX = 0
TOP_ERRORS = 5
REPORT_FILE = "report.md"


class RunArrays(NamedTuple):
    """What a run's figures are drawn from."""

    dataset: Any  # `data.Dataset`: images, labels, class names
    history: Sequence[dict]  # the epoch records
    metrics: dict[str, Any]  # `evaluate_test_set`'s report (confusion matrix, top errors...)
    probabilities: np.ndarray  # (N_test, C)


class RunFigure(NamedTuple):
    file: str
    caption: str  # its heading in report.md
    draw: Callable[[RunArrays], Any]  # arrays -> a matplotlib Figure


# The run's figures, in report.md's order: a new figure is one entry here (and its function in
# `plots`, from arrays to a figure).
RUN_FIGURES = {
    "samples_per_class": RunFigure(
        "samples_per_class.png",
        "One training example per class",
        lambda a: plots.plot_samples_per_class(
            a.dataset.train_images, a.dataset.train_labels, list(a.dataset.class_names)
        ),
    ),
    "training_curves": RunFigure(
        "training_curves.png",
        "Loss and accuracy per epoch",
        lambda a: plots.plot_training_curves(a.history),
    ),
    "learning_rate": RunFigure(
        "learning_rate.png",
        "Learning rate per epoch",
        lambda a: plots.plot_learning_rate(a.history),
    ),
    "confusion_matrix": RunFigure(
        "confusion_matrix.png",
        "Confusion matrix on the test set",
        lambda a: plots.plot_confusion_matrix(
            np.asarray(a.metrics["confusion_matrix"]), list(a.dataset.class_names)
        ),
    ),
    "top_errors": RunFigure(
        "top_errors.png",
        f"The {TOP_ERRORS} most confidently wrong test images",
        lambda a: plots.plot_top_errors(
            a.dataset.test_images, a.metrics["top_errors"], list(a.dataset.class_names)
        ),
    ),
    "sample_prediction": RunFigure(
        "sample_prediction.png",
        f"Test image {SAMPLE_INDEX} with its prediction",
        lambda a: plots.plot_sample_prediction(
            a.dataset.test_images[SAMPLE_INDEX],
            a.probabilities[SAMPLE_INDEX],
            int(a.dataset.test_labels[SAMPLE_INDEX]),
            list(a.dataset.class_names),
        ),
    ),
}
PLOT_FILES = {key: figure.file for key, figure in RUN_FIGURES.items()}


def evaluate_test_set(
    model: Model,
    params: Any,
    test_images: jax.Array,
    test_labels: jax.Array,
    *,
    num_classes: int,
    chunk_size: int = 2000,
) -> tuple[dict[str, Any], np.ndarray]:
    """The notebook's final evaluation: (report dict, test probabilities (N, C) as numpy).

    The dict has `test_loss`, `test_accuracy`, `test_correct`, `test_accuracy_wilson95` (the
    Wilson 95% interval over the test images), `per_class_accuracy`, `confusion_matrix` and the
    `top_errors` (the 5 most confidently wrong test images).
    """
    logits = predict_logits(model, params, test_images, chunk_size=chunk_size)
    return test_report(logits, test_labels, num_classes)


def test_report(logits: Any, labels: Any, num_classes: int) -> tuple[dict[str, Any], np.ndarray]:
    """`evaluate_test_set`'s (report dict, probabilities) from the test logits (N, C)."""
    arrays = jax.device_get(classification_arrays(logits, labels, num_classes, TOP_ERRORS))
    probabilities = np.asarray(arrays["probabilities"])
    labels = np.asarray(jax.device_get(labels))
    correct = int(np.sum(np.argmax(probabilities, axis=1) == labels))
    report = report_from_arrays(arrays)
    report.update(
        test_correct=correct,
        test_accuracy_wilson95=list(wilson_interval(correct, int(labels.size))),
    )
    return report, probabilities


def write_plots(
    run_dir: Path,
    dataset,
    history: Sequence[dict],
    metrics: dict[str, Any],
    probabilities: np.ndarray,
    only: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Draws the run's figures (`RUN_FIGURES`, or those of its keys in `only`) from arrays and
    saves them as PNGs in `run_dir`."""
    arrays = RunArrays(dataset, history, metrics, probabilities)
    return {
        key: plots.save_figure(figure.draw(arrays), run_dir / figure.file)
        for key, figure in RUN_FIGURES.items()
        if only is None or key in only
    }


def write_run_outputs(
    run_dir: str | Path,
    dataset,
    history: Sequence[dict],
    metrics: dict[str, Any],
    probabilities: np.ndarray,
    *,
    only_missing: bool = False,
) -> list[Path]:
    """Write `metrics.json`, `predictions.npz`, the plots and `report.md`; return the paths
    written. `metrics` gains `test_correct` and `test_accuracy_wilson95`, the Wilson 95% interval
    of the test accuracy over the test set's examples.

    `only_missing` leaves every file that exists as it is (completing a run whose outputs were
    interrupted, without replacing what it already wrote).
    """
    run_dir = Path(run_dir)

    def wanted(name: str) -> bool:
        return not (only_missing and (run_dir / name).exists())

    predictions = Predictions.from_probabilities([probabilities], dataset.test_labels)
    correct = int(predictions.correct.sum())
    metrics = {
        **metrics,
        "test_correct": correct,
        "test_accuracy_wilson95": list(wilson_interval(correct, len(predictions.labels))),
    }
    written = []
    if wanted(PREDICTIONS_FILE):
        written.append(predictions.save(run_dir / PREDICTIONS_FILE))
    if wanted(METRICS_FILE):
        written.append(write_json_atomic(run_dir / METRICS_FILE, metrics))
    missing = [key for key, name in PLOT_FILES.items() if wanted(name)]
    written += write_plots(run_dir, dataset, history, metrics, probabilities, missing).values()
    if wanted(REPORT_FILE):
        written.append(write_text_atomic(run_dir / REPORT_FILE, render_report(dataset, metrics)))
    return written


def data_sources_line(validation: str | None, test_examples: int) -> str:
    """Which data each number comes from, as one Markdown list item."""
    if validation == "holdout":
        where = "a held-out part of the training set (not trained on)"
    elif validation == "test":
        where = "the test set (the notebook's choice: whatever is selected by it, is selected on "
        where += "the test set)"
    else:
        where = "data the record does not name"
    return (
        f"- data: training and validation numbers per epoch; validation on {where}; test numbers "
        f"on the {test_examples:,} test images, after training"
    )


def time_to_target_text(record: dict[str, Any] | None) -> str | None:
    """A run's time to target (`metrics.json`'s `time_to_target`) in words; None without one."""
    if not isinstance(record, dict) or record.get("target") is None:
        return None
    if not record.get("reached"):
        return f"validation accuracy never reached the target {record['target']:.4f}"
    return (
        f"validation accuracy reached the target {record['target']:.4f} at epoch "
        f"{record['epoch']}, after {record['seconds']:.2f} s of training (compilation excluded)"
    )


def render_report(dataset, metrics: dict[str, Any]) -> str:
    """A short Markdown summary embedding the plots and the headline numbers."""
    history = metrics["history"]
    lines = [
        f"# {dataset.name}: test accuracy {metrics['test_accuracy']:.2%}",
        "",
        f"- test loss **{metrics['test_loss']:.4f}**, "
        f"test accuracy **{metrics['test_accuracy']:.4f}**"
        f" after {len(history)} epochs (seed {metrics['seed']})",
    ]
    interval = metrics.get("test_accuracy_wilson95")
    if interval:
        lines.append(
            f"- 95% interval of the test accuracy over the {len(dataset.test_labels):,} test "
            f"images (Wilson): [{interval[0]:.4f}, {interval[1]:.4f}]; it covers the test set's "
            "sampling only: another seed moves the accuracy too (a sweep measures that)"
        )
    lines.append(data_sources_line(metrics.get("validation"), len(dataset.test_labels)))
    model = metrics.get("model")
    if isinstance(model, dict):
        lines.append(
            f"- model **{describe_text(model)}**, {model.get('parameters', 0):,} parameters"
        )
    if metrics.get("best_epoch") is not None:
        lines.append(
            f"- final parameters (epoch {len(history)}): test accuracy "
            f"{metrics['test_accuracy']:.4f}; best epoch by validation accuracy: "
            f"{metrics['best_epoch']} (validation {metrics['best_val_accuracy']:.4f}, test "
            f"{metrics['best_test_accuracy']:.4f})"
            + ("; stopped early (--patience)" if metrics.get("stopped_early") else "")
        )
        if metrics.get("validation") == "test":
            lines.append(
                "- validation is on the test set (the notebook's choice), so the best epoch is "
                "chosen on the test set and its test accuracy is optimistic; use "
                "`--validation holdout` for an honest selection"
            )
    target = time_to_target_text(metrics.get("time_to_target"))
    if target:
        lines.append(f"- {target}")
    if metrics.get("train_seconds") is not None:
        line = f"- training took {metrics['train_seconds']:.1f} s"
        if metrics.get("compile_seconds") is not None:
            line += f", of which compilation {metrics['compile_seconds']:.1f} s"
        if metrics.get("examples_per_second") is not None:
            line += f"; steady epochs ran at {metrics['examples_per_second']:,.0f} examples/s"
        lines.append(line)
    lines.append(f"- dataset fingerprint `{dataset.fingerprint[:16]}`")
    # Every metric any record holds (a resumed run's older records may lack a newer one).
    columns = list(dict.fromkeys(key for record in history for key in metric_keys(record)))
    lines += [
        "",
        "| epoch | "
        + " | ".join(" ".join(metric_words(k)) for k in columns)
        + " | learning rate | seconds |",
        "|---:|" + "---:|" * (len(columns) + 2),
    ]
    lines += [
        f"| {r['epoch']} | "
        + " | ".join(f"{r.get(k, float('nan')):.4f}" for k in columns)
        + f" | {r.get('learning_rate', float('nan')):.3g} | {r['seconds']:.2f} |"
        for r in history
    ]
    per_class = ", ".join(
        f"{name}: {acc:.3f}"
        for name, acc in zip(dataset.class_names, metrics["per_class_accuracy"])
        if acc is not None
    )
    lines += ["", f"Per-class accuracy: {per_class}.", ""]
    for figure in RUN_FIGURES.values():
        lines += [f"## {figure.caption}", "", f"![{figure.caption}]({figure.file})", ""]
    return "\n".join(lines)
