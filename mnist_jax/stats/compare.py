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

from mnist_jax.stats.intervals import CONFIDENCE, exact_interval, summarize

ALPHA = 1 - CONFIDENCE
MIN_VERDICT_SEEDS = 3  # fewer pairs give the numbers but no verdict


def _shared(reference: Mapping[int, float], candidate: Mapping[int, float]):
    seeds = sorted(set(reference) & set(candidate))
    a = np.asarray([reference[s] for s in seeds], np.float64)
    b = np.asarray([candidate[s] for s in seeds], np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("values to compare must be finite (leave diverged runs out)")
    return seeds, a, b


def paired_difference(reference: Mapping[int, float], candidate: Mapping[int, float]) -> dict:
    """`summarize` of candidate - reference per seed, over the seeds both have (sorted), with
    those `seeds`. `n` is the number of pairs; with fewer than two the standard deviation and
    interval are None."""
    seeds, a, b = _shared(reference, candidate)
    return {**summarize(b - a), "seeds": seeds}


def paired_p_value(reference: Mapping[int, float], candidate: Mapping[int, float]) -> float | None:
    """Two-sided p-value of the paired t-test over the shared seeds (`scipy.stats.ttest_rel`).

    None for fewer than two pairs. Equal differences (accuracies move in steps of 1/N, so this
    happens) have no spread, and scipy gives NaN (all zero) or 0 (t infinite): here p is 1 when
    they are all zero, and otherwise the exact sign-flip p-value 2 / 2^n, the smallest p that n
    pairs can give without assuming normality."""
    _, a, b = _shared(reference, candidate)
    if a.size < 2:
        return None
    differences = b - a
    if np.all(differences == differences[0]):
        return 1.0 if differences[0] == 0 else min(1.0, 2.0 / 2**a.size)
    import scipy.special  # scipy.stats.ttest_rel's p-value, without importing scipy.stats

    t = differences.mean() / (differences.std(ddof=1) / np.sqrt(differences.size))
    return float(2 * scipy.special.stdtr(differences.size - 1, -abs(t)))


def probability_of_improvement(
    reference: Mapping[int, float],
    candidate: Mapping[int, float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int | None = None,
    seed: int | None = None,
) -> dict:
    """P(candidate > reference): the probability that, for a seed drawn at random, the candidate's
    run beats the reference's run with the same seed, a tie counting one half:
    P(beats) = P(win) + P(tie) / 2, estimated as (wins + ties / 2) / n over the n shared seeds.
    The seed pairs the two runs (same initial parameters and batch order), so this is the paired
    version of Agarwal et al. 2021's (rliable's) statistic.

    The interval is exact (Clopper-Pearson) on the wins and brackets the ties: its lower end is
    that of the wins alone (ties counted as losses), its upper end that of wins and ties (ties
    counted as wins). P(win) <= P(beats) <= P(win) + P(tie), so it covers P(beats) at least 95%
    of the time for every n and every chance of a tie, and has positive width: 10 wins of 10
    seeds give [0.69, 1.00]. (The percentile bootstrap it replaces gave [1.00, 1.00] there and
    covered 65% of the time at P = 0.9 with 10 seeds.) Accuracies move in steps of 1 / test images,
    so ties are rare; each one widens the interval by about 1 / n.

    Returns `{"p", "low", "high", "n", "wins", "ties", "method"}`; `resamples` and `seed` are
    accepted for old callers (nothing is drawn).
    """
    del resamples, seed
    _, a, b = _shared(reference, candidate)
    n = int(a.size)
    out = {"p": None, "low": None, "high": None, "n": n, "wins": None, "ties": None}
    out["method"] = "Clopper-Pearson on the wins, ties bracketed"
    if n:
        wins, ties = int(np.sum(b > a)), int(np.sum(b == a))
        low, high = beats_interval(wins, ties, n, confidence)
        out.update(p=(wins + ties / 2) / n, low=float(low), high=float(high), wins=wins, ties=ties)
    return out


def beats_interval(wins, ties, n, confidence: float = CONFIDENCE):
    """`probability_of_improvement`'s interval from the counts (arrays broadcast): the exact
    lower end of wins / n and the exact upper end of (wins + ties) / n."""
    wins, ties = np.asarray(wins), np.asarray(ties)
    return exact_interval(wins, n, confidence)[0], exact_interval(wins + ties, n, confidence)[1]


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values for comparing several configurations at once
    (None entries are not tests: they stay None and do not count). An adjusted p below alpha
    rejects at family-wise error rate alpha."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    if any(not 0 <= p <= 1 for p, _ in tested):  # also refuses NaN, which would break the sort
        raise ValueError(f"p-values must lie in [0, 1], got {[p for p, _ in tested]}")
    order = sorted(tested)
    m = len(order)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def outcome(difference: float | None, p: float | None, n: int) -> str:
    """The conclusion a comparison allows: "better" or "worse" (the candidate against the
    reference) when p is below 0.05, "too few seeds" below `MIN_VERDICT_SEEDS` pairs (or no test),
    else "no difference shown". `n` is the number of pairs (pass a large one for a test over
    examples)."""
    if n < MIN_VERDICT_SEEDS or p is None or difference is None:
        return "too few seeds"
    if p < ALPHA:
        return "better" if difference > 0 else "worse"
    return "no difference shown"


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
    p = 1.0
    if a_only + b_only:
        import scipy.special

        # The exact two-sided binomial test at 1/2 (scipy.stats.binomtest's p-value): twice the
        # smaller tail, as the distribution is symmetric.
        p = min(1.0, float(2 * scipy.special.bdtr(min(a_only, b_only), a_only + b_only, 0.5)))
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
    """Every configuration of `values` (key -> seed -> accuracy, higher is better, e.g.
    `values_by_config`) against `reference`, one of its keys: per other key, `difference` (the
    `paired_difference`, other - reference), the paired test's `p_value`, `improvement` (the
    `probability_of_improvement`) and the `outcome`. Configurations with at least
    `MIN_VERDICT_SEEDS` shared seeds form the family of tests: their p-values are Holm-adjusted
    together (`p_holm`; `holm_family` is its size) and decide the outcome; the others get "too
    few seeds" and no adjusted p.
    """
    if reference not in values:
        raise ValueError("the reference configuration has no values")
    rows = {
        key: {
            "difference": paired_difference(values[reference], values[key]),
            "p_value": paired_p_value(values[reference], values[key]),
            "improvement": probability_of_improvement(values[reference], values[key], seed=seed),
        }
        for key in values
        if key != reference
    }
    family = [key for key, row in rows.items() if row["difference"]["n"] >= MIN_VERDICT_SEEDS]
    adjusted = dict(zip(family, holm([rows[key]["p_value"] for key in family])))
    for key, row in rows.items():
        row["p_holm"] = adjusted.get(key)
        row["holm_family"] = len(family)
        row["outcome"] = outcome(row["difference"]["mean"], row["p_holm"], row["difference"]["n"])
    return rows


def _points(fraction: float) -> str:
    return f"{100 * fraction:+.2f} points"


def verdict(candidate: str, reference: str, row: Mapping) -> str:
    """One line from a `compare_with_reference` row: the paired difference with its (unadjusted)
    Student-t interval over seeds (the test set fixed), P(improvement) with its exact interval,
    the Holm-adjusted p-value of the paired t-test, and the conclusion those numbers allow."""
    difference, improvement = row["difference"], row["improvement"]
    n = difference["n"]
    if n == 0:
        return f"{candidate} vs {reference}: no seed has both; nothing to compare."
    seeds = f"{n} paired seed" + ("s" if n != 1 else "")
    text = f"{candidate} vs {reference}: {_points(difference['mean'])} over {seeds}"
    if difference["ci95_low"] is not None:
        text += (
            f" (95% CI over seeds, test set fixed: {_points(difference['ci95_low'])} to "
            f"{_points(difference['ci95_high'])}, unadjusted)"
        )
    if improvement["p"] is not None:
        text += f", P({candidate} beats {reference} on a seed) = {improvement['p']:.2f}"
        if improvement["low"] is not None:
            text += f" [{improvement['low']:.2f}, {improvement['high']:.2f}]"
    family = row.get("holm_family", 1)
    if row["p_holm"] is not None:
        corrected = f", Holm-adjusted over {family} comparisons" if family > 1 else ""
        text += f", p = {row['p_holm']:.3g} (paired t-test{corrected})"
    conclusion = {
        "too few seeds": f"too few seeds for a verdict (at least {MIN_VERDICT_SEEDS})",
        "better": f"{candidate} is better on this test set",
        "worse": f"{reference} is better on this test set",
    }.get(row["outcome"], f"no difference shown with {n} seeds")
    return f"{text}: {conclusion}."
