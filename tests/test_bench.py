"""The benchmark command runs (tiny sizes) and reports every figure it promises: it must not rot."""

import json

import pytest

from experiments import bench
from experiments.cli import run_main
from mnist_jax.floors import matmul_flops_per_example


@pytest.fixture
def tiny(tmp_path):
    from mnist_jax.data.fake import write_fake_dataset

    write_fake_dataset(tmp_path / "tiny", num_train=256, num_test=64, shape=(28, 28))
    return ["--dataset", "tiny", "--data-dir", str(tmp_path / "tiny")]


@pytest.mark.slow
def test_bench_reports_both_floors_and_takes_the_better(tiny, tmp_path, capsys):
    out = tmp_path / "figures.json"
    argv = [*tiny, "--epochs", "2", "--batch-size", "64", "--json", str(out), "--command"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(bench.main, "python -m experiments.bench", argv)
    assert exit_info.value.code == 0, capsys.readouterr().err
    figures = json.loads(out.read_text())
    xla, numpy = figures["floor_xla_epoch_seconds"], figures["floor_numpy_epoch_seconds"]
    assert figures["floor_epoch_seconds"] == min(xla, numpy) > 0
    assert figures["steady_over_floor"] == pytest.approx(
        figures["steady_epoch_seconds"] / figures["floor_epoch_seconds"]
    )
    assert figures["flops_per_example"] == matmul_flops_per_example([784, 128, 128, 10])
    # The whole baseline command, timed with an empty compilation cache, then with it filled.
    assert figures["command_cold_seconds"] > 0 and figures["command_cached_seconds"] > 0
    assert figures["cpu"].count(",") >= 1  # the model, its cores, its vector instructions
    printed = capsys.readouterr().out
    assert "floor_numpy_gflops_per_second" in printed and "command_cached_seconds" in printed


def test_bench_refuses_a_json_file_that_exists_and_leaves_it(tiny, tmp_path, capsys):
    out = tmp_path / "kept.json"
    out.write_text("precious")
    with pytest.raises(SystemExit) as exit_info:
        run_main(bench.main, "python -m experiments.bench", [*tiny, "--json", str(out)])
    assert exit_info.value.code == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "precious"


def test_matmul_flops_by_hand():
    # Forward 2*(784*128 + 128*10) per example, weight gradients the same, input gradient of the
    # second layer only: 2*128*10.
    forward = 2 * (784 * 128 + 128 * 10)
    assert matmul_flops_per_example([784, 128, 10]) == 2 * forward + 2 * 128 * 10


@pytest.mark.slow
def test_the_scaling_benchmark_times_every_mode_and_writes_its_table(tiny, tmp_path, capsys):
    from experiments import scaling_bench

    out = tmp_path / "scaling"
    argv = [*tiny, "--validation", "test", "--members", "1,2", "--repeats", "1", "--out", str(out)]
    argv += ["--batch-size", "64"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(scaling_bench.main, "python -m experiments.scaling_bench", argv)
    assert exit_info.value.code == 0, capsys.readouterr().err
    rows = json.loads((out / "scaling.json").read_text())["rows"]
    assert [(r["members"], r["mode"]) for r in rows] == [
        (n, mode) for n in (1, 2) for mode in ("vmap", "map", "single")
    ]
    assert all(r["epoch_seconds"] > 0 and r["compile_seconds"] > 0 for r in rows)
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 | single |" in (out / "scaling.md").read_text()


def run_sweep_bench(argv, capsys):
    from experiments import sweep_bench

    with pytest.raises(SystemExit) as exit_info:
        run_main(sweep_bench.main, "python -m experiments.sweep_bench", argv)
    return exit_info.value.code, capsys.readouterr()


@pytest.mark.parametrize("flags", [["--members", "a,b"], ["--members", "0"], ["--epochs", "0"]])
def test_sweep_bench_refuses_bad_counts_in_one_line(flags, capsys):
    status, printed = run_sweep_bench(flags, capsys)
    assert status == 2 and len(printed.err.strip().splitlines()) == 1, printed.err
    assert "Traceback" not in printed.err


@pytest.mark.slow
def test_sweep_bench_times_a_sweep_against_separate_processes(tmp_path, capsys):
    from mnist_jax.data.fake import write_fake_dataset

    # The sweep holds out its default 10,000 validation examples: 240 are left to train on.
    write_fake_dataset(tmp_path / "small", num_train=10_240, num_test=64, shape=(28, 28))
    data = ["--dataset", "small", "--data-dir", str(tmp_path / "small")]
    argv = [*data, "--members", "1", "--epochs", "1", "--batch-size", "64", "--skip-fit"]
    status, printed = run_sweep_bench(argv, capsys)  # it starts the commands it times
    assert status == 0, printed.err
    rows = [line.split() for line in printed.out.splitlines()]
    assert [r[1] for r in rows if r[0] == "1"] == ["sweep", "processes", "ratio"]
