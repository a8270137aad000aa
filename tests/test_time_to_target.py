"""Time to target: the first epoch and the training seconds at which validation accuracy reached
a target, per member and per configuration; --stop-at-target ends runs there."""

import json
import math

import jax
import numpy as np
import pytest

from experiments import sweep
from experiments.cli import run_main
from mnist_jax.config import TrainConfig
from mnist_jax.epochs import time_to_target
from mnist_jax.errors import ConfigError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.sweep import Member, MemberResult
from mnist_jax.sweep.stats import member_histories, time_to_target_by_config


def record(epoch, val_accuracy, seconds=2.0, loss=0.5):
    return {
        "epoch": epoch,
        "train_loss": loss,
        "train_accuracy": 0.5,
        "val_loss": 0.5,
        "val_accuracy": val_accuracy,
        "seconds": seconds,
    }


def test_time_to_target_is_the_first_epoch_reaching_it_and_the_seconds_up_to_it():
    history = [record(1, 0.90, 3.0), record(2, 0.975, 2.0), record(3, 0.98, 2.0)]
    assert time_to_target(history, 0.975) == {"reached": True, "epoch": 2, "seconds": 5.0}
    assert time_to_target(history, 0.99) == {"reached": False, "epoch": None, "seconds": None}
    diverged = [record(1, 0.99, loss=math.nan)]
    assert time_to_target(diverged, 0.5)["reached"] is False


def test_a_runs_time_to_target_is_said_in_words_reached_or_not():
    from mnist_jax.report import time_to_target_text

    losses = {"train_loss": 0.1, "val_loss": 0.1}
    history = [{"epoch": 1, "val_accuracy": 0.97, "seconds": 2.5, **losses}]
    history.append({"epoch": 2, "val_accuracy": 0.98, "seconds": 2.0, **losses})
    reached = {"target": 0.975, **time_to_target(history, 0.975)}
    assert "reached the target 0.9750 at epoch 2, after 4.50 s" in time_to_target_text(reached)
    never = {"target": 0.99, **time_to_target(history, 0.99)}
    assert time_to_target_text(never) == "validation accuracy never reached the target 0.9900"
    assert time_to_target_text(None) is None


def test_per_configuration_members_that_never_reach_it_are_counted_not_dropped():
    fast, slow = Member(0, 3e-3, 0.25, (8,)), Member(1, 3e-3, 0.25, (8,))
    other = Member(0, 1e-3, 0.25, (8,))
    results = [
        MemberResult(fast, [record(1, 0.96), record(2, 0.98)]),
        MemberResult(slow, [record(1, 0.90), record(2, 0.97), record(3, 0.981)]),
        MemberResult(other, [record(1, 0.90)]),
    ]
    rows = time_to_target_by_config(results, 0.975)
    row = rows[fast.config_key]
    assert (row["reached"], row["members"]) == (2, 2)
    assert row["epochs"]["mean"] == 2.5 and row["seconds"]["mean"] == 5.0
    assert row["seconds"]["ci95_low"] is not None
    assert rows[other.config_key]["reached"] == 0 and rows[other.config_key]["epochs"]["n"] == 0


def test_a_members_seconds_are_its_share_of_the_epochs_its_program_trained_it():
    # Program 0 trains two members together; the second stops early after epoch 1, so epoch 2's
    # time is the first member's alone. Program 1 trains one member.
    stays, stops = Member(0, 3e-3, 0.25, (8,)), Member(1, 3e-3, 0.25, (8,))
    alone = Member(2, 3e-3, 0.25, (8,))
    results = [
        MemberResult(stays, [record(1, 0.90, 4.0), record(2, 0.98, 3.0)], program=0),
        MemberResult(stops, [record(1, 0.90, 4.0)], program=0),
        MemberResult(alone, [record(1, 0.98, 2.0)], program=1),
    ]
    shares = member_histories(results)
    assert [r["seconds"] for r in shares(results[0])] == [2.0, 3.0]
    assert [r["seconds"] for r in shares(results[1])] == [2.0]
    row = time_to_target_by_config(results, 0.975, shares)[stays.config_key]
    assert row["reached"] == 2 and row["seconds"]["mean"] == (5.0 + 2.0) / 2


@pytest.mark.slow
def test_stop_at_target_ends_a_run_at_the_epoch_that_reached_it():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(784, 10))
    images = rng.uniform(size=(224, 784)).astype(np.float32)
    labels = np.argmax(images @ teacher, axis=1).astype(np.int32)
    train, test = [images[:160], labels[:160]], [images[160:], labels[160:]]
    data = DeviceData(*jax.device_put(train + test + test), num_classes=10)
    config = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=10, learning_rate=1e-2)
    full = fit(config, data).history
    target = full[2]["val_accuracy"]  # reached at epoch 3 at the latest
    reached = time_to_target(full, target)["epoch"]
    stopped = fit(config.replace(target_accuracy=target, stop_at_target=True), data).history
    assert len(stopped) == reached < 10


def test_stop_at_target_needs_a_target():
    with pytest.raises(ConfigError, match="stop_at_target"):
        TrainConfig(stop_at_target=True)
    with pytest.raises(ConfigError, match="target_accuracy"):
        TrainConfig(target_accuracy=1.5)


@pytest.mark.slow
def test_the_sweep_reports_time_to_target_per_member_and_configuration(tmp_path, capsys):
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=96, num_test=40, shape=(28, 28))
    argv = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--seeds", "0-1"]
    argv += ["--epochs", "2", "--batch-size", "32", "--target-accuracy", "0.01", "--quiet"]
    argv += ["--validation", "test"]  # 40 images: the target is reached at epoch 1 by both
    with pytest.raises(SystemExit) as exit_info:
        run_main(sweep.main, sweep.PROG, [*argv, "--no-tensorboard", "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "2/2 reached validation accuracy 0.01, after 1.0 epochs" in out and "share" in out
    members = json.loads((tmp_path / "s" / "members.json").read_text())
    assert [m["time_to_target"]["epoch"] for m in members] == [1, 1]
    for m in members:  # two members in one program: each has half its time
        reached = m["time_to_target"]
        assert reached["member_seconds"] == pytest.approx(reached["seconds"] / 2)
    rows = json.loads((tmp_path / "s" / "summary.json").read_text())["configurations"]
    assert rows[0]["time_to_target"]["reached"] == 2
