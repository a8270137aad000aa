"""Comparing two runs, or two configurations of a sweep, from their saved test predictions.

- Two runs (one model each): accuracy with Wilson intervals, the difference with Bonett and
  Price's interval over test images, and McNemar's exact test, example by example. One seed
  each, so the difference includes each seed's own luck; a sweep over seeds separates the two.
- Two configurations of a sweep: the paired difference seed by seed (Student-t), the probability
  of improvement and the paired t-test (the verdict's test), the interval of the difference over
  seeds and test images, and McNemar's test per seed with Holm's correction over the seeds.

`render_comparison` turns either into comparison.md. Pure functions of `Predictions`; reading
them from run and sweep folders is `mnist_jax.comparison_folders`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mnist_jax.predictions import Predictions
from mnist_jax.stats import (
    holm,
    mcnemar,
    paired_difference,
    paired_p_value,
    paired_proportions_interval,
    probability_of_improvement,
    seeds_and_examples_interval,
    wilson_interval,
)
from mnist_jax.stats.compare import MIN_VERDICT_SEEDS, outcome


def _same_test_set(a: Predictions, b: Predictions) -> None:
    if not a.labels.size:
        raise ValueError("the predictions cover no test images")
    if a.labels.shape != b.labels.shape:
        raise ValueError(
            f"the two sets of predictions cover {a.labels.size} and {b.labels.size} test images: "
            "not one test set"
        )
    if not np.array_equal(a.labels, b.labels):
        raise ValueError("the two sets of predictions have different test labels: not one test set")


def compare_runs(a: Predictions, b: Predictions) -> dict:
    """Two single models (row 0 of each) on one test set, example by example (B minus A)."""
    _same_test_set(a, b)
    if not (a.valid[0] and b.valid[0]):
        raise ValueError("a run without predictions (diverged) cannot be compared")
    correct_a, correct_b = a.correct[0], b.correct[0]
    examples = correct_a.size
    difference = correct_b.astype(np.float64) - correct_a
    test = mcnemar(correct_a, correct_b)
    # Over the test images, the two models fixed: Bonett and Price's adjusted Wald interval of the
    # discordant shares, which covers 94-99% from one disagreement up (stats.coverage); the
    # percentile bootstrap of the differences it replaces covered 88% with three of 1,000.
    low, high = paired_proportions_interval(test["b_only"], test["a_only"], examples)
    return {
        "kind": "runs",
        "examples": examples,
        **{
            name: {
                "accuracy": float(correct.mean()),
                "wilson95": list(wilson_interval(int(correct.sum()), examples)),
            }
            for name, correct in (("a", correct_a), ("b", correct_b))
        },
        "difference": {
            "mean": float(difference.mean()),
            "low": low,
            "high": high,
            "method": "Bonett-Price adjusted Wald, over test images",
        },
        "mcnemar": test,
        # Examples, not seeds, are the sample here: any count clears the seeds' minimum.
        "outcome": outcome(float(difference.mean()), test["p_value"], examples),
    }


def compare_configurations(
    a: Predictions, seeds_a: Sequence[int], b: Predictions, seeds_b: Sequence[int]
) -> dict:
    """Two configurations of one sweep (their members' predictions and seeds), seed by seed
    over the seeds both have (B minus A)."""
    _same_test_set(a, b)
    for name, seeds in (("A", seeds_a), ("B", seeds_b)):
        repeated = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
        if repeated:
            raise ValueError(f"configuration {name} has several members with seed(s) {repeated}")
    by_seed_a = {int(s): k for k, s in enumerate(seeds_a) if a.valid[k]}
    by_seed_b = {int(s): k for k, s in enumerate(seeds_b) if b.valid[k]}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    accuracy_a = {s: float(a.accuracy[by_seed_a[s]]) for s in seeds}
    accuracy_b = {s: float(b.accuracy[by_seed_b[s]]) for s in seeds}
    per_seed = [
        {
            "seed": s,
            "a": accuracy_a[s],
            "b": accuracy_b[s],
            **mcnemar(a.correct[by_seed_a[s]], b.correct[by_seed_b[s]]),
        }
        for s in seeds
    ]
    for row, adjusted in zip(per_seed, holm([row["p_value"] for row in per_seed])):
        row["p_holm"] = adjusted
    differences = np.zeros((0, a.labels.size))
    if seeds:
        pairs = [(a.correct[by_seed_a[s]], b.correct[by_seed_b[s]]) for s in seeds]
        differences = np.stack([right_b.astype(np.float64) - right_a for right_a, right_b in pairs])
    paired = paired_difference(accuracy_a, accuracy_b)
    p = paired_p_value(accuracy_a, accuracy_b)
    return {
        "kind": "configurations",
        "examples": int(a.labels.size),
        "seeds": seeds,
        "per_seed": per_seed,
        "difference": paired,
        "p_value": p,
        "improvement": probability_of_improvement(accuracy_a, accuracy_b),
        "difference_seeds_and_examples": seeds_and_examples_interval(differences),
        "diverged": {"a": int(np.sum(~a.valid)), "b": int(np.sum(~b.valid))},
        "outcome": outcome(paired["mean"], p, len(seeds)),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _points(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def _span(low: float | None, high: float | None) -> str:
    return f"[{_points(low)}, {_points(high)}]"


RUNS_CAVEAT = (
    "One seed each: this compares two trained models, and a seed's own luck is part of the "
    "difference; a sweep over seeds tells whether their configurations differ."
)
SEEDS_CAVEAT = (
    "The verdict rests on the paired t-test over seeds, with the test set fixed. McNemar's tests "
    "above ask another question, whether the two models of one seed differ on these test images, "
    "and Holm's correction over the seeds makes each of them weaker: they can all be above 0.05 "
    "where the paired t-test finds a difference, and the reverse."
)


def _conclusion(result: Mapping, name_a: str, name_b: str) -> str:
    verdict = result["outcome"]
    better = name_b if verdict == "better" else name_a
    if result["kind"] == "runs":
        basis = f"McNemar's exact test, p = {result['mcnemar']['p_value']:.3g}"
        if verdict == "no difference shown":
            return f"No difference shown between {name_a} and {name_b} ({basis})."
        return f"{better} is more accurate ({basis})."
    seeds = len(result["seeds"])
    if verdict == "too few seeds":
        diverged = result["diverged"]
        lost = f" ({diverged['a']} member(s) of A and {diverged['b']} of B diverged)"
        lost = lost if diverged["a"] or diverged["b"] else ""
        return (
            f"Too few paired seeds ({seeds}){lost} for a verdict; at least "
            f"{MIN_VERDICT_SEEDS} are needed."
        )
    basis = f"paired t-test over {seeds} seeds, p = {result['p_value']:.3g}"
    if verdict == "no difference shown":
        return f"No difference shown between {name_a} and {name_b} ({basis})."
    both = result["difference_seeds_and_examples"]
    holds = both["low"] is not None and (both["low"] > 0 or both["high"] < 0)
    return (
        f"{better} is better on this test set ({basis}); the difference "
        + ("also holds" if holds else "is not shown to hold")
        + " when the test images' sampling is counted too (interval over seeds and test images "
        f"{_span(both['low'], both['high'])} points)."
    )


def render_comparison(result: Mapping, name_a: str, name_b: str, sources: Sequence[str]) -> str:
    """comparison.md for `compare_runs` or `compare_configurations`'s result."""
    lines = [
        f"# {name_b} vs {name_a}",
        "",
        f"Predictions from {', '.join(sources)}; "
        f"{result['examples']:,} test images. A: {name_a}; B: {name_b}. Differences are B "
        "minus A, in points.",
        "",
    ]
    difference = result["difference"]
    if result["kind"] == "runs":
        table = result["mcnemar"]
        lines += ["| | test accuracy | Wilson 95% |", "|---|---:|---:|"]
        for side, name in (("a", name_a), ("b", name_b)):
            low, high = result[side]["wilson95"]
            lines.append(
                f"| {side.upper()}: {name} | {_pct(result[side]['accuracy'])} | "
                f"[{_pct(low)}, {_pct(high)}] |"
            )
        lines += [
            "",
            f"Difference {_points(difference['mean'])} points, 95% interval over test images "
            f"{_span(difference['low'], difference['high'])} (Bonett-Price; the two models fixed).",
            "",
            f"Example by example: both right {table['both']:,}, only A {table['a_only']:,}, only B "
            f"{table['b_only']:,}, both wrong {table['neither']:,}; McNemar's exact p = "
            f"{table['p_value']:.3g}.",
        ]
    else:
        improvement, both = result["improvement"], result["difference_seeds_and_examples"]
        lines += [
            "| seed | A | B | B - A | only A right | only B right | McNemar p | Holm p |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['seed']} | {_pct(row['a'])} | {_pct(row['b'])} "
            f"| {_points(row['b'] - row['a'])} | {row['a_only']} | {row['b_only']} "
            f"| {row['p_value']:.3g} | {row['p_holm']:.3g} |"
            for row in result["per_seed"]
        ]
        lines += [""]
        if difference["n"]:
            seeds = f"{difference['n']} seed" + ("s" if difference["n"] != 1 else "")
            text = f"Paired over {seeds}: {_points(difference['mean'])} points"
            if difference["ci95_low"] is not None:
                interval = _span(difference["ci95_low"], difference["ci95_high"])
                text += f", Student-t 95% interval {interval} (seeds, test set fixed)"
            if both["low"] is not None:
                text += (
                    f"; 95% interval over seeds and test images {_span(both['low'], both['high'])}"
                )
            if improvement["p"] is not None:
                text += f"; B beats A on {improvement['p']:.0%} of the seeds (ties count one half)"
                if improvement["low"] is not None:
                    text += (
                        f", exact 95% interval [{improvement['low']:.0%}, "
                        f"{improvement['high']:.0%}]"
                    )
            lines.append(text + ".")
    caveat = RUNS_CAVEAT if result["kind"] == "runs" else SEEDS_CAVEAT  # whatever the verdict
    lines += ["", f"**{_conclusion(result, name_a, name_b)}**", "", caveat, ""]
    return "\n".join(lines)
