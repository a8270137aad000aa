"""Intervals for an accuracy, each named by what it resamples.

- `summarize`: over seeds, test set fixed; Student-t.
- `bootstrap_interval`: over seeds, test set fixed; expanded percentile bootstrap (no normality
  assumed), from `MIN_BOOTSTRAP_SEEDS` seeds.
- `seeds_and_examples_interval`: over seeds and test examples. The test set is one sample of the
  task's images, shared by every seed, so its sampling error does not average out over seeds: this
  is the interval for "how good is this configuration on this task".
- `wilson_interval`: one run's accuracy over its test examples (binomial).
- `paired_proportions_interval`: the difference of two runs' accuracies over the test examples
  they share, the two models fixed (Bonett and Price's adjusted Wald interval).
- `exact_interval`: a binomial proportion's Clopper-Pearson interval (P(beats) uses it).

Each is offered only where a seeded simulation (`stats.coverage`, docs/statistics.md) measures it
covering at least 93% of the time at its nominal 95%.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000  # over seeds: cheap, so many
# The percentile bootstrap is too narrow for few values: a mean's bootstrap distribution has the
# spread std * sqrt((n-1)/n) / sqrt(n), and its tails are read with normal quantiles where the
# t's belong. `bootstrap_interval` widens it by both factors (Hesterberg's expanded percentile
# interval, 2015); simulated (`stats.coverage`), it covers 95% from 10 seeds, where the plain
# percentile bootstrap covers 90% at 10 and 92% at 16. Below 10 even the widened one falls short
# (92% at 5 seeds, and at 2 seeds it cannot reach past the two values), so none is given there.
MIN_BOOTSTRAP_SEEDS = 10
# The seeds-and-examples interval needs a seed spread: two seeds at least.
MIN_SEEDS_AND_EXAMPLES_SEEDS = 2
TWO_LEVEL_RESAMPLES = 2_000  # the old two-level bootstrap's draws; kept for old imports


def _values(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values), np.float64).ravel()


def _t(confidence: float, dof) -> np.ndarray | float:
    """The two-sided `confidence` critical value of Student's t with `dof` degrees of freedom."""
    import scipy.special  # not scipy.stats: its import takes most of a second, in every command

    return scipy.special.stdtrit(dof, 0.5 + confidence / 2)


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> dict:
    """`{"mean", "std", "ci95_low", "ci95_high", "min", "max", "n"}` of `values`.

    `std` is the sample standard deviation (ddof=1); the interval is
    mean +- t(0.975, n-1) * std / sqrt(n), the t interval for the mean of normally distributed
    values (wide for few seeds, as it should be). Over seeds it holds the test set fixed. With
    fewer than two values `std` and the interval are None.
    """
    x = _values(values)
    n = int(x.size)
    out = {**dict.fromkeys(("mean", "std", "ci95_low", "ci95_high", "min", "max")), "n": n}
    if n == 0:
        return out
    out.update(mean=float(np.mean(x)), min=float(np.min(x)), max=float(np.max(x)))
    if n >= 2:
        std = float(np.std(x, ddof=1))
        half = float(_t(confidence, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci95_low=out["mean"] - half, ci95_high=out["mean"] + half)
    return out


def expanded_tail(n: int, confidence: float = CONFIDENCE) -> float:
    """The tail probability at which the expanded percentile bootstrap reads its quantiles:
    Phi(-sqrt(n / (n-1)) * t(n-1)), so that for normal values it matches the t interval's width."""
    return statistics.NormalDist().cdf(-math.sqrt(n / (n - 1)) * float(_t(confidence, n - 1)))


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of `values` (..., n) along its last axis: (..., resamples), every row drawn
    with the same resampled indices."""
    values = np.asarray(values, np.float64)
    n = values.shape[-1]
    return values[..., rng.integers(0, n, size=(resamples, n))].mean(axis=-1)


def bootstrap_interval(
    values: Iterable[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    min_values: int = MIN_BOOTSTRAP_SEEDS,
) -> tuple[float, float] | None:
    """Expanded percentile bootstrap interval of the mean of `values` (Hesterberg 2015): the
    quantiles of `resamples` bootstrap means at the tails `expanded_tail(n)` instead of 2.5% and
    97.5%, which corrects the plain percentile interval's narrowness at small n.

    None for fewer than `min_values` (default `MIN_BOOTSTRAP_SEEDS`: with fewer it undercovers;
    the Student-t interval of `summarize` is the one to read). Equal values give the zero-width
    interval at their value.
    """
    x = _values(values)
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_interval needs finite values")
    if x.size < max(2, min_values):
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    means = bootstrap_means(x, resamples, np.random.default_rng(seed))
    tail = expanded_tail(x.size, confidence)
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def seeds_and_examples_parts(values: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """The seeds-and-examples interval of each (seeds, examples) table in `values`
    (..., seeds, examples), as arrays: `mean`, `low`, `high`, and the two half-widths it combines,
    `seeds_half` and `examples_half` (see `seeds_and_examples_interval`)."""
    y = np.asarray(values, np.float64)
    seeds, examples = y.shape[-2:]
    grand = y.mean(axis=(-2, -1))
    g = grand[..., None]
    ss_seeds = examples * np.sum((y.mean(axis=-1) - g) ** 2, axis=-1)  # over seed accuracies
    ss_examples = seeds * np.sum((y.mean(axis=-2) - g) ** 2, axis=-1)  # over example means
    ss_total = np.sum((y - grand[..., None, None]) ** 2, axis=(-2, -1))
    ss_both = np.maximum(ss_total - ss_seeds - ss_examples, 0.0)
    ms_seeds = ss_seeds / (seeds - 1)
    ms_examples = ss_examples / max(examples - 1, 1)
    ms_both = ss_both / ((seeds - 1) * max(examples - 1, 1))
    # Var(mean) = MS_seeds / (S E)  [the t interval's: the seeds' own spread, interaction included]
    #           + (MS_examples - MS_both) / (S E)  [the test set's sampling, shared by every seed]
    seeds_half = _t(confidence, seeds - 1) * np.sqrt(ms_seeds / (seeds * examples))
    examples_half = _z(confidence) * np.sqrt(
        np.maximum(ms_examples - ms_both, 0.0) / (seeds * examples)
    )
    half = np.sqrt(seeds_half**2 + examples_half**2)
    return {
        "mean": grand,
        "low": grand - half,
        "high": grand + half,
        "seeds_half": seeds_half,
        "examples_half": examples_half,
    }


def seeds_and_examples_interval(
    correct: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int | None = None,
    seed: int | None = None,
) -> dict:
    """The interval of a configuration's mean accuracy over seeds *and* test examples.

    `correct` is (seeds, test examples), True where that seed's model classified that example
    correctly (or any per-example score: the difference of two configurations' correctness,
    seed by seed, gives the interval of their accuracy difference). Seeds and examples are
    crossed (every seed sees the same test set), so the mean's variance has two parts, estimated
    from the two-way table's mean squares: the seeds' spread (the variance of the seed means over
    S, as in the t interval) and the test set's sampling (the examples' mean square less the
    interaction's, over S x E). Each part gets its own interval, Student-t with S-1 degrees of
    freedom for the seeds and normal for the thousands of examples, and the half-widths add in
    quadrature (Zou & Donner's MOVER, 2008): with a large seed spread it is the t interval over
    seeds, with a small one the test set's. Simulated (`stats.coverage`), it covers 94-99% from
    2 seeds, for seed spreads like the MNIST MLP's and ten times larger; the two-level percentile
    bootstrap it replaces covered 60% at 2 seeds and 77% at 3 with the larger spread.

    Returns `{"mean", "low", "high", "seeds", "examples", "seeds_half", "examples_half",
    "method"}` (and `resamples`, None, for old readers); `low`/`high` are None below
    `MIN_SEEDS_AND_EXAMPLES_SEEDS` seeds (one seed cannot show the seeds' spread: read that run's
    Wilson interval, which covers the test set alone) or without examples. `resamples` and
    `seed` are accepted for old callers; nothing is drawn.
    """
    del resamples, seed
    values = np.asarray(correct)
    if values.ndim != 2:
        raise ValueError(f"correct must be (seeds, examples), got shape {values.shape}")
    seeds, examples = values.shape
    keys = ("mean", "low", "high", "seeds", "examples", "seeds_half", "examples_half", "method")
    out = {**dict.fromkeys(keys), "resamples": None}
    out.update(seeds=seeds, examples=examples)
    out["method"] = "t over seeds + normal over test examples (MOVER)"
    if seeds == 0 or examples == 0:
        return out
    values = values.astype(np.float64)
    out["mean"] = float(values.mean())
    if seeds >= MIN_SEEDS_AND_EXAMPLES_SEEDS and examples >= 2:
        parts = seeds_and_examples_parts(values, confidence)
        out.update(
            {key: float(parts[key]) for key in ("low", "high", "seeds_half", "examples_half")}
        )
    return out


def wilson_interval(
    successes: float, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (one run's test accuracy:
    `successes` correct of `trials` examples); None for no trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, got {successes}")
    z = _z(confidence)
    p = successes / trials
    scale = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, center - half), min(1.0, center + half)


def paired_proportions_interval(only_b, only_a, trials, confidence: float = CONFIDENCE):
    """The interval of the difference of two paired proportions, B minus A: two models' accuracies
    on one test set of `trials` examples, `only_b` of them right for B alone and `only_a` for A
    alone (the examples both get right or both wrong do not move the difference). Bonett and
    Price's adjusted Wald interval (2012): the Wald interval of the discordant shares with one
    example added to each, (c + 1) / (n + 2),

        d~ +- z sqrt((p~b + p~a - d~^2) / (n + 2)),   d~ = p~b - p~a,

    clipped to [-1, 1]. Exact sums over every outcome (`stats.coverage`) put its coverage at
    94-99% from 100 test examples and one disagreement up, where the percentile bootstrap of the
    per-example differences it replaces covered 88% with three disagreements expected in 1,000
    examples and 92% with five; with hundreds (two MNIST runs) both are the Wald interval.
    Arrays broadcast; floats for scalar counts; None for no trials."""
    b, a, n = (np.asarray(x, np.float64) for x in (only_b, only_a, trials))
    if np.any(n <= 0):
        if n.ndim == 0:
            return None
        raise ValueError("paired_proportions_interval needs trials > 0")
    if np.any((b < 0) | (a < 0) | (a + b > n)):
        raise ValueError("only_b and only_a must be counts that add up to at most trials")
    share_b, share_a = (b + 1) / (n + 2), (a + 1) / (n + 2)
    d = share_b - share_a
    half = _z(confidence) * np.sqrt((share_b + share_a - d * d) / (n + 2))
    low, high = np.maximum(d - half, -1.0), np.minimum(d + half, 1.0)
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def exact_interval(
    successes, trials, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """The Clopper-Pearson ("exact") interval of a binomial proportion: it covers at least
    `confidence` for every true proportion and trial count. Arrays broadcast; 0 successes give a
    lower end of 0 and `trials` successes an upper end of 1."""
    import scipy.special

    k = np.asarray(successes, np.float64)
    n = np.asarray(trials, np.float64)
    tail = (1 - confidence) / 2
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, scipy.special.betaincinv(k, n - k + 1, tail), 0.0)
        high = np.where(k < n, scipy.special.betaincinv(k + 1, n - k, 1 - tail), 1.0)
    return low, high
