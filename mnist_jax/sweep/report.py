"""A sweep directory's report.md, rendered from its summary (summary.json's content) alone.

Every number says which data it comes from and what its interval resamples; every figure comes
with one sentence on how to read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mnist_jax.stats.calibration import MAX_SUBSETS
from mnist_jax.stats.compare import MIN_VERDICT_SEEDS
from mnist_jax.stats.intervals import MIN_BOOTSTRAP_SEEDS

REPORT_FILE = "report.md"


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"[{100 * low:.2f}, {100 * high:.2f}]"


def data_sentence(data: Mapping) -> str:
    """Which data trained, validated (selected) and tested the members."""
    test = f"the {data['test_examples']:,} test images, evaluated once after training"
    if data["validation"] == "holdout":
        return (
            f"Members trained on {data['train_examples']:,} training images; validation numbers "
            f"(learning curves, best epoch, selection, time to target) come from the last "
            f"{data['validation_examples']:,} training images, held out and never trained on; "
            f"test numbers come from {test}."
        )
    return (
        f"Members trained on {data['train_examples']:,} training images and were validated on the "
        f"test set (`--validation test`): whatever was selected by validation accuracy (best "
        f"epoch, configuration) was selected on the test set, so its test numbers are optimistic. "
        f"Test numbers come from {test}."
    )


def _table(rows: Sequence[Mapping]) -> list[str]:
    lines = [
        "| configuration | seeds | mean | std | t 95% (seeds) | bootstrap 95% (seeds) "
        "| 95% (seeds and test images) | ensemble | validation mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        stats, intervals = row["test_accuracy"], row.get("test_intervals") or {}
        bootstrap = intervals.get("over_seeds_bootstrap") or (None, None)
        both = intervals.get("over_seeds_and_examples") or {}
        label = row["label"] + (f" ({len(row['diverged'])} diverged)" if row["diverged"] else "")
        lines.append(
            f"| {label} | {stats['n']} | {_pct(stats['mean'])} | {_pct(stats['std'], 3)} "
            f"| {_interval(stats['ci95_low'], stats['ci95_high'])} | {_interval(*bootstrap)} "
            f"| {_interval(both.get('low'), both.get('high'))} "
            f"| {_pct(row.get('ensemble_accuracy'))} "
            f"| {_pct((row.get('final_val_accuracy') or {}).get('mean'))} |"
        )
    return lines


def _comparisons(summary: Mapping) -> list[str]:
    rows = [row for row in summary["configurations"] if row.get("comparison")]
    if not rows:
        return []
    family = max(row["comparison"].get("holm_family", 0) for row in rows)
    holm = f", Holm-adjusted over the {family} comparisons with enough seeds" if family > 1 else ""
    lines = [
        f"## Comparisons with the reference, {summary['reference']}",
        "",
        "Seed by seed (seed s shares initial parameters and batch order across configurations of "
        "one model), on this test set: the paired difference of test accuracy with its Student-t "
        "95% interval (unadjusted), the share of seeds on which the configuration beats the "
        "reference (ties count one half; with its exact interval), and the paired t-test's "
        f"p-value{holm}. Each verdict rests on the paired t-test alone; fewer than "
        f"{MIN_VERDICT_SEEDS} paired seeds give none.",
        "",
    ]
    lines += [f"- {row['comparison']['verdict']}" for row in rows]
    return lines + [""]


def _ensembles(rows: Sequence[Mapping]) -> list[str]:
    curves = [(row["label"], row["ensemble_curve"]) for row in rows if row.get("ensemble_curve")]
    if not curves:
        return []
    sizes = sorted({k for _, curve in curves for k in curve["size"]})
    lines = [
        "## Ensembles",
        "",
        "The average of k members' test probabilities, averaged over every subset of k members "
        f"({MAX_SUBSETS} drawn at random where there are more; accuracy / negative "
        "log-likelihood / expected calibration error, 15 bins); `-` where a configuration has "
        "another number of live members:",
        "",
        "| configuration | " + " | ".join(f"k={k}" for k in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for label, curve in curves:
        cells = {
            k: f"{100 * a:.2f}% / {n:.4f} / {100 * e:.2f}%"
            for k, a, n, e in zip(curve["size"], curve["accuracy"], curve["nll"], curve["ece"])
        }
        lines.append(f"| {label} | " + " | ".join(cells.get(k, "-") for k in sizes) + " |")
    return lines + [""]


def _time_to_target(rows: Sequence[Mapping]) -> list[str]:
    reached = [(row["label"], row["time_to_target"]) for row in rows if row.get("time_to_target")]
    if not reached:
        return []
    target = reached[0][1]["target"]
    lines = [
        f"## Time to validation accuracy {target:g}",
        "",
        "Per configuration: members that reached the target, and the epochs and training seconds "
        "they took (a member's share of its program's time), mean and Student-t 95% interval.",
        "",
        "| configuration | reached | epochs | seconds |",
        "|---|---:|---:|---:|",
    ]
    for label, row in reached:
        epochs, seconds = row["epochs"], row["seconds"]
        text = "-"
        if seconds["mean"] is not None:
            text = f"{seconds['mean']:.2f}"
            if seconds["ci95_low"] is not None:
                text += f" [{seconds['ci95_low']:.2f}, {seconds['ci95_high']:.2f}]"
        mean_epochs = "-" if epochs["mean"] is None else f"{epochs['mean']:.1f}"
        lines.append(f"| {label} | {row['reached']}/{row['members']} | {mean_epochs} | {text} |")
    return lines + [""]


def _members(members: Sequence[Mapping], labels: Sequence[str]) -> list[str]:
    lines = [
        "## Members",
        "",
        "Each member's test accuracy with its Wilson 95% interval over the test images (the test "
        "set's sampling only).",
        "",
        "| member | configuration | seed | test accuracy | Wilson 95% | best epoch |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for index, (member, label) in enumerate(zip(members, labels)):
        wilson = member.get("test_accuracy_wilson95") or (None, None)
        accuracy = _pct(member.get("test_accuracy"))
        if member.get("diverged_epoch") is not None:
            accuracy = f"diverged at epoch {member['diverged_epoch']}"
        lines.append(
            f"| {index} | {label} | {member['seed']} | {accuracy} | {_interval(*wilson)} "
            f"| {member.get('best_epoch') if member.get('best_epoch') is not None else '-'} |"
        )
    return lines + [""]


def render_sweep_report(
    summary: Mapping,
    members: Sequence[Mapping],
    member_labels: Sequence[str],
    figures: Mapping[str, tuple[str, str]],
) -> str:
    """report.md from `summary` (summary.json), `members` (members.json), each member's
    configuration label, and the figures present, in order: key -> (file name, caption)."""
    rows = summary["configurations"]
    data = summary["data"]
    lines = [
        f"# Sweep: {data['dataset']}, {summary['num_members']} members, {len(rows)} "
        f"configuration(s), {summary['epochs']} epoch(s)",
        "",
        data_sentence(data),
        "",
        "## Test accuracy per configuration",
        "",
        "Three intervals, each for a different question. *t 95% (seeds)* and *bootstrap 95% "
        "(seeds)* resample seeds with the test set held fixed: how well the mean over seeds is "
        "known on these test images (the bootstrap is given from "
        f"{MIN_BOOTSTRAP_SEEDS} seeds: with fewer it covers less than 93%). *95% (seeds and "
        "test images)* adds the test images' sampling to the t interval over seeds: the interval "
        "to quote for how good a configuration is on this task (given from two seeds; simulated, "
        "each covers at least 94% where given, see docs/statistics.md). *Ensemble*: the accuracy "
        "of the average of the members' probabilities. "
        "*Validation mean*: the final epoch's validation accuracy, the number to choose by.",
        "",
        *_table(rows),
        "",
    ]
    selected = summary.get("selected")
    if selected is not None and len(rows) > 1:
        diverged = rows[selected["index"]]["diverged"]
        text = (
            f"**Selected by validation accuracy: {selected['label']}** (mean final validation "
            f"accuracy {_pct(selected['validation'])}; test accuracy {_pct(selected['test'])}, "
            f"95% over seeds and test images {_interval(*selected['test_interval'])})"
        )
        if diverged:
            text += (
                f"; {len(diverged)} of its seeds diverged (every configuration had a diverged seed)"
            )
        lines += [text + ".", ""]
    lines += _comparisons(summary)
    lines += _time_to_target(rows)
    lines += _ensembles(rows)
    for key, (file, caption) in figures.items():
        lines += [f"![{key}]({file})", "", caption, ""]
    lines += _members(members, member_labels)
    return "\n".join(lines)
