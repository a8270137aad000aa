"""The statistics of `mnist_jax.stats`, each against scipy or a hand computation on a small case."""

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from mnist_jax import stats


def test_summarize_is_the_student_t_interval():
    values = [0.97, 0.975, 0.972, 0.979]
    out = stats.summarize(values)
    low, high = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values)
    )
    assert out["ci95_low"] == pytest.approx(low) and out["ci95_high"] == pytest.approx(high)
    assert out["std"] == pytest.approx(np.std(values, ddof=1)) and out["n"] == 4


def test_summarize_of_one_value_has_no_interval():
    out = stats.summarize([0.5])
    assert out["mean"] == 0.5 and out["std"] is None and out["ci95_low"] is None


def test_bootstrap_interval_is_the_expanded_percentile_bootstrap_by_hand():
    values = np.array([0.970, 0.975, 0.972, 0.979, 0.971, 0.974, 0.973, 0.976, 0.970, 0.977])
    rng = np.random.default_rng(7)
    means = values[rng.integers(0, 10, size=(10_000, 10))].mean(axis=1)
    # Hesterberg's expanded tails: Phi(-sqrt(n / (n-1)) t(0.975, n-1)), 0.86% for n = 10.
    tail = scipy.stats.norm.cdf(-math.sqrt(10 / 9) * scipy.stats.t.ppf(0.975, 9))
    assert tail == pytest.approx(0.00856, abs=1e-5)
    expected = tuple(np.quantile(means, [tail, 1 - tail]))
    assert stats.bootstrap_interval(values, seed=7) == pytest.approx(expected)
    assert stats.bootstrap_interval(values, seed=7) == stats.bootstrap_interval(values, seed=7)
    # wider than the plain percentile interval it replaces
    plain = np.quantile(means, [0.025, 0.975])
    low, high = stats.bootstrap_interval(values, seed=7)
    assert low < plain[0] and high > plain[1]


def test_bootstrap_interval_of_equal_or_too_few_values():
    assert stats.bootstrap_interval([0.9] * 10) == (0.9, 0.9)
    # Below 10 seeds the percentile bootstrap undercovers badly: no interval, unless asked for.
    assert stats.bootstrap_interval([0.9, 0.91, 0.92]) is None
    assert stats.bootstrap_interval([0.9, 0.91, 0.92], min_values=2) is not None
    assert stats.bootstrap_interval([0.9]) is None
    with pytest.raises(ValueError, match="finite"):
        stats.bootstrap_interval([0.9] * 9 + [float("nan")])


def test_wilson_interval_matches_scipy():
    for k, n in [(9790, 10000), (0, 20), (20, 20), (7, 13)]:
        expected = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert stats.wilson_interval(k, n) == pytest.approx((expected.low, expected.high))
    assert stats.wilson_interval(0, 0) is None


def test_paired_proportions_interval_is_bonett_and_prices_by_hand():
    # 8 images right for B alone, 2 for A alone, of 1,000: one added to each, over 1,002.
    b, a, n = 9 / 1002, 3 / 1002, 1002
    half = 1.959963984540054 * math.sqrt((b + a - (b - a) ** 2) / n)
    assert stats.paired_proportions_interval(8, 2, 1000) == pytest.approx(
        (b - a - half, b - a + half)
    )
    # no disagreement: centred on 0, with a width; every image B's alone: clipped at 1
    low, high = stats.paired_proportions_interval(0, 0, 50)
    assert low == pytest.approx(-high) and high > 0.03
    assert stats.paired_proportions_interval(20, 0, 20)[1] == 1.0
    lows, highs = stats.paired_proportions_interval(np.array([8, 0]), np.array([2, 0]), 1000)
    assert (lows[0], highs[0]) == pytest.approx(stats.paired_proportions_interval(8, 2, 1000))
    assert stats.paired_proportions_interval(0, 0, 0) is None
    with pytest.raises(ValueError, match="at most trials"):
        stats.paired_proportions_interval(8, 3, 10)


def test_seeds_and_examples_interval_by_hand_on_a_small_case():
    # The t interval over seeds and the test set's normal interval, added in quadrature; the mean
    # squares by their textbook formulas (two-way table without replication).
    rng = np.random.default_rng(3)
    correct = rng.random((3, 40)) < 0.8
    y = correct.astype(float)
    seeds, examples = y.shape
    rows, columns, grand = y.mean(axis=1), y.mean(axis=0), y.mean()
    residual = y - rows[:, None] - columns[None, :] + grand
    ms_examples = seeds * np.sum((columns - grand) ** 2) / (examples - 1)
    ms_both = np.sum(residual**2) / ((seeds - 1) * (examples - 1))
    seeds_half = scipy.stats.t.ppf(0.975, 2) * np.std(rows, ddof=1) / math.sqrt(seeds)
    examples_half = 1.959964 * math.sqrt(max(ms_examples - ms_both, 0) / (seeds * examples))
    half = math.hypot(seeds_half, examples_half)
    out = stats.seeds_and_examples_interval(correct)
    assert out["mean"] == pytest.approx(grand)
    assert (out["low"], out["high"]) == pytest.approx((grand - half, grand + half), rel=1e-6)
    assert out["seeds_half"] == pytest.approx(seeds_half)
    assert out["examples_half"] == pytest.approx(examples_half, rel=1e-6)
    # With every seed alike it is the test set's interval alone; with one seed, none is given.
    same = stats.seeds_and_examples_interval(np.repeat(correct[:1], 4, axis=0))
    assert same["seeds_half"] == 0 and same["examples_half"] > 0
    one = stats.seeds_and_examples_interval(correct[:1])
    assert one["mean"] == pytest.approx(correct[0].mean()) and one["low"] is None


def test_two_level_interval_is_wider_than_the_seeds_only_one():
    # Seeds agree closely, the test set is small: the test set's sampling dominates, and only the
    # two-level interval shows it.
    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.97
    correct = np.stack([truth ^ (rng.random(2000) < 0.002) for _ in range(12)])
    seeds_only = stats.bootstrap_interval(correct.mean(axis=1))
    both = stats.seeds_and_examples_interval(correct, seed=1)  # `seed` kept for old callers
    assert both["high"] - both["low"] > 3 * (seeds_only[1] - seeds_only[0])
    assert both["low"] < correct.mean() < both["high"]


def test_paired_difference_and_p_value_match_scipy():
    a = {0: 0.970, 1: 0.972, 2: 0.969, 3: 0.975, 9: 0.5}
    b = {0: 0.973, 1: 0.974, 2: 0.972, 3: 0.976}
    out = stats.paired_difference(a, b)
    diffs = [0.003, 0.002, 0.003, 0.001]
    assert out["seeds"] == [0, 1, 2, 3] and out["mean"] == pytest.approx(np.mean(diffs))
    expected = scipy.stats.ttest_rel([b[s] for s in range(4)], [a[s] for s in range(4)])
    assert stats.paired_p_value(a, b) == pytest.approx(expected.pvalue)


def test_paired_p_value_of_equal_differences_is_the_exact_sign_flip_one():
    assert stats.paired_p_value({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}) == 1.0
    # n equal non-zero differences: of the 2^n sign flips, 2 are as extreme (two-sided).
    three = {0: 0.5, 1: 0.6, 2: 0.7}
    assert stats.paired_p_value(three, {s: v + 0.01 for s, v in three.items()}) == 2 / 8
    assert stats.paired_p_value({0: 0.5}, {0: 0.6}) is None


def test_probability_of_improvement_is_the_share_of_seeds_won_by_hand():
    reference = {0: 1.0, 1: 2.0, 2: 3.0, 7: 9.0}
    candidate = {0: 2.0, 1: 2.0, 2: 1.0}
    # Seed by seed: a win, a tie (one half), a loss; seed 7 is not shared.
    out = stats.probability_of_improvement(reference, candidate)
    assert out["p"] == pytest.approx(0.5) and out["n"] == 3
    assert (out["wins"], out["ties"]) == (1, 1)
    # Exact: the lower end of 1 win in 3 (the tie a loss), the upper end of 2 in 3 (a win).
    assert out["low"] == pytest.approx(scipy.stats.binomtest(1, 3).proportion_ci().low)
    assert out["high"] == pytest.approx(scipy.stats.binomtest(2, 3).proportion_ci().high)
    assert out["low"] < out["p"] < out["high"]


def test_probability_of_improvement_when_every_seed_wins_has_a_width():
    reference = {s: 0.97 for s in range(10)}
    out = stats.probability_of_improvement(reference, {s: 0.98 for s in range(10)})
    assert out["p"] == 1.0 and out["high"] == 1.0
    assert out["low"] == pytest.approx(0.025 ** (1 / 10)) and out["low"] < 0.7  # [0.69, 1.00]
    for n in range(1, 17):  # never zero-width, whatever the counts
        for wins in range(n + 1):
            for ties in range(n - wins + 1):
                low, high = stats.compare.beats_interval(wins, ties, n)
                assert high - low > 0.1 and low <= (wins + ties / 2) / n <= high


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 of m = 3 tests: 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04).
    assert stats.holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    with pytest.raises(ValueError):  # a NaN would break the ordering silently
        stats.holm([0.01, float("nan")])


def test_mcnemar_on_a_hand_made_table():
    # 2x2 table: both right 5, only A 9, only B 1, neither 2.
    a = np.array([1] * 5 + [1] * 9 + [0] * 1 + [0] * 2, bool)
    b = np.array([1] * 5 + [0] * 9 + [1] * 1 + [0] * 2, bool)
    out = stats.mcnemar(a, b)
    assert (out["both"], out["a_only"], out["b_only"], out["neither"]) == (5, 9, 1, 2)
    # Exact two-sided: 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024.
    assert out["p_value"] == pytest.approx(22 / 1024)
    assert stats.mcnemar(a, a)["p_value"] == 1.0


def test_compare_with_reference_corrects_for_several_comparisons():
    rng = np.random.default_rng(0)
    base = {s: 0.97 + 0.001 * rng.standard_normal() for s in range(8)}
    values = {
        "ref": base,
        "better": {s: v + 0.004 + 0.0005 * rng.standard_normal() for s, v in base.items()},
        "same": {s: v + 0.0005 * rng.standard_normal() for s, v in base.items()},
        "few": {0: 0.99, 1: 0.99},
    }
    rows = stats.compare_with_reference(values, "ref")
    assert rows["better"]["outcome"] == "better"
    # Two seeds can give no verdict: that configuration is not one of the family of tests.
    assert rows["few"]["outcome"] == "too few seeds" and rows["few"]["p_holm"] is None
    raw = [rows[k]["p_value"] for k in ("better", "same")]
    assert [rows[k]["p_holm"] for k in ("better", "same")] == pytest.approx(stats.holm(raw))
    assert {row["holm_family"] for row in rows.values()} == {2}
    line = stats.verdict("better", "ref", rows["better"])
    assert "better is better" in line and "Holm-adjusted over 2" in line and "unadjusted" in line


def test_verdict_without_a_difference_says_so():
    values = {"a": {s: 0.97 + 0.001 * (s % 2) for s in range(6)}}
    values["b"] = {s: v + (0.001 if s % 3 == 0 else -0.001) for s, v in values["a"].items()}
    row = stats.compare_with_reference(values, "a")["b"]
    assert row["outcome"] == "no difference shown"
    assert "no difference shown with 6 seeds" in stats.verdict("b", "a", row)


def test_calibration_bins_and_ece_by_hand():
    confidence = np.array([0.05, 0.5, 0.55, 0.95, 1.0])
    correct = np.array([False, True, False, True, True])
    bins = stats.calibration_bins(confidence, correct, num_bins=2)
    assert bins["count"].tolist() == [2, 3]  # (0, 0.5] and (0.5, 1]
    assert bins["accuracy"][0] == 0.5 and bins["confidence"][1] == pytest.approx(2.5 / 3)
    expected = (2 * abs(0.5 - 0.275) + 3 * abs(2 / 3 - 2.5 / 3)) / 5
    assert stats.expected_calibration_error(confidence, correct, 2) == pytest.approx(expected)
    assert np.isnan(stats.calibration_bins([0.9], [True], 4)["accuracy"][0])


def test_ensemble_curve_averages_every_subset_by_hand():
    rng = np.random.default_rng(1)
    probabilities = stats.softmax(rng.standard_normal((3, 50, 4)))
    labels = rng.integers(0, 4, 50)
    out = stats.ensemble_curve(probabilities, labels, sizes=[1, 2, 3])
    assert out["size"] == [1, 2, 3] and out["subsets"] == [3, 3, 1]
    pairs = [
        np.mean(np.argmax(probabilities[list(s)].mean(0), -1) == labels)
        for s in itertools.combinations(range(3), 2)
    ]
    assert out["accuracy"][1] == pytest.approx(np.mean(pairs))
    full = probabilities.mean(0)
    assert out["nll"][2] == pytest.approx(-np.mean(np.log(full[np.arange(50), labels])))


def test_ensemble_curve_refuses_no_members():
    with pytest.raises(ValueError, match="at least one member"):
        stats.ensemble_curve(np.zeros((0, 5, 3)), np.zeros(5, int))


def test_ensemble_curve_samples_subsets_when_there_are_many():
    probabilities = stats.softmax(np.random.default_rng(2).standard_normal((10, 20, 3)))
    out = stats.ensemble_curve(probabilities, np.zeros(20, int), max_subsets=5)
    assert out["size"] == [1, 2, 4, 8, 10] and out["subsets"] == [5, 5, 5, 5, 1]
    again = stats.ensemble_curve(probabilities, np.zeros(20, int), max_subsets=5)
    assert again == out


def test_expected_max_is_the_mean_max_over_subsets():
    values = [0.91, 0.95, 0.93, 0.97, 0.92, 0.95]
    out = stats.expected_max(values)
    for n in range(1, len(values) + 1):
        maxima = [max(s) for s in itertools.combinations(values, n)]
        assert out["expected"][n - 1] == pytest.approx(np.mean(maxima))
        # The band and the spread are those of the same best of n-subsets.
        assert out["std"][n - 1] == pytest.approx(np.std(maxima), abs=1e-12)
        assert out["low"][n - 1] == np.quantile(maxima, 0.1, method="inverted_cdf")
        assert out["high"][n - 1] == np.quantile(maxima, 0.9, method="inverted_cdf")
    assert out["expected"][-1] == pytest.approx(max(values))
    assert out["low"][-1] == out["high"][-1] == out["observed_max"] == max(values)
    assert out["trials"] == list(range(1, 7))


def test_expected_max_band_never_leaves_the_observed_range():
    # 18 trials as in the audit, where the old band (with-replacement std around the
    # without-replacement mean) reached 97.34% against an observed best of 97.29%.
    rng = np.random.default_rng(5)
    for size in (2, 3, 18, 40):
        values = rng.normal(0.97, 0.004, size)
        out = stats.expected_max(values)
        assert max(out["high"]) <= values.max() and min(out["low"]) >= values.min()
        assert max(out["expected"]) <= values.max()


def test_expected_max_is_stable_for_many_trials():
    out = stats.expected_max(np.linspace(0, 1, 2000))
    assert all(math.isfinite(x) for x in out["expected"])
    assert out["expected"][0] == pytest.approx(0.5) and out["expected"][-1] == pytest.approx(1.0)
