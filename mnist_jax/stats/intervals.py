"""Intervals for an accuracy, each named by what it resamples.

- `summarize`: over seeds, test set fixed; Student-t.
- `bootstrap_interval`: over seeds, test set fixed; percentile bootstrap (no normality assumed).
- `seeds_and_examples_interval`: over seeds and test examples; a two-level bootstrap. The test set
  is one sample of the task's images, shared by every seed, so its sampling error does not average
  out over seeds: this is the interval for "how good is this configuration on this task".
- `wilson_interval`: one run's accuracy over its test examples (binomial).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000  # over seeds: cheap, so many
# A percentile bootstrap over fewer seeds covers far less than its nominal 95% (simulated, 1,000
# normal samples each: 48% for 2 seeds, 74% for 3, 83% for 5, 90% for 10, 93% for 16, where the
# Student-t interval covers 94-96%), so none is given below this.
MIN_BOOTSTRAP_SEEDS = 10
TWO_LEVEL_RESAMPLES = 2_000  # each draw gathers seeds x test examples


def _values(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values), np.float64).ravel()


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> dict:
    """`{"mean", "std", "ci95_low", "ci95_high", "min", "max", "n"}` of `values`.

    `std` is the sample standard deviation (ddof=1); the interval is
    mean +- t(0.975, n-1) * std / sqrt(n), the t interval for the mean of normally distributed
    values (wide for few seeds, as it should be). With fewer than two values `std` and the
    interval are None.
    """
    x = _values(values)
    n = int(x.size)
    out = dict.fromkeys(("mean", "std", "ci95_low", "ci95_high", "min", "max"))
    out["n"] = n
    if n == 0:
        return out
    out.update(mean=float(np.mean(x)), min=float(np.min(x)), max=float(np.max(x)))
    if n >= 2:
        std = float(np.std(x, ddof=1))
        import scipy.stats

        half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci95_low=out["mean"] - half, ci95_high=out["mean"] + half)
    return out


def bootstrap_interval(
    values: Iterable[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    min_values: int = MIN_BOOTSTRAP_SEEDS,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (`scipy.stats.bootstrap`).

    None for fewer than `min_values` (default `MIN_BOOTSTRAP_SEEDS`: with fewer, the percentile
    bootstrap undercovers badly; the Student-t interval of `summarize` is the one to read). Equal
    values give the zero-width interval at their value (scipy would return NaN).
    """
    x = _values(values)
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_interval needs finite values")
    if x.size < max(2, min_values):
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    import scipy.stats

    result = scipy.stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeds_and_examples_interval(
    correct: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = TWO_LEVEL_RESAMPLES,
    seed: int = 0,
    chunk: int = 50,
) -> dict:
    """Two-level percentile bootstrap of the mean accuracy of a configuration.

    `correct` is (seeds, test examples), True where that seed's model classified that example
    correctly (or any per-example score: the difference of two configurations' correctness,
    seed by seed, gives the interval of their accuracy difference). Each draw resamples the seeds
    with replacement, then the test examples with replacement (one resample shared by the drawn
    seeds, since they share one test set), and takes the mean. Resampling both factors of a
    crossed design counts their interaction twice, so the interval is slightly conservative
    (McCullagh 2000); with few seeds its seed part is narrow, as any percentile bootstrap's.
    Returns `{"mean", "low", "high", "seeds", "examples", "resamples"}`; `low`/`high` are None
    when there are no examples. One seed gives the test-set interval alone.
    """
    values = np.asarray(correct)
    if values.ndim != 2:
        raise ValueError(f"correct must be (seeds, examples), got shape {values.shape}")
    seeds, examples = values.shape
    out = {
        "mean": None,
        "low": None,
        "high": None,
        "seeds": seeds,
        "examples": examples,
        "resamples": resamples,
    }
    if seeds == 0 or examples == 0:
        return out
    values = values.astype(np.float64)
    out["mean"] = float(values.mean())
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples, np.float64)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        seed_rows = rng.integers(0, seeds, size=(size, seeds))
        example_columns = rng.integers(0, examples, size=(size, examples))
        for k in range(size):
            # The drawn seeds' total per example, then the drawn examples' share.
            total = values[seed_rows[k]].sum(axis=0)
            draws[start + k] = total[example_columns[k]].sum() / (seeds * examples)
    tail = (1 - confidence) / 2
    out["low"], out["high"] = (float(q) for q in np.quantile(draws, [tail, 1 - tail]))
    return out


def wilson_interval(
    successes: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (one run's test accuracy:
    `successes` correct of `trials` examples); None for no trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in 0..{trials}, got {successes}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    scale = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, center - half), min(1.0, center + half)
