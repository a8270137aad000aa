"""The logit z-loss (`--z-loss`): a traced, sweepable hyper-parameter added through the schema's
`in_state` fields alone (its field in config.py, its use in train.py). Its value, its refusal
outside its range, sweep members equal to their single runs, and the commands: flags, records,
labels and resume."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_bitwise_equal, run_command, teacher_data

from experiments import baseline, sweep
from mnist_jax.checkpoint import RunCheckpointer, restore_checkpoint
from mnist_jax.config import SHORT_NAMES, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fit import fit
from mnist_jax.sweep import expand_members, run_sweep
from mnist_jax.train import (
    Batch,
    TrainSpec,
    create_train_state,
    train_step,
    weighted_cross_entropy,
    weighted_z_loss,
)

CONFIG = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=2, eval_batch_size=64)


def test_z_loss_is_the_mean_squared_logsumexp_of_the_real_examples():
    logits = jax.random.normal(jax.random.key(0), (6, 10)) * 3.0
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # the last row is padding
    expected = np.mean(np.square(jax.nn.logsumexp(logits[:5], axis=-1)))
    np.testing.assert_allclose(weighted_z_loss(logits, weights), expected, rtol=1e-6)


def test_a_train_step_adds_the_coefficient_times_the_z_loss_to_its_loss():
    config = CONFIG.replace(z_loss=1e-2)
    spec = TrainSpec.from_config(config)
    state = create_train_state(config, spec, 160)
    assert float(state.hyper["z_loss"]) == np.float32(1e-2)
    data = teacher_data(num_train=32)
    batch = Batch(data.train_images[:32], data.train_labels[:32], jnp.ones(32))
    step = jax.jit(lambda state, batch: train_step(spec, state, batch))  # eagerly: 12 s of dispatch
    _, sums = step(state, batch)
    plain = state.replace(hyper={**state.hyper, "z_loss": jnp.float32(0.0)})
    _, plain_sums = step(plain, batch)
    # Dropout's mask is the same in both (keyed by the step): the difference is the z-loss alone.
    logits = spec.model.apply(
        state.params,
        batch.images,
        dropout_rate=state.dropout_rate,
        dropout_key=jax.random.fold_in(
            jax.random.fold_in(jax.random.wrap_key_data(state.key), 2), state.step
        ),
    )
    ce = weighted_cross_entropy(logits, batch.labels, batch.weights)
    np.testing.assert_allclose(plain_sums["loss"] / 32, ce, rtol=1e-6)
    np.testing.assert_allclose(
        (sums["loss"] - plain_sums["loss"]) / 32,
        1e-2 * weighted_z_loss(logits, batch.weights),
        rtol=1e-4,
    )


@pytest.mark.parametrize("value", [-1e-4, float("inf"), float("nan"), 1e39, True])
def test_z_loss_outside_its_range_is_refused(value):
    with pytest.raises(ConfigError, match="z_loss"):
        TrainConfig(z_loss=value)


def test_the_schema_names_it_zl_in_labels_and_selections():
    assert SHORT_NAMES["zl"] == "z_loss"
    args = sweep.build_parser().parse_args(["--z-loss", "0,1e-4"])
    assert args.z_loss == [0.0, 1e-4]
    from mnist_jax.search.space import parse_space
    from mnist_jax.sweep.select import parse_assignments

    assert parse_assignments(["zl=1e-4"]) == {"z_loss": 1e-4}  # --reference, compare's selections
    assert parse_space(["zl=loguniform(1e-5,1e-3)"]) == {"z_loss": ("loguniform", (1e-5, 1e-3))}


@pytest.mark.slow
def test_sweep_members_differing_in_z_loss_equal_their_single_runs_bitwise():
    data = teacher_data(seed=0)
    members = expand_members([0], z_loss=[0.0, 1e-2], hidden_sizes=[(16,)])
    result = run_sweep(CONFIG, members, data, members_per_step=1)
    assert [float(r.state.hyper["z_loss"]) for r in result.members] == [0.0, np.float32(1e-2)]
    for r in result.members:
        single = fit(r.member.config(CONFIG), data)
        assert_bitwise_equal(r.state, single.state)
    a, b = (r.state.params for r in result.members)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_a_run_with_z_loss_resumes_bitwise(tmp_path):
    data = teacher_data(seed=0)
    config = CONFIG.replace(z_loss=1e-2, epochs=3)
    with RunCheckpointer(tmp_path, config) as checkpoints:
        whole = fit(config, data, callbacks=[checkpoints])
    template = create_train_state(config, TrainSpec.from_config(config), 160)
    state, info = restore_checkpoint(tmp_path, template, 2)
    assert float(state.hyper["z_loss"]) == np.float32(1e-2)
    resumed = fit(config, data, state=state, history=info["history"])
    assert_bitwise_equal(resumed.state, whole.state)


@pytest.mark.slow
def test_the_commands_take_record_label_and_resume_z_loss(tmp_path, capsys):
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=256, num_test=64, shape=(28, 28))
    data = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--batch-size", "32"]
    data += ["--epochs", "2", "--hidden", "16", "--no-tensorboard"]

    # A run: config.json records it, and a resume refuses the flag.
    run = tmp_path / "run"
    code, out = run_command(
        baseline.main,
        "python -m experiments.baseline",
        [*data, "--z-loss", "1e-4", "--out", str(run)],
        capsys,
    )
    assert code == 0, out.err
    assert json.loads((run / "config.json").read_text())["config"]["z_loss"] == 1e-4
    code, out = run_command(
        baseline.main,
        "python -m experiments.baseline",
        ["--resume", str(run), "--z-loss", "0"],
        capsys,
    )
    assert code == 2 and "--z-loss" in out.err

    # A sweep lists it: members, sweep.json, labels; killed before its last epoch, it resumes to
    # the same members.
    out_dir = tmp_path / "sweep"
    argv = [
        *data,
        "--seeds",
        "0-1",
        "--z-loss",
        "0,1e-4",
        "--validation-size",
        "64",
        "--quiet",
        "--out",
        str(out_dir),
    ]
    code, out = run_command(sweep.main, sweep.PROG, argv, capsys)
    assert code == 0, out.err
    record = json.loads((out_dir / "sweep.json").read_text())
    assert "z_loss" in record["per_member_fields"]
    assert [m["z_loss"] for m in record["members"]] == [0.0, 0.0, 1e-4, 1e-4]
    rows = json.loads((out_dir / "summary.json").read_text())["configurations"]
    assert [row["label"] for row in rows] == ["zl=0", "zl=0.0001"]
    members = json.loads((out_dir / "members.json").read_text())
    for name in ["members.json", "summary.json"]:
        (out_dir / name).unlink()
    shutil.rmtree(out_dir / "checkpoints" / "program-0" / "2")
    code, out = run_command(sweep.main, sweep.PROG, ["--resume", str(out_dir)], capsys)
    assert code == 0, out.err
    again = json.loads((out_dir / "members.json").read_text())
    assert [m["z_loss"] for m in again] == [0.0, 0.0, 1e-4, 1e-4]

    def numbers(records):  # the history without its wall-clock seconds
        return [
            [{k: v for k, v in e.items() if k != "seconds"} for e in r["history"]] for r in records
        ]

    assert numbers(again) == numbers(members)
    assert [m["test_accuracy"] for m in again] == [m["test_accuracy"] for m in members]
