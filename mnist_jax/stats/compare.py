"""Comparing two configurations: seed by seed (paired), and two models example by example.

Within a sweep, seed s gives the same initial parameters and batch order in every configuration of
one model shape, so differences taken seed by seed remove the seed's own share of the noise (a
paired design). Those comparisons hold the test set fixed: they say whether the configurations
differ on *this* test set. `mcnemar` asks, example by example, whether two sets of predictions
differ by more than the test set's sampling would explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

from mnist_jax.stats.intervals import BOOTSTRAP_RESAMPLES, CONFIDENCE, summarize

ALPHA = 1 - CONFIDENCE
MIN_VERDICT_SEEDS = 3  # fewer pairs give the numbers but no verdict


def _shared(reference: Mapping[int, float], candidate: Mapping[int, float]):
    seeds = sorted(set(reference) & set(candidate))
    a = np.asarray([reference[s] for s in seeds], np.float64)
    b = np.asarray([candidate[s] for s in seeds], np.float64)
    return seeds, a, b


def paired_difference(reference: Mapping[int, float], candidate: Mapping[int, float]) -> dict:
    """`summarize` of candidate - reference per seed, over the seeds both have (sorted), with
    those `seeds`. `n` is the number of pairs; with fewer than two the standard deviation and
    interval are None."""
    seeds, a, b = _shared(reference, candidate)
    return {**summarize(b - a), "seeds": seeds}


def paired_p_value(reference: Mapping[int, float], candidate: Mapping[int, float]) -> float | None:
    """Two-sided p-value of the paired t-test over the shared seeds (`scipy.stats.ttest_rel`).

    None for fewer than two pairs. Equal differences (accuracies move in steps of 1/N) have no
    spread: p is 1 when they are all zero and 0 otherwise (scipy gives NaN)."""
    _, a, b = _shared(reference, candidate)
    if a.size < 2:
        return None
    differences = b - a
    if np.all(differences == differences[0]):
        return 1.0 if differences[0] == 0 else 0.0
    return float(scipy.stats.ttest_rel(b, a).pvalue)


def _improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(B > A) over all pairs of values (ties count one half)."""
    greater = (b[:, None] > a[None, :]).mean()
    ties = (b[:, None] == a[None, :]).mean()
    return float(greater + 0.5 * ties)


def probability_of_improvement(
    reference: Mapping[int, float],
    candidate: Mapping[int, float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict:
    """P(candidate > reference): the chance that a run of the candidate with a random seed beats a
    run of the reference with a random seed (ties count one half), estimated over every pair of
    the shared seeds, as in Agarwal et al. 2021 (rliable).

    Returns `{"p", "low", "high", "n"}`: the interval is a percentile bootstrap that resamples the
    seeds, each drawn seed bringing both of its runs (the design is paired); None for fewer than
    two seeds.
    """
    _, a, b = _shared(reference, candidate)
    out = {"p": None, "low": None, "high": None, "n": int(a.size)}
    if a.size == 0:
        return out
    out["p"] = _improvement(a, b)
    if a.size < 2:
        return out
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, a.size, size=(resamples, a.size))
    draws = np.empty(resamples, np.float64)
    chunk = max(1, 2**22 // a.size**2)  # bounds the (draws, seeds, seeds) comparisons held
    for start in range(0, resamples, chunk):
        drawn_a, drawn_b = a[rows[start : start + chunk]], b[rows[start : start + chunk]]
        greater = (drawn_b[:, :, None] > drawn_a[:, None, :]).mean(axis=(1, 2))
        ties = (drawn_b[:, :, None] == drawn_a[:, None, :]).mean(axis=(1, 2))
        draws[start : start + chunk] = greater + 0.5 * ties
    tail = (1 - confidence) / 2
    out["low"], out["high"] = (float(q) for q in np.quantile(draws, [tail, 1 - tail]))
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values for comparing several configurations at once
    (None entries are not tests: they stay None and do not count). An adjusted p below alpha
    rejects at family-wise error rate alpha."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    order = sorted(tested)
    m = len(order)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test of two classifiers on the same examples.

    `correct_a`, `correct_b`: booleans per example. Only the examples exactly one of them gets
    right carry information; under "equally accurate" each such example is equally likely to
    favour either, so the count favouring A is Binomial(discordant, 1/2). Returns the 2x2 counts
    (`both`, `a_only`, `b_only`, `neither`), `n`, and the two-sided exact `p_value` (1 when no
    example is discordant).
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"the two prediction sets cover {a.size} and {b.size} examples")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(scipy.stats.binomtest(a_only, discordant, 0.5).pvalue)
    return {
        "both": int(np.sum(a & b)),
        "a_only": a_only,
        "b_only": b_only,
        "neither": int(np.sum(~a & ~b)),
        "n": int(a.size),
        "p_value": p,
    }


def compare_with_reference(
    values: Mapping[object, Mapping[int, float]], reference: object, *, seed: int = 0
) -> dict:
    """Every configuration of `values` (key -> seed -> value, e.g. `values_by_config`) against
    `reference`, one of its keys: per other key, the `paired_difference` (other - reference), the
    paired t-test's `p_value`, its Holm-adjusted `p_holm` over all the comparisons made here,
    `probability_of_improvement` and the `outcome` ("better", "worse", "no difference shown" or
    "too few seeds"). `outcome` is "better"/"worse" only when the Holm-adjusted p is below 0.05;
    the difference's sign says which.
    """
    if reference not in values:
        raise ValueError("the reference configuration has no values")
    others = [key for key in values if key != reference]
    rows = {}
    for key in others:
        rows[key] = {
            "difference": paired_difference(values[reference], values[key]),
            "p_value": paired_p_value(values[reference], values[key]),
            "improvement": probability_of_improvement(values[reference], values[key], seed=seed),
        }
    adjusted = holm([rows[key]["p_value"] for key in others])
    for key, p in zip(others, adjusted):
        row = rows[key]
        row["p_holm"] = p
        n = row["difference"]["n"]
        if n < MIN_VERDICT_SEEDS or p is None:
            row["outcome"] = "too few seeds"
        elif p < ALPHA:
            row["outcome"] = "better" if row["difference"]["mean"] > 0 else "worse"
        else:
            row["outcome"] = "no difference shown"
    return rows


def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f} points"


def verdict(candidate: str, reference: str, row: Mapping, *, compared: int = 1) -> str:
    """One line from a `compare_with_reference` row: the paired difference with its interval,
    P(improvement), the (Holm-adjusted) p-value, and the conclusion those numbers allow.
    `compared` is how many configurations were compared with the reference at once."""
    difference, improvement = row["difference"], row["improvement"]
    n = difference["n"]
    if n == 0:
        return f"{candidate} vs {reference}: no seed has both; nothing to compare."
    text = f"{candidate} vs {reference}: {_points(difference['mean'])} over {n} paired seed(s)"
    if difference["ci95_low"] is not None:
        text += f" (95% CI {_points(difference['ci95_low'])} to {_points(difference['ci95_high'])})"
    if improvement["low"] is not None:
        text += (
            f", P({candidate} > {reference}) = {improvement['p']:.2f} "
            f"[{improvement['low']:.2f}, {improvement['high']:.2f}]"
        )
    if row["p_holm"] is not None:
        corrected = f"Holm-adjusted over {compared} comparisons" if compared > 1 else "paired t"
        text += f", p = {row['p_holm']:.3g} ({corrected})"
    outcome = row["outcome"]
    if outcome == "too few seeds":
        return text + f": too few seeds for a verdict (at least {MIN_VERDICT_SEEDS})."
    if outcome == "better":
        return text + f": {candidate} is better on this test set."
    if outcome == "worse":
        return text + f": {reference} is better on this test set."
    return text + f": no difference shown with {n} seeds."
