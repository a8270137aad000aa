"""What a sweep writes: members.json, summary.json (the analysis behind it), predictions.npz, the
figures and report.md, and the throughput of the epochs trained. Pure functions of a `SweepResult`;
`experiments.sweep` prints and calls them, and report.md's captions are in `sweep.report`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_jax import plots
from mnist_jax.epochs import time_to_target
from mnist_jax.fileio import write_json_atomic, write_text_atomic
from mnist_jax.logs import json_safe
from mnist_jax.predictions import PREDICTIONS_FILE
from mnist_jax.stats import verdict, wilson_interval
from mnist_jax.stats.calibration import MAX_SUBSETS
from mnist_jax.sweep.analysis import (
    comparisons,
    ensemble_curves,
    search_curve,
    selected_configuration,
    test_intervals,
)
from mnist_jax.sweep.members import CONFIG_KEY_FIELDS
from mnist_jax.sweep.report import REPORT_FILE, render_sweep_report
from mnist_jax.sweep.results import config_labels, curves_by_config, row_key, values_by_config
from mnist_jax.sweep.stats import member_histories, time_to_target_by_config

MEMBERS_FILE, SUMMARY_FILE = "members.json", "summary.json"
# The members' own fields: in sweep.json's "config" these hold the first member's values.
PER_MEMBER_FIELDS = ("seed", *CONFIG_KEY_FIELDS)


class SweepArrays(NamedTuple):
    """What a sweep's figures are drawn from."""

    result: Any  # `SweepResult`
    summary: dict  # summary.json (`analyse`)
    labels: dict  # configuration key -> its label among the sweep's


class SweepFigure(NamedTuple):
    caption: str  # report.md's text under it; {reliability_of} is summary.json's
    draw: Callable[[SweepArrays], Any]  # arrays -> a matplotlib Figure, or None: nothing to show


def _ensembles(a: SweepArrays) -> dict:
    return {
        r["label"]: r["ensemble_curve"] for r in a.summary["configurations"] if r["ensemble_curve"]
    }


def _accuracy_distribution(a: SweepArrays):
    by_config = values_by_config(a.result.members, "test_accuracy")
    accuracies = {a.labels[key]: list(seeds.values()) for key, seeds in by_config.items()}
    return plots.plot_accuracy_distribution(accuracies) if accuracies else None


def _learning_curves(a: SweepArrays):
    by_config = curves_by_config(a.result.members, "val_accuracy")
    curves = {a.labels[key]: curve for key, curve in by_config.items()}
    return plots.plot_learning_curves_band(curves) if curves else None


def _ensemble_size(a: SweepArrays):
    curves = _ensembles(a)
    return plots.plot_ensemble_curves(curves) if curves else None


def _reliability(a: SweepArrays):
    curves = _ensembles(a)
    if not curves:
        return None
    label = a.summary["reliability_of"]
    full = curves[label]
    return plots.plot_reliability_diagram(
        {k: np.asarray(v, np.float64) for k, v in full["reliability"].items()},
        ece=full["full_ece"],
        label=f"{label}, ensemble of {full['size'][-1]}",
    )


def _expected_max(a: SweepArrays):
    search = a.summary["search"]
    if not search:
        return None
    configurations = search.get("configurations")
    by_configuration = None
    if configurations:
        low, high = configurations["seeds"]
        seeds = f"{low}" if low == high else f"{low}-{high}"
        by_configuration = {f"by the mean over {seeds} seeds": configurations}
    return plots.plot_expected_max(
        {"members (configuration x seed)": search}, by_configuration=by_configuration
    )


# The sweep's figures, in report.md's order, each in KEY.png: a new figure is one entry here (and
# its function in `plots`, from arrays to a figure).
SWEEP_FIGURES = {
    "accuracy_distribution": SweepFigure(
        "Test accuracy of every seed per configuration (dots), with the mean and its Student-t 95% "
        "interval over seeds, the test set fixed (the test images' own sampling is in the "
        "table's seeds-and-test-images interval): the spread of a configuration's seeds; "
        "whether two configurations differ is the paired comparison's question (above), which "
        "can tell apart overlapping clouds because seed s is shared.",
        _accuracy_distribution,
    ),
    "learning_curves": SweepFigure(
        "Validation accuracy per epoch, mean and one standard deviation over seeds (a band, or "
        "error bars for a single epoch): where curves still rise at the last epoch, more epochs "
        "would help.",
        _learning_curves,
    ),
    "ensemble_size": SweepFigure(
        "Accuracy, negative log-likelihood and expected calibration error of the average of k "
        f"members' probabilities, averaged over every subset of k members (over {MAX_SUBSETS} "
        "drawn at random where there are more): how much each added member buys.",
        _ensemble_size,
    ),
    "reliability": SweepFigure(
        "Reliability diagram of the full ensemble of {reliability_of}: bars below the diagonal "
        "are over-confident bins, above it under-confident; each bar is labelled with the images "
        "it holds (a bin of a few images says little), and the lower panel counts them on a log "
        "scale.",
        _reliability,
    ),
    "expected_max": SweepFigure(
        "Expected best validation accuracy of n trials drawn without replacement from this "
        "sweep's N (each trial one member: a configuration and a seed, so the best includes the "
        "seed's luck; unbiased estimator of Tang et al. 2020), with the band holding the middle "
        "80% of that best. At n = N it is the observed best by construction, so the curve "
        "flattens there whatever the search: it says nothing about more than N trials. Where "
        "configurations have several seeds, the right panel gives the expected best "
        "configuration judged by its mean over seeds, each configuration one trial.",
        _expected_max,
    ),
}
PLOT_FILES = {key: f"{key}.png" for key in SWEEP_FIGURES}


def throughput(
    programs,
    epoch_seconds: dict[int, list[float]],
    num_train: int,
    epoch_members: dict[int, list[int]] | None = None,
) -> dict:
    """Training examples per second of the epochs trained in this process, all members together and
    per member; the first epoch of a program is left out when it trained more (warm-up).
    `epoch_members`: how many members each epoch trained (default: all of the program's); a member
    stopped early or diverged trains no examples."""
    examples, seconds = 0, 0.0
    for program in programs:
        times = epoch_seconds.get(program.index, [])
        counts = (epoch_members or {}).get(program.index) or [len(program.members)] * len(times)
        start = 1 if len(times) > 1 else 0
        examples += num_train * sum(counts[start:])
        seconds += sum(times[start:])
    rate = examples / seconds if seconds else None
    members = sum(len(p.members) for p in programs)
    return {
        "train_seconds": sum(sum(t) for t in epoch_seconds.values()) if seconds else 0.0,
        "examples_per_second": rate,
        "examples_per_second_per_member": None if rate is None else rate / members,
    }


def analyse(result, config, reference, data_record: dict) -> dict:
    """summary.json's statistics: per configuration (`SweepResult.summary`) its time to target
    (with a target), label (naming what varies), test intervals from the predictions, comparison
    with `reference` (a configuration key) and ensemble curve; the configuration selected by
    validation accuracy; the search's expected-best curve; and `data` (which data each number
    comes from)."""
    keys = [r.member.config_key for r in result.members]
    labels = config_labels(keys)
    rows = result.summary()
    if config.target_accuracy is not None:  # in each member's share of its program's time
        histories = member_histories(result.members)
        reached = time_to_target_by_config(result.members, config.target_accuracy, histories)
        for row in rows:
            row["time_to_target"] = reached[row_key(row)]
    intervals = test_intervals(keys, result.predictions())
    compared = comparisons(result.members, reference)
    curves = ensemble_curves(result.members, result.test_labels)
    for row in rows:
        key = row_key(row)
        row["label"] = labels[key]
        row["test_intervals"] = intervals[key]
        row["ensemble_curve"] = curves.get(key)
        row["comparison"] = None
        if key in compared:
            row["comparison"] = {
                **compared[key],
                "verdict": verdict(labels[key], labels[reference], compared[key]),
            }
    chosen = selected_configuration(rows)
    selected = None
    if chosen is not None:
        row = rows[chosen]
        both = row["test_intervals"]["over_seeds_and_examples"]
        selected = {
            "label": row["label"],
            "index": chosen,
            "by": "final_val_accuracy",
            "validation": row["final_val_accuracy"]["mean"],
            "test": row["test_accuracy"]["mean"],
            "test_interval": [both["low"], both["high"]],
        }
    # The reliability diagram shows the selected configuration's ensemble, or the first one's
    # when the selected configuration has fewer than two live members.
    ensembled = [row["label"] for row in rows if row["ensemble_curve"]]
    reliability_of = selected and selected["label"]
    if reliability_of not in ensembled:
        reliability_of = ensembled[0] if ensembled else None
    return {
        "configurations": rows,
        "reference": labels[reference],
        "selected": selected,
        "reliability_of": reliability_of,
        "search": search_curve(result.members),
        "data": data_record,
    }


def write_plots(
    sweep_dir: Path, result, summary: dict, only_missing: bool = False
) -> dict[str, Path]:
    """The sweep's figures that have something to show (`only_missing`: those not in
    `sweep_dir` already); returns `SWEEP_FIGURES` key -> path of the figures written."""
    labels = config_labels([r.member.config_key for r in result.members])
    arrays = SweepArrays(result, summary, labels)
    written = {}
    for key, file in PLOT_FILES.items():
        if only_missing and (sweep_dir / file).exists():
            continue
        drawn = SWEEP_FIGURES[key].draw(arrays)
        if drawn is not None:
            written[key] = plots.save_figure(drawn, sweep_dir / file)
    return written


def member_entries(result, target: float | None) -> list[dict]:
    """members.json: each member's values, program, final and best-epoch test numbers (with the
    Wilson 95% interval of its test accuracy), history, divergence and (with a target) time to
    target: `seconds` its program's, `member_seconds` its share (`stats.member_histories`)."""
    predictions = result.predictions()
    correct = predictions.correct.sum(axis=1)
    histories = member_histories(result.members)
    entries = []
    for k, r in enumerate(result.members):
        valid, reached = predictions.valid[k], None
        if target is not None:
            member_seconds = time_to_target(histories(r), target)["seconds"]
            reached = {**time_to_target(r.history, target), "member_seconds": member_seconds}
        entry = {
            **r.member.to_dict(),
            "program": r.program,
            "test_accuracy": (r.test or {}).get("test_accuracy"),
            "test_loss": (r.test or {}).get("test_loss"),
            "test_correct": int(correct[k]) if valid else None,
            "test_accuracy_wilson95": (
                list(wilson_interval(int(correct[k]), len(predictions.labels))) if valid else None
            ),
            **(r.best or {}),
            "history": r.history,
            "diverged_epoch": r.diverged_epoch,
            "time_to_target": reached,
        }
        entries.append(json_safe(entry))
    return entries


def data_sources(dataset, data, config) -> dict:
    """Which data trained, validated and tested the members (summary.json's "data")."""
    return {
        "dataset": dataset.name,
        "validation": config.validation,
        "train_examples": int(data.train_images.shape[0]),
        "validation_examples": int(data.val_images.shape[0]),
        "test_examples": int(data.test_images.shape[0]),
    }


def write_sweep_files(
    sweep_dir: Path, result, summary: dict, entries: list[dict], *, only_missing: bool
) -> list[Path]:
    """members.json, predictions.npz, summary.json, the figures and report.md (`only_missing`:
    those not in `sweep_dir` already, for a finished sweep resumed); the paths written."""

    def wanted(name: str) -> bool:
        return not (only_missing and (sweep_dir / name).exists())

    written = []
    if wanted(MEMBERS_FILE):
        written.append(write_json_atomic(sweep_dir / MEMBERS_FILE, entries))
    if wanted(PREDICTIONS_FILE):
        written.append(result.predictions().save(sweep_dir / PREDICTIONS_FILE))
    summary = json_safe(summary)
    if wanted(SUMMARY_FILE):
        written.append(write_json_atomic(sweep_dir / SUMMARY_FILE, summary))
    written += write_plots(sweep_dir, result, summary, only_missing=only_missing).values()
    if wanted(REPORT_FILE):
        keys = [r.member.config_key for r in result.members]
        labels = config_labels(keys)
        reliability_of = summary.get("reliability_of")
        present = {
            key: (file, SWEEP_FIGURES[key].caption.format(reliability_of=reliability_of))
            for key, file in PLOT_FILES.items()
            if (sweep_dir / file).exists()
        }
        report = render_sweep_report(summary, entries, [labels[k] for k in keys], present)
        written.append(write_text_atomic(sweep_dir / REPORT_FILE, report))
    return written
