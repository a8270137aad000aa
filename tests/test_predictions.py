"""predictions.npz: what it keeps, that it round-trips, and that a bad file is one clear error."""

import numpy as np
import pytest

from mnist_jax.errors import ConfigError
from mnist_jax.predictions import Predictions
from mnist_jax.stats import softmax


def _predictions():
    rng = np.random.default_rng(0)
    probabilities = softmax(rng.standard_normal((2, 6, 10)))
    labels = rng.integers(0, 10, 6)
    return Predictions.from_probabilities([probabilities[0], None, probabilities[1]], labels), (
        probabilities,
        labels,
    )


def test_predictions_keep_the_class_and_its_probability():
    predictions, (probabilities, labels) = _predictions()
    assert predictions.valid.tolist() == [True, False, True]
    assert predictions.predicted[2].tolist() == np.argmax(probabilities[1], -1).tolist()
    np.testing.assert_allclose(predictions.confidence[0], probabilities[0].max(-1), rtol=1e-6)
    expected = np.mean(np.argmax(probabilities[0], -1) == labels)
    assert predictions.accuracy[0] == expected and np.isnan(predictions.accuracy[1])
    assert not predictions.correct[1].any()


def test_predictions_round_trip_through_the_archive(tmp_path):
    predictions, _ = _predictions()
    loaded = Predictions.load(predictions.save(tmp_path / "predictions.npz"))
    for name in ("predicted", "confidence", "labels", "valid"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(predictions, name))
    assert loaded.predicted.dtype == np.uint8  # ten classes fit a byte


@pytest.mark.parametrize(
    "content",
    [b"", b"not an archive", None],
    ids=["empty", "text", "missing-array"],
)
def test_a_bad_predictions_file_is_one_config_error(tmp_path, content):
    path = tmp_path / "predictions.npz"
    if content is None:
        np.savez(path, predicted=np.zeros((1, 3), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="not a readable predictions file"):
        Predictions.load(path)


def test_a_missing_predictions_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Predictions.load(tmp_path / "predictions.npz")


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        Predictions(np.zeros((2, 3), int), np.zeros((2, 4)), np.zeros(3, int), np.ones(2, bool))


def test_a_single_array_or_impossible_values_are_refused(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "predictions.npz")
    with pytest.raises(ConfigError, match="not an archive"):
        Predictions.load(tmp_path / "predictions.npz")
    bad = Predictions(
        np.zeros((1, 3), np.uint8),
        np.full((1, 3), 5.9, np.float32),
        np.zeros(3, np.uint8),
        np.ones(1, bool),
    )
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match=r"probabilities in \[0, 1\]"):
        Predictions.load(tmp_path / "bad.npz")
    empty = Predictions(
        np.zeros((1, 0), np.uint8), np.zeros((1, 0)), np.zeros(0, int), np.ones(1, bool)
    )
    empty.save(tmp_path / "empty.npz")
    with pytest.raises(ConfigError, match="no models or no test images"):
        Predictions.load(tmp_path / "empty.npz")
