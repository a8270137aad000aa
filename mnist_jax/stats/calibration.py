"""Calibration and ensembles: does a model's confidence match its accuracy, and how do accuracy,
likelihood and calibration move as a configuration's members are averaged?

Confidence is the probability a model gives its predicted class. The bins are equal-width over
(0, 1], as in Guo et al. 2017; the expected calibration error (ECE) is the example-weighted mean
gap between a bin's accuracy and its mean confidence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

NUM_BINS = 15
MAX_SUBSETS = 32  # member subsets averaged per ensemble size (all of them when fewer)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits (..., C), in float64."""
    x = np.asarray(logits, np.float64)
    x = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return x / np.sum(x, axis=-1, keepdims=True)


def calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS
) -> dict[str, np.ndarray]:
    """Per equal-width bin of confidence: `lower`, `upper` (edges; bin i holds lower < c <= upper,
    the first also c = 0), `count`, mean `confidence` and `accuracy` (NaN for an empty bin)."""
    confidence = np.asarray(confidence, np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"{confidence.size} confidences for {correct.size} outcomes")
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    if confidence.size and not (np.all(confidence >= 0) and np.all(confidence <= 1)):
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, num_bins) / count
        accuracy = np.bincount(index, correct.astype(np.float64), num_bins) / count
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS
) -> float:
    """Sum over bins of `(examples in the bin / all examples) * |accuracy - mean confidence|`."""
    bins = calibration_bins(confidence, correct, num_bins)
    total = int(bins["count"].sum())
    if total == 0:
        return float("nan")
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] * gaps) / total)


def ensemble_sizes(members: int) -> list[int]:
    """1, 2, 4, ... up to `members`, and `members` itself."""
    sizes = [2**k for k in range(max(0, int(math.log2(members))) + 1) if 2**k <= members]
    return sizes + ([members] if members not in sizes else [])


def _subsets(members: int, size: int, limit: int, rng: np.random.Generator) -> list[tuple]:
    if math.comb(members, size) <= limit:
        return list(itertools.combinations(range(members), size))
    chosen: set[tuple] = set()
    while len(chosen) < limit:
        chosen.add(tuple(sorted(rng.choice(members, size, replace=False).tolist())))
    return sorted(chosen)


def ensemble_curve(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    sizes: Sequence[int] | None = None,
    max_subsets: int = MAX_SUBSETS,
    num_bins: int = NUM_BINS,
    seed: int = 0,
) -> dict[str, list]:
    """Accuracy, negative log-likelihood and ECE of the mean of k members' probabilities, for each
    ensemble size k in `sizes` (default 1, 2, 4, ..., all), averaged over member subsets of that
    size: all of them when there are at most `max_subsets`, else that many distinct ones drawn at
    random (seeded).

    `probabilities`: (members, examples, classes); `labels`: (examples,). Returns lists `size`,
    `accuracy`, `nll`, `ece` and `subsets` (how many were averaged).
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if probabilities.ndim != 3 or probabilities.shape[1] != labels.shape[0]:
        raise ValueError(
            f"probabilities must be (members, examples, classes) for {labels.shape[0]} labels, "
            f"got {probabilities.shape}"
        )
    members = probabilities.shape[0]
    if not members:
        raise ValueError("an ensemble needs at least one member")
    sizes = ensemble_sizes(members) if sizes is None else list(sizes)
    if any(not 1 <= k <= members for k in sizes):
        raise ValueError(f"ensemble sizes must be in 1..{members}, got {sizes}")
    rng = np.random.default_rng(seed)
    rows = np.arange(labels.shape[0])
    results = []
    for k in sizes:
        scores = []
        for subset in _subsets(members, k, max_subsets, rng):
            mean = probabilities[list(subset)].mean(axis=0)
            predicted = np.argmax(mean, axis=-1)
            correct = predicted == labels
            nll = -np.mean(np.log(np.maximum(mean[rows, labels], 1e-12)))
            ece = expected_calibration_error(mean[rows, predicted], correct, num_bins)
            scores.append((float(correct.mean()), float(nll), ece))
        accuracy, nll, ece = map(float, np.mean(scores, axis=0))
        results.append((k, accuracy, nll, ece, len(scores)))
    keys = ("size", "accuracy", "nll", "ece", "subsets")
    return {key: [row[i] for row in results] for i, key in enumerate(keys)}
