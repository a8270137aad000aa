"""The parameters' global L2 norm at each epoch's end (`train_param_norm`): a per-epoch metric added
by one edit where it is computed (train.py's `train_epoch`), shown in metrics.jsonl, TensorBoard,
the console line and the run's and the sweep's reports by the code that loops over the metrics."""

import json

import jax
import numpy as np
import pytest
from helpers import run_command, teacher_data

from experiments import baseline, sweep
from mnist_jax.config import TrainConfig
from mnist_jax.train import TrainSpec, create_train_state, train_epoch_jit


def test_the_epoch_returns_the_norm_of_the_parameters_it_ends_with():
    config = TrainConfig(hidden_sizes=(16,), batch_size=32)
    spec = TrainSpec.from_config(config)
    data = teacher_data()
    state = create_train_state(config, spec, data.train_labels.shape[0])
    state, metrics = train_epoch_jit(spec, state, data.train_images, data.train_labels)
    leaves = jax.tree.leaves(jax.device_get(state.params))
    expected = np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in leaves))
    np.testing.assert_allclose(metrics["param_norm"], expected, rtol=1e-5)


@pytest.mark.slow
def test_a_run_and_a_sweep_show_it_everywhere_their_metrics_are(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=256, num_test=64, shape=(28, 28))
    data = ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny"), "--batch-size", "32"]
    data += ["--epochs", "2", "--hidden", "16"]

    run = tmp_path / "run"
    code, out = run_command(
        baseline.main, "python -m experiments.baseline", [*data, "--out", str(run)], capsys
    )
    assert code == 0, out.err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["train_param_norm"] > 0 for r in records)
    assert records[0]["train_param_norm"] != records[1]["train_param_norm"]
    assert [line.count("param norm ") for line in out.out.splitlines() if "epoch  " in line] == [
        1,
        1,
    ]
    assert "| train param norm |" in (run / "report.md").read_text()
    assert (
        json.loads((run / "metrics.json").read_text())["history"][1]["train_param_norm"]
        == (records[1]["train_param_norm"])
    )
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("param_norm/train")
    assert [s.step for s in scalars] == [1, 2]
    np.testing.assert_allclose([s.value for s in scalars], [r["train_param_norm"] for r in records])

    out_dir = tmp_path / "sweep"
    argv = [*data, "--seeds", "0-1", "--validation-size", "64", "--quiet", "--out", str(out_dir)]
    code, out = run_command(sweep.main, sweep.PROG, argv, capsys)
    assert code == 0, out.err
    members = json.loads((out_dir / "members.json").read_text())
    assert all(r["train_param_norm"] > 0 for m in members for r in m["history"])
    for member_run in sorted((out_dir / "tensorboard").iterdir()):
        events = EventAccumulator(str(member_run))
        events.Reload()
        assert [s.step for s in events.Scalars("param_norm/train")] == [1, 2], member_run.name
