"""The benchmark command runs (tiny sizes) and reports every figure it promises: it must not rot."""

import json

import pytest

from experiments import bench
from experiments.cli import run_main


@pytest.fixture
def tiny(tmp_path):
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=256, num_test=64, shape=(28, 28))
    return ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny")]


def test_bench_reports_both_floors_and_takes_the_better(tiny, tmp_path, capsys):
    out = tmp_path / "figures.json"
    argv = [*tiny, "--epochs", "2", "--batch-size", "64", "--json", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        run_main(bench.main, "python -m experiments.bench", argv)
    assert exit_info.value.code == 0, capsys.readouterr().err
    figures = json.loads(out.read_text())
    xla, numpy = figures["floor_xla_epoch_seconds"], figures["floor_numpy_epoch_seconds"]
    assert figures["floor_epoch_seconds"] == min(xla, numpy) > 0
    assert figures["steady_over_floor"] == pytest.approx(
        figures["steady_epoch_seconds"] / figures["floor_epoch_seconds"]
    )
    assert figures["flops_per_example"] == bench.matmul_flops_per_example([784, 128, 128, 10])
    assert "floor_numpy_gflops_per_second" in capsys.readouterr().out


def test_matmul_flops_by_hand():
    # Forward 2*(784*128 + 128*10) per example, weight gradients the same, input gradient of the
    # second layer only: 2*128*10.
    forward = 2 * (784 * 128 + 128 * 10)
    assert bench.matmul_flops_per_example([784, 128, 10]) == 2 * forward + 2 * 128 * 10
