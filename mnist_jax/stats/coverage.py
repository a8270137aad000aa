"""How often each interval the project prints covers the truth: seeded simulations, fast enough
for the test suite, at the seed counts where each interval is offered.

The model of a sweep's test accuracies: the test set is E images drawn from the task, each with a
chance of being classified right, 1 (most images), 0.75 or 0.25 (`DIFFICULTY`: 97.5% accuracy on
average); every seed's model gets each image right or wrong independently with that chance. Two
seeds then differ by the luck of the hard images alone, 0.75 times the binomial standard error of
one run's accuracy: the MNIST MLP's ratio (seed-to-seed standard deviation 0.12 points, binomial
standard error 0.16 points on 10,000 images). `SPREADS` names that spread and one ten times
larger, made by adding a normal seed effect to every image's score. The intervals depend on that
ratio, not on E, so E is kept small (fast); the seeds-only intervals do not depend on the spread
at all (they are scale-free), and are simulated on normal seed means.

Two runs compared image by image hold their two models fixed: each test image is one both get
right or both wrong, one only B gets right, or one only A does, with fixed chances
(`RUNS_SETTINGS`), and the interval is to cover B's accuracy minus A's on the task.

`coverage_table()` measures every interval, with the methods they replace (`before`) for
comparison; `render_table` gives docs/statistics.md's table (`python -m experiments.coverage`).
"""

from __future__ import annotations

import math

import numpy as np

from mnist_jax.stats.compare import beats_interval
from mnist_jax.stats.intervals import (
    CONFIDENCE,
    MIN_BOOTSTRAP_SEEDS,
    _t,
    bootstrap_means,
    expanded_tail,
    paired_proportions_interval,
    seeds_and_examples_parts,
    wilson_interval,
)
from mnist_jax.stats.selection import _log_comb

DIFFICULTY = ((1.0, 0.927), (0.75, 0.0595), (0.25, 0.0135))  # (chance right, share of the images)
SPREADS = {"like the MNIST MLP": 1.0, "10x": 10.0}  # seed spread, times the MLP-like one
SEEDS = (2, 3, 5, 10, 16)
TRUE_BEATS = (0.5, 0.8, 0.9, 0.95)
# Two runs compared image by image (`compare_runs`): (test images, share of the images on which
# the two fixed models disagree, true difference B minus A). Two MNIST runs disagree on 2-4% of
# the 10,000 images; 1,000 images with 3-10 disagreements is where the bootstrap it replaced
# fell short. The bootstrap's ends fall on multiples of 1/images, so a true difference on one
# would count as covered whenever an end touches it: the differences other than 0 lie between
# (+0.305 points on 10,000 images; +0.15, +0.25, +0.35 and +0.95 on 1,000).
RUNS_SETTINGS = (
    (10_000, 0.02, 0.0),
    (10_000, 0.02, 0.00305),
    (10_000, 0.04, 0.0),
    (10_000, 0.04, 0.00305),
    (1_000, 0.01, 0.0),
    (1_000, 0.01, 0.0035),
    (1_000, 0.005, 0.0025),
    (1_000, 0.003, 0.0015),
    (1_000, 0.01, 0.0095),
)
RUNS_RESAMPLES = 2_000  # what compare_runs's bootstrap drew


def true_accuracy() -> float:
    return float(sum(p * share for p, share in DIFFICULTY))


def simulate_tables(
    replicates: int, seeds: int, examples: int, spread: float, rng: np.random.Generator
) -> np.ndarray:
    """`replicates` sweeps' (seeds, examples) tables of per-image scores (1 right, 0 wrong, plus
    the seed's effect when `spread` > 1), each on its own test set."""
    chance = np.array([p for p, _ in DIFFICULTY])
    share = np.array([s for _, s in DIFFICULTY])
    kind = rng.choice(len(chance), size=(replicates, 1, examples), p=share)
    tables = (rng.random((replicates, seeds, examples), dtype=np.float32) < chance[kind]).astype(
        np.float64
    )
    if spread > 1:  # the images' luck alone spreads seeds by `luck`; the seed effect adds the rest
        luck = math.sqrt(sum(share * p * (1 - p) for p, share in DIFFICULTY) / examples)
        extra = luck * math.sqrt(spread**2 - 1)
        tables += rng.normal(0.0, extra, size=(replicates, seeds, 1))
    return tables


def _covers(low, high, truth) -> float:
    return float(np.mean((np.asarray(low) <= truth) & (truth <= np.asarray(high))))


# --------------------------------------------------------------------------- over seeds


def t_coverage(seeds: int, replicates: int, rng: np.random.Generator) -> float:
    """The Student-t interval over seeds (`summarize`), normal seed means around 0."""
    x = rng.normal(size=(replicates, seeds))
    half = _t(CONFIDENCE, seeds - 1) * x.std(axis=1, ddof=1) / math.sqrt(seeds)
    mean = x.mean(axis=1)
    return _covers(mean - half, mean + half, 0.0)


def bootstrap_coverage(
    seeds: int, replicates: int, rng: np.random.Generator, resamples: int = 1000, before=False
) -> float:
    """`bootstrap_interval`'s expanded percentile bootstrap (`before`: the plain percentile one
    it replaces), normal seed means around 0; `resamples` draws per interval."""
    x = rng.normal(size=(replicates, seeds))
    means = bootstrap_means(x, resamples, rng)
    tail = (1 - CONFIDENCE) / 2 if before else expanded_tail(seeds)
    low, high = np.quantile(means, [tail, 1 - tail], axis=1)
    return _covers(low, high, 0.0)


# --------------------------------------------------------------------------- seeds and examples


def _two_level_bootstrap(tables: np.ndarray, resamples: int, rng: np.random.Generator):
    """The two-level percentile bootstrap `seeds_and_examples_interval` used to be: seeds, then
    examples (one draw shared by the drawn seeds), resampled with replacement."""
    replicates, seeds, examples = tables.shape
    low, high = np.empty(replicates), np.empty(replicates)
    tail = (1 - CONFIDENCE) / 2
    for k in range(replicates):
        counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
        totals = counts @ tables[k]  # (resamples, examples): the drawn seeds' sum per example
        columns = rng.integers(0, examples, size=(resamples, examples))
        draws = np.take_along_axis(totals, columns, axis=1).sum(axis=1) / (seeds * examples)
        low[k], high[k] = np.quantile(draws, [tail, 1 - tail])
    return low, high


def seeds_and_examples_coverage(
    seeds: int,
    spread: float,
    replicates: int,
    rng: np.random.Generator,
    *,
    examples: int = 1000,
    before: bool = False,
    resamples: int = 200,
    chunk: int = 100,
) -> float:
    """`seeds_and_examples_interval` (`before`: the two-level bootstrap it replaces, `resamples`
    draws each) covering the task's accuracy, a new test set per replicate."""
    covered = 0.0
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        tables = simulate_tables(size, seeds, examples, spread, rng)
        if before:
            low, high = _two_level_bootstrap(tables, resamples, rng)
        else:
            parts = seeds_and_examples_parts(tables)
            low, high = parts["low"], parts["high"]
        covered += _covers(low, high, true_accuracy()) * size
    return covered / replicates


# --------------------------------------------------------------------------- proportions


def _trinomial_outcomes(n: int, win: float, tie: float):
    """Every (wins, ties) of n seeds and its probability."""
    from scipy.stats import multinomial

    wins, ties = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    possible = wins + ties <= n
    wins, ties = wins[possible], ties[possible]
    counts = np.stack([wins, ties, n - wins - ties], axis=1)
    return wins, ties, multinomial.pmf(counts, n, [win, tie, max(0.0, 1 - win - tie)])


def beats_coverage(
    seeds: int, beats: float, tie: float = 0.0, *, before: bool = False, resamples: int = 2000
) -> float:
    """Exact coverage of `probability_of_improvement`'s interval (`before`: the percentile
    bootstrap of the seeds' win scores it replaces, offered from 10 seeds) when the candidate
    beats the reference with probability `beats` (ties counting one half) and ties with
    probability `tie`: the sum over every possible count of wins and ties, no simulation error
    (the bootstrap's own draws aside)."""
    win = beats - tie / 2
    if win < 0 or win + tie > 1:
        raise ValueError(f"P(beats) = {beats} is impossible with P(tie) = {tie}")
    wins, ties, chance = _trinomial_outcomes(seeds, win, tie)
    if not before:
        low, high = beats_interval(wins, ties, seeds)
        return float(np.sum(chance * ((low <= beats) & (beats <= high))))
    rng = np.random.default_rng(0)
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    total = 0.0
    for w, t, c in zip(wins, ties, chance):
        scores = np.concatenate([np.ones(w), np.full(t, 0.5), np.zeros(seeds - w - t)])
        low, high = np.quantile(scores[draws].mean(axis=1), [0.025, 0.975])
        total += c * (low <= beats <= high)
    return float(total)


def wilson_coverage(trials: int, accuracy: float) -> float:
    """Exact coverage of `wilson_interval` for one run's accuracy on `trials` test images."""
    from scipy.stats import binom

    k = np.arange(trials + 1)
    bounds = np.array([wilson_interval(int(j), trials) for j in k])
    covered = (bounds[:, 0] <= accuracy) & (accuracy <= bounds[:, 1])
    return float(np.sum(binom.pmf(k, trials, accuracy) * covered))


# ------------------------------------------------------------------- two runs, image by image


def _discordant_chances(discordant: float, difference: float) -> tuple[float, float]:
    """P(only B right), P(only A right) for a share `discordant` of disagreements and a true
    difference B minus A."""
    only_b, only_a = (discordant + difference) / 2, (discordant - difference) / 2
    if min(only_b, only_a) < 0 or discordant > 1:
        raise ValueError(f"a difference of {difference} needs more than {discordant} disagreements")
    return only_b, only_a


def runs_bootstrap_intervals(only_b, only_a, images: int, rng, resamples: int = RUNS_RESAMPLES):
    """`bootstrap_interval(difference, resamples=resamples)` of each test set whose per-image
    differences (B minus A: 1, -1, 0) hold `only_b` ones and `only_a` minus ones, drawn in O(1)
    per resample: a resample's counts of ones and minus ones are multinomial with the observed
    shares (drawn as a binomial and a conditional binomial), and its mean is their difference
    over `images`, the same number to the last bit as the mean of the resampled values. The
    quantiles are read as `bootstrap_interval` reads them, at `expanded_tail(images)`."""
    only_b = np.asarray(only_b, np.int64)[:, None]
    only_a = np.asarray(only_a, np.int64)[:, None]
    rest = images - only_b
    drawn_b = rng.binomial(images, only_b / images, size=(only_b.shape[0], resamples))
    chance_a = np.divide(only_a, rest, out=np.zeros(only_a.shape), where=rest > 0)
    drawn_a = rng.binomial(images - drawn_b, chance_a)
    tail = expanded_tail(images)
    low, high = np.quantile((drawn_b - drawn_a) / images, [tail, 1 - tail], axis=1)
    return low, high


def runs_bootstrap_coverage(
    images: int,
    discordant: float,
    difference: float,
    replicates: int,
    rng: np.random.Generator,
    *,
    resamples: int = RUNS_RESAMPLES,
) -> float:
    """How often the bootstrap interval `compare_runs` used to print (`runs_bootstrap_intervals`)
    covers the true difference of two fixed models, a new test set per replicate."""
    only_b, only_a = _discordant_chances(discordant, difference)
    counts = rng.multinomial(images, [only_b, only_a, 1 - only_b - only_a], size=replicates)
    low, high = runs_bootstrap_intervals(counts[:, 0], counts[:, 1], images, rng, resamples)
    return _covers(low, high, difference)


def _binomial_pmf(k, n, p):
    """Binomial probabilities, from scipy.special (importing scipy.stats takes a second)."""
    from scipy.special import xlog1py, xlogy

    return np.exp(_log_comb(n, k) + xlogy(k, p) + xlog1py(n - k, -p))


def runs_difference_coverage(images: int, discordant: float, difference: float) -> float:
    """Exact coverage of `paired_proportions_interval`, `compare_runs`'s interval of the
    difference of two fixed models' accuracies: the sum over every count m of disagreements
    (binomial) and of the m won by B (binomial given m), counts of m beyond ten standard
    deviations aside (a share below 1e-20)."""
    only_b, _ = _discordant_chances(discordant, difference)
    mean, sd = images * discordant, math.sqrt(images * discordant * (1 - discordant))
    first = max(0, math.floor(mean - 10 * sd - 10))
    last = min(images, math.ceil(mean + 10 * sd + 10))
    m = np.concatenate([np.full(k + 1, k) for k in range(first, last + 1)])
    won = np.concatenate([np.arange(k + 1) for k in range(first, last + 1)])
    chance = _binomial_pmf(m, images, discordant) * _binomial_pmf(
        won, m, only_b / discordant if discordant > 0 else 0.5
    )
    low, high = paired_proportions_interval(won, m - won, images)
    return float(np.sum(chance * ((low <= difference) & (difference <= high))))


# --------------------------------------------------------------------------- the table


def coverage_table(replicates: int = 2000, seed: int = 0, examples: int = 1000) -> list[dict]:
    """Every interval's measured coverage: rows of `interval`, `seeds`, `setting`, `before` (the
    replaced method's; None where it was not offered, "same" where the method is unchanged) and
    `now`. `replicates` simulated sweeps (or test sets) per row (a fifth of them for the slow
    two-level bootstrap of `before`); P(beats), Wilson and the two runs' interval are summed
    exactly over every outcome."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(interval: str, seeds: int, setting: str, before, now) -> None:
        rows.append(
            {"interval": interval, "seeds": seeds, "setting": setting, "before": before, "now": now}
        )

    scale_free = "any spread (scale-free)"
    for n in SEEDS:
        interval = "Student-t 95%, seeds (test set fixed)"
        add(interval, n, scale_free, "same", t_coverage(n, replicates, rng))
    for n in SEEDS:
        offered = "" if n >= MIN_BOOTSTRAP_SEEDS else "; not offered below 10 seeds"
        add(
            "bootstrap 95%, seeds (test set fixed)",
            n,
            scale_free + offered,
            bootstrap_coverage(n, replicates, rng, before=True),
            bootstrap_coverage(n, replicates, rng),
        )
    for name, spread in SPREADS.items():
        for n in SEEDS:
            add(
                "seeds and test images 95%",
                n,
                f"seed spread {name}",
                seeds_and_examples_coverage(
                    n, spread, max(200, replicates // 5), rng, examples=examples, before=True
                ),
                seeds_and_examples_coverage(n, spread, replicates, rng, examples=examples),
            )
    for n in SEEDS:
        for beats in TRUE_BEATS:
            for tie in (0.0, 0.1) if beats == 0.9 else (0.0,):
                add(
                    "P(beats the reference on a seed) 95%",
                    n,
                    f"P = {beats:g}" + (f", P(tie) = {tie:g}" if tie else ""),
                    beats_coverage(n, beats, tie, before=True)
                    if n >= MIN_BOOTSTRAP_SEEDS
                    else None,
                    beats_coverage(n, beats, tie),
                )
    for images, discordant, difference in RUNS_SETTINGS:
        add(
            "difference of two runs 95%, test images (models fixed)",
            1,
            f"{images:,} images, {100 * discordant:g}% discordant, "
            "true difference " + (f"{100 * difference:+g} points" if difference else "0"),
            runs_bootstrap_coverage(images, discordant, difference, replicates, rng),
            runs_difference_coverage(images, discordant, difference),
        )
    for accuracy in (0.975, 0.99):
        interval = "Wilson 95%, one run's test images"
        setting = f"10,000 images, accuracy {accuracy:g}"
        add(interval, 1, setting, "same", wilson_coverage(10_000, accuracy))
    return rows


def render_table(rows: list[dict]) -> str:
    """`coverage_table`'s rows as a Markdown table, coverage in percent ('-': not offered)."""

    def pct(x):
        return "-" if x is None else x if isinstance(x, str) else f"{100 * x:.1f}%"

    lines = ["| interval | seeds | setting | before | now |", "|---|---:|---|---:|---:|"]
    for r in rows:
        cells = (r["interval"], r["seeds"], r["setting"], pct(r["before"]), pct(r["now"]))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
