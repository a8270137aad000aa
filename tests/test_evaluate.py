"""Evaluation: vmapped prediction equals plain numpy maths; metrics on hand-made cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.evaluate import evaluate_loss_accuracy, predict_logits, predict_logits_many
from mnist_jax.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    cross_entropy,
    per_class_accuracy,
    top_errors,
)
from mnist_jax.models import init_params, mlp

MLP = mlp()


def numpy_logits(params, images):
    x = np.asarray(images, np.float64)
    for name in ("Dense_0", "Dense_1"):
        x = np.maximum(x @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    return x @ np.asarray(params["Dense_2"]["kernel"]) + np.asarray(params["Dense_2"]["bias"])


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(7), (1003, 784))


@pytest.mark.parametrize("chunk_size", [1003, 250, 64])
def test_vmapped_chunked_prediction_equals_numpy(images, chunk_size):
    params = init_params(jax.random.key(0))
    logits = predict_logits(MLP, params, images, chunk_size=chunk_size)
    assert logits.shape == (1003, 10)
    np.testing.assert_allclose(logits, numpy_logits(params, images), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_prediction_over_stacked_models_equals_each_model_alone(images):
    stacked = jax.vmap(init_params)(jax.random.split(jax.random.key(0), 3))
    many = predict_logits_many(MLP, stacked, images, chunk_size=500)
    assert many.shape == (3, 1003, 10)
    for k in range(3):
        one = jax.tree_util.tree_map(lambda leaf, k=k: leaf[k], stacked)
        np.testing.assert_allclose(many[k], numpy_logits(one, images), rtol=1e-4, atol=1e-5)


def test_loss_and_accuracy_equal_numpy(images):
    params = init_params(jax.random.key(0))
    labels = jax.random.randint(jax.random.key(1), (1003,), 0, 10)
    result = evaluate_loss_accuracy(MLP, params, images, labels, chunk_size=300)
    logits = numpy_logits(params, images)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected_loss = -log_probs[np.arange(1003), np.asarray(labels)].mean()
    assert float(result["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    assert float(result["accuracy"]) == pytest.approx(
        (logits.argmax(1) == np.asarray(labels)).mean()
    )


# A hand-made case: 3 classes, 6 examples.
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
PROBS = jnp.array(
    [
        [0.90, 0.05, 0.05],  # right
        [0.20, 0.70, 0.10],  # wrong: predicted 1 with 0.70
        [0.10, 0.80, 0.10],  # right
        [0.05, 0.05, 0.90],  # wrong: predicted 2 with 0.90
        [0.30, 0.30, 0.40],  # right
        [0.60, 0.10, 0.30],  # wrong: predicted 0 with 0.60
    ]
)


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix(jnp.argmax(PROBS, axis=1), LABELS, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 1], [1, 0, 1]])


def test_per_class_accuracy_is_the_diagonal_over_row_sums():
    cm = jnp.array([[3, 1], [0, 0]])
    result = np.asarray(per_class_accuracy(cm))
    assert result[0] == pytest.approx(0.75) and np.isnan(result[1])


def test_top_errors_are_the_most_confident_wrong_predictions_in_order():
    errors = top_errors(PROBS, LABELS, k=2)
    assert errors["index"].tolist() == [3, 1]
    assert errors["true"].tolist() == [1, 0] and errors["predicted"].tolist() == [2, 1]
    np.testing.assert_allclose(errors["confidence"], [0.90, 0.70])
    assert errors["valid"].tolist() == [True, True]


def test_top_errors_mark_padding_when_fewer_examples_are_wrong():
    errors = top_errors(PROBS, LABELS, k=5)
    assert errors["valid"].tolist() == [True, True, True, False, False]


@pytest.mark.slow
def test_classification_report_is_json_ready_and_consistent():
    logits = jnp.log(PROBS)
    report = classification_report(logits, LABELS, 3, k=5)
    assert report["test_accuracy"] == pytest.approx(0.5)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert report["per_class_accuracy"] == [0.5, 0.5, 0.5]
    assert [e["index"] for e in report["top_errors"]] == [3, 1, 5]
    assert report["test_loss"] == pytest.approx(float(cross_entropy(logits, LABELS)))
    assert float(accuracy(logits, LABELS)) == pytest.approx(0.5)


def test_classification_report_accuracies_are_exact_ratios_of_counts():
    """k/n as a Python float, not a float32 mean: 1/3 stays 1/3 (float32 rounds it), so the
    statistics over runs and the comparisons from predictions see the same numbers."""
    labels = jnp.array([0, 1, 1])
    logits = jnp.log(jnp.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]))
    report = classification_report(logits, labels, 2, k=2)
    assert report["test_accuracy"] == 1 / 3
    assert report["per_class_accuracy"] == [1.0, 0.0]
    assert float(accuracy(logits, labels)) != 1 / 3  # what float32 gives


@pytest.mark.slow
def test_classification_report_is_one_compiled_program():
    """Its dozen metrics compile as one program, not one per eager operation (which took seconds
    of every run's end, each too short-lived for the persistent compilation cache)."""
    compilations = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compilations.append(duration)

    logits = jax.random.normal(jax.random.key(3), (37, 7))  # shapes no other test uses
    labels = jax.random.randint(jax.random.key(4), (37,), 0, 7)
    jax.block_until_ready((logits, labels))
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        report = classification_report(logits, labels, 7, k=4)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert len(compilations) == 1
    assert report["test_accuracy"] == pytest.approx(float(accuracy(logits, labels)))
    assert len(report["top_errors"]) == 4


def test_predict_logits_given_raw_uint8_images_says_to_scale_them():
    # A raw Flax ScopeParamShapeError came out of the model instead.
    model = mlp()
    params = model.init(jax.random.key(0), (784,))
    with pytest.raises(ValueError, match="scale_to_layout"):
        predict_logits(model, params, np.zeros((3, 28, 28), np.uint8))
    assert predict_logits(model, params, np.zeros((3, 784), np.float32)).shape == (3, 10)


def test_evaluate_test_set_gives_the_wilson_interval_that_metrics_json_has():
    from mnist_jax.report import evaluate_test_set
    from mnist_jax.stats import wilson_interval

    model = mlp()
    params = model.init(jax.random.key(0), (784,))
    images = jax.random.uniform(jax.random.key(1), (300, 784))
    labels = jax.random.randint(jax.random.key(2), (300,), 0, 10)
    report, probabilities = evaluate_test_set(model, params, images, labels, num_classes=10)
    assert report["test_correct"] == round(report["test_accuracy"] * 300)
    assert report["test_correct"] == int(np.sum(probabilities.argmax(1) == np.asarray(labels)))
    assert report["test_accuracy_wilson95"] == list(wilson_interval(report["test_correct"], 300))
