"""The expected best result of a hyper-parameter search after n trials (Dodge et al. 2019,
"Show your work"), with the unbiased estimator of Tang et al. 2020.

Given N trials' validation scores, the best of n trials drawn from the same search is modelled by
the best of an n-subset of the N observed trials, drawn without replacement: it is v_(i), the i-th
smallest, with probability C(i-1, n-1) / C(N, n). Its mean, E[max_n] = sum_i v_(i) C(i-1, n-1) /
C(N, n), is unbiased for every n <= N (Dodge et al.'s original draws with replacement and is biased
downwards); its quantiles give the band. Both come from that one distribution, so they stay within
the observed values, and at n = N both are the observed best, by construction: the curve says
nothing about more than N trials.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

BAND = (0.1, 0.9)  # the band: the middle 80% of the best of n trials


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def best_of_n_weights(size: int, n: int) -> np.ndarray:
    """P(the best of n trials drawn without replacement from `size` is the i-th smallest), for
    i = 1..size."""
    i = np.arange(1, size + 1, dtype=np.float64)
    weights = np.zeros(size)
    possible = i >= n  # the i-th smallest is the max of an n-subset only if i >= n
    weights[possible] = np.exp(
        _log_comb(i[possible] - 1, np.float64(n - 1)) - _log_comb(np.float64(size), n)
    )
    return weights / weights.sum()  # exact in theory; removes rounding of the log-gammas


def expected_max(values: Iterable[float], band: tuple[float, float] = BAND) -> dict[str, list]:
    """`{"trials": [1..N], "expected", "low", "high", "std", "observed_max", "band"}`: for each n,
    the unbiased estimate of the best of n trials (`expected`), the `band` quantiles of that best
    (`low`, `high`: by default its middle 80%), and its standard deviation (`std`), all of the best
    of n trials drawn without replacement from the N observed. `low` and `high` are observed values,
    so the band never leaves the observed range; at n = N every one of them is the observed best."""
    v = np.sort(np.asarray(list(values), np.float64).ravel())
    if v.size == 0:
        raise ValueError("expected_max needs at least one trial")
    if not np.all(np.isfinite(v)):
        raise ValueError("trial values must be finite")
    if not 0 <= band[0] <= band[1] <= 1:
        raise ValueError(f"band must be two quantiles 0 <= low <= high <= 1, got {band}")
    size = v.size
    rows = []
    for n in range(1, size + 1):
        weights = best_of_n_weights(size, n)
        mean = float(weights @ v)
        cumulative = np.cumsum(weights)
        # the smallest value whose cumulative probability reaches q (a small tolerance for rounding)
        low, high = (v[min(int(np.searchsorted(cumulative, q - 1e-12)), size - 1)] for q in band)
        expected = min(max(mean, float(v[0])), float(v[-1]))
        std = max(0.0, float(weights @ (v - mean) ** 2)) ** 0.5
        rows.append((n, expected, float(low), float(high), std))
    keys = ("trials", "expected", "low", "high", "std")
    out = {key: [row[i] for row in rows] for i, key in enumerate(keys)}
    return {**out, "observed_max": float(v[-1]), "band": list(band)}
