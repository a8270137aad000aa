"""The expected best result of a hyper-parameter search after n trials (Dodge et al. 2019,
"Show your work"), with the unbiased estimator of Tang et al. 2020.

Given N trials' validation scores, the expected maximum of n trials drawn from the same search is
estimated by the mean of the maximum over all n-subsets of the N observed trials:
E[max_n] = sum_i v_(i) * C(i-1, n-1) / C(N, n), with v_(1) <= ... <= v_(N) sorted. It is unbiased
for every n <= N (Dodge et al.'s original draws with replacement and is biased downwards).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def expected_max(values: Iterable[float]) -> dict[str, list]:
    """`{"trials": [1..N], "expected": [...], "std": [...]}`: for each n, the unbiased estimate of
    the best of n trials, and the standard deviation of the best of n trials drawn with replacement
    from the observed ones (Dodge et al.'s variance): the spread one search of n trials shows.
    (The spread over n-subsets of the observed trials would shrink to zero at n = N.)"""
    v = np.sort(np.asarray(list(values), np.float64).ravel())
    if v.size == 0:
        raise ValueError("expected_max needs at least one trial")
    if not np.all(np.isfinite(v)):
        raise ValueError("trial values must be finite")
    size = v.size
    i = np.arange(1, size + 1, dtype=np.float64)
    out: dict[str, list] = {"trials": [], "expected": [], "std": []}
    for n in range(1, size + 1):
        weights = np.zeros(size)
        possible = i >= n  # the i-th smallest is the max of an n-subset only if i >= n
        weights[possible] = np.exp(
            _log_comb(i[possible] - 1, np.float64(n - 1)) - _log_comb(np.float64(size), n)
        )
        weights /= weights.sum()  # exact in theory; removes rounding of the log-gammas
        # P(the best of n draws with replacement is the i-th smallest) = (i/N)^n - ((i-1)/N)^n.
        drawn = (i / size) ** n - ((i - 1) / size) ** n
        spread = float(drawn @ (v - drawn @ v) ** 2)
        out["trials"].append(n)
        out["expected"].append(float(weights @ v))
        out["std"].append(max(0.0, spread) ** 0.5)
    return out
