"""The host epoch loop shared by fit and run_sweep: records, the divergence guard, no transfers."""

import functools

import jax
import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.epochs import diverged, exact_accuracy, run_epochs
from mnist_jax.errors import TrainingError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.train import TrainSpec, create_train_state, train_epoch_jit, validate_epoch_jit

CONFIG = TrainConfig(hidden_sizes=(8,), batch_size=32, epochs=2, eval_batch_size=64)


def tiny_data(device=True) -> DeviceData:
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(96, 784)).astype(np.float32)
    labels = rng.integers(0, 10, size=96).astype(np.int32)
    arrays = [images[:64], labels[:64], images[64:], labels[64:], images[64:], labels[64:]]
    return DeviceData(*(jax.device_put(arrays) if device else arrays), num_classes=10)


@pytest.mark.slow
def test_an_epoch_makes_no_implicit_host_transfer():
    # The epoch loop runs the compiled calls under transfer_guard("disallow"): data left on the
    # host is a transfer inside the epoch, refused. fit (as a sweep) puts its data on its device
    # once, before the loop, so it trains on data given on the host.
    assert len(fit(CONFIG, tiny_data()).history) == 2
    assert len(fit(CONFIG, tiny_data(device=False)).history) == 2
    spec = TrainSpec.from_config(CONFIG)
    loop = run_epochs(
        functools.partial(train_epoch_jit, spec),
        functools.partial(validate_epoch_jit, spec, chunk_size=CONFIG.eval_batch_size),
        create_train_state(CONFIG, spec),
        tiny_data(device=False),
        range(1, 2),
        [[]],
        raise_on_divergence=True,
    )
    with pytest.raises(Exception, match="host-to-device transfer"):
        next(loop)


class FakeState:
    def __init__(self, stopped):
        self.stopped = np.asarray(stopped)


def fake_programs(losses, stops=None):
    """An epoch program whose per-member training losses are `losses[epoch]`, and a validation
    whose per-member `stopped` flags after each epoch are `stops[epoch]` (default: never)."""
    calls = []
    members = len(losses[0])
    stops = stops or [[False] * members] * len(losses)

    def epoch_program(state, images, labels):
        loss = np.asarray(losses[len(calls)], np.float32)  # host arrays: no transfer to guard
        calls.append(1)
        return state, {"loss": loss, "accuracy": np.zeros_like(loss)}

    def validate(state, images, labels):
        stopped = np.asarray(stops[len(calls) - 1])
        metrics = {"loss": np.ones(members), "accuracy": np.full(members, 0.5)}
        return FakeState(stopped), {**metrics, "stopped": stopped}

    return epoch_program, validate, FakeState([False] * members)


def test_records_per_member_and_a_diverged_member_is_marked_not_trained_on():
    epoch_program, validate, state = fake_programs([[0.5, np.nan], [0.4, 0.3]])
    histories = [[], []]
    loop = run_epochs(
        epoch_program,
        validate,
        state,
        tiny_data(),
        range(1, 3),
        histories,
        raise_on_divergence=False,
    )
    records = [r for _, r in loop]
    assert [h[-1]["epoch"] for h in histories] == [2, 1]
    assert diverged(histories[1][-1]) and not diverged(histories[0][-1])
    assert records[1][1] is None and records[1][0]["train_loss"] == pytest.approx(0.4)


def test_raise_on_divergence_names_the_member():
    epoch_program, validate, state = fake_programs([[0.5, np.inf]])
    loop = run_epochs(
        epoch_program,
        validate,
        state,
        tiny_data(),
        range(1, 2),
        [[], []],
        raise_on_divergence=True,
        name=lambda k: f"member {k}",
    )
    with pytest.raises(TrainingError, match="member 1 diverged at epoch 1"):
        list(loop)


def test_every_member_diverged_stops_the_loop():
    epoch_program, validate, state = fake_programs([[np.nan], [0.1], [0.1]])
    histories = [[]]
    list(
        run_epochs(
            epoch_program,
            validate,
            state,
            tiny_data(),
            range(1, 4),
            histories,
            raise_on_divergence=False,
        )
    )
    assert len(histories[0]) == 1


def test_a_member_stopped_early_gets_no_more_records_and_all_stopped_ends_the_loop():
    stops = [[False, True], [True, True], [True, True]]
    epoch_program, validate, state = fake_programs([[0.5, 0.5], [0.4, 0.4], [0.3, 0.3]], stops)
    histories = [[], []]
    loop = run_epochs(
        epoch_program,
        validate,
        state,
        tiny_data(),
        range(1, 4),
        histories,
        raise_on_divergence=False,
    )
    records = [r for _, r in loop]
    assert [len(h) for h in histories] == [2, 1]  # member 1 stopped after epoch 1
    assert records[1][1] is None and records[1][0]["epoch"] == 2
    assert len(records) == 2  # both stopped after epoch 2: epoch 3 never ran


def test_a_state_restored_stopped_does_not_train():
    epoch_program, validate, _ = fake_programs([[0.5]])
    histories = [[{"epoch": 1}]]
    loop = run_epochs(
        epoch_program,
        validate,
        FakeState([True]),
        tiny_data(),
        range(2, 3),
        histories,
        raise_on_divergence=False,
    )
    assert list(loop) == [] and histories == [[{"epoch": 1}]]


def test_exact_accuracy_recovers_the_ratio_float32_rounded_below_a_reached_target():
    rounded = float(np.float32(9550 / 10_000))
    assert rounded < 0.955  # what the compiled validation returns: under the target it reached
    assert exact_accuracy(rounded, 10_000) == 0.955
    assert exact_accuracy(float(np.float32(1 / 3)), 3) == 1 / 3
    assert np.isnan(exact_accuracy(float("nan"), 10))
    assert exact_accuracy(0.5, 2**24) == 0.5  # too many examples to recover: left as it is


@pytest.mark.slow
def test_records_hold_accuracies_as_exact_ratios_of_the_examples():
    # A real single run on 60 training and 36 validation images (not powers of two, whose
    # ratios float32 would hold exactly): each record's accuracies are k/n.
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(96, 784)).astype(np.float32)
    labels = rng.integers(0, 2, size=96).astype(np.int32)
    arrays = [images[:60], labels[:60], images[60:], labels[60:], images[60:], labels[60:]]
    history = fit(CONFIG, DeviceData(*jax.device_put(arrays), num_classes=10)).history
    for record in history:
        for metric, n in (("train_accuracy", 60), ("val_accuracy", 36)):
            k = round(record[metric] * n)
            assert 0 < k < n and record[metric] == k / n, (metric, record[metric])
