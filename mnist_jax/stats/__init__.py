"""Statistics for honest reporting, as pure numpy/scipy functions of plain arrays and dicts.

Every interval says what it resamples:

- `intervals`: a mean over seeds with the test set fixed (`summarize`, `bootstrap_interval`),
  over seeds *and* test examples (`seeds_and_examples_interval`), one run's accuracy over test
  examples (`wilson_interval`), and two runs' difference over the test examples they share
  (`paired_proportions_interval`);
- `compare`: two configurations seed by seed (`paired_difference`, `probability_of_improvement`,
  `paired_p_value`, Holm's correction, `compare_with_reference`, `verdict`), and two sets of
  predictions example by example (`mcnemar`);
- `calibration`: reliability bins, expected calibration error, and ensembles of growing size;
- `selection`: the expected best result after n trials of a hyper-parameter search;
- `coverage`: how often each of those intervals covers the truth, simulated.

scipy is imported inside the functions that use it: importing scipy.stats takes about a second,
and a single run, which needs only the Wilson interval, should not pay it. Bootstrap draws come
from `numpy.random.default_rng(seed)` with a fixed default seed, so a report's numbers are the
same each time they are computed. Undefined values (an interval of one seed) are None, so results
are valid JSON as they are.
"""

from mnist_jax.stats.calibration import (
    calibration_bins,
    ensemble_curve,
    expected_calibration_error,
    softmax,
)
from mnist_jax.stats.compare import (
    compare_with_reference,
    holm,
    mcnemar,
    paired_difference,
    paired_p_value,
    probability_of_improvement,
    verdict,
)
from mnist_jax.stats.intervals import (
    CONFIDENCE,
    bootstrap_interval,
    paired_proportions_interval,
    seeds_and_examples_interval,
    summarize,
    wilson_interval,
)
from mnist_jax.stats.selection import expected_max

__all__ = [
    "CONFIDENCE",
    "bootstrap_interval",
    "calibration_bins",
    "compare_with_reference",
    "ensemble_curve",
    "expected_calibration_error",
    "expected_max",
    "holm",
    "mcnemar",
    "paired_difference",
    "paired_p_value",
    "paired_proportions_interval",
    "probability_of_improvement",
    "seeds_and_examples_interval",
    "softmax",
    "summarize",
    "verdict",
    "wilson_interval",
]
