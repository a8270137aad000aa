"""The fault matrix: what a hostile user or a failing machine does to the commands, and what must
hold afterwards. The commands train on the small cut of MNIST (`small_mnist`: the faults are the
point, not the data), except the Ctrl-C case, which needs the real MNIST's long epochs. They run as
subprocesses where only a process shows the behaviour (signals, a file-size limit, two processes at
once, a warning printed once per process); the rest run in this process (`run_in_process`: the
refusals, the reference run, resumes that only have to finish), where their one line on stderr,
exit status and files are as visible, without a process's start-up of some seconds each.

Rules checked in every case: an error is one line on stderr with exit status 2 (no traceback);
nothing that existed is overwritten or lost; no command waits without a bound; a run interrupted
by a fault resumes to the result of an uninterrupted run. (SIGKILL at four points, including inside
a checkpoint save, is in test_resume.py and test_sweep_resume.py; each kind of damaged checkpoint
file in test_checkpoint.py.)
"""

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from _processes import run_in_process

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


# Sets a file-size limit, then becomes `python -m ARGS` (no fork from this multithreaded process).
LIMITED = (
    "import os, resource, sys; limit = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])"
)

# Gives Ctrl-C its default action back, then becomes `python -m ARGS`: a shell without job control
# starts a background job (a test run started with `&`) with SIGINT ignored, and a Python started so
# inherits that and never sees the Ctrl-C a test sends.
INTERRUPTIBLE = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[1:]])"
)


def start(args, mnist_dir, limit_bytes=None, interruptible=False):
    """`python -m ARGS` as a subprocess; with `limit_bytes`, no file it writes may grow past it;
    `interruptible`, it takes SIGINT as Ctrl-C even if this process ignores it."""
    if limit_bytes:
        prefix = ["-c", LIMITED, str(limit_bytes)]
    else:
        prefix = ["-c", INTERRUPTIBLE] if interruptible else ["-m"]
    return subprocess.Popen(
        [sys.executable, *prefix, *args],
        cwd=REPO,
        env=dict(os.environ, MNIST_JAX_DATA=str(mnist_dir), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args, mnist_dir, **kwargs) -> subprocess.CompletedProcess:
    proc = start(args, mnist_dir, **kwargs)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def baseline(*args):
    return ["experiments.baseline", "--quiet", *map(str, args)]


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m experiments."), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise the same final state, the same history and the same test metrics."""
    import jax
    import numpy as np

    from mnist_jax.checkpoint import load_run

    run_a, run_b = load_run(a, "latest"), load_run(b, "latest")
    assert run_a.epoch == run_b.epoch
    leaves = zip(*(jax.tree_util.tree_leaves(jax.device_get(r.state)) for r in (run_a, run_b)))
    assert all(np.array_equal(x, y) for x, y in leaves)
    metrics_a, metrics_b = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for key in ("test_loss", "test_accuracy", "confusion_matrix"):
        assert metrics_a[key] == metrics_b[key], key
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in metrics_a["history"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in metrics_b["history"]]


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_mnist):
    """An uninterrupted 2-epoch run, the result every faulted run must reach. Run in this process:
    nothing of it is about a process (runs that are, killed or resumed twice at once, reach it
    bitwise all the same)."""
    from experiments import baseline as command
    from experiments.cli import run_main

    out = tmp_path_factory.mktemp("reference") / "run"
    printed = io.StringIO()
    absl_level = logging.getLogger("absl").level
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
            pytest.raises(SystemExit) as exit_info,
        ):
            # run_main prints warnings in one line and quiets absl's log: both undone after it.
            patch.setattr(warnings, "showwarning", warnings.showwarning)
            argv = baseline("--epochs", 2, "--out", out, *small_mnist)[1:]
            run_main(command.main, "python -m experiments.baseline", argv)
    finally:
        logging.getLogger("absl").setLevel(absl_level)
    assert exit_info.value.code == 0, printed.getvalue()
    return out


@pytest.mark.parametrize("attempt", range(2))
def test_two_runs_into_one_folder_at_once_one_wins_the_other_is_refused(
    attempt, tmp_path, mnist_dir, small_mnist
):
    out = tmp_path / "run"
    procs = [
        start(baseline("--epochs", 1, "--seed", s, "--out", out, *small_mnist), mnist_dir)
        for s in (0, 1)
    ]
    results = [(p.returncode, *p.communicate(timeout=600)) for p in procs]
    results = [(p.returncode, out_, err) for p, (_, out_, err) in zip(procs, results)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert len(loser.splitlines()) == 1 and ("in use" in loser or "already holds" in loser)
    winner_seed = [s for s, (code, _, _) in zip((0, 1), results) if code == 0][0]
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["config"]["seed"] == metrics["seed"] == winner_seed  # nothing mixed


def test_two_resumes_of_one_run_at_once_one_wins(reference, tmp_path, mnist_dir, small_mnist):
    out = tmp_path / "run"
    killed = start(
        baseline("--epochs", 2, "--out", out, "--save-every", 1, *small_mnist), mnist_dir
    )
    # Until the first checkpoint is committed (polled often: the run ends ~0.3 s after it).
    for _ in range(6000):
        if (out / "checkpoints" / "1").is_dir():
            break
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert not (out / "metrics.json").exists()  # killed before it finished
    procs = [start(["experiments.baseline", "--resume", str(out)], mnist_dir) for _ in range(2)]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    assert sorted(p.returncode for p, _, _ in results) == [0, 2]
    loser = next(err for p, _, err in results if p.returncode == 2)
    assert len(loser.splitlines()) == 1 and "in use" in loser
    assert_same_run(reference, out)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(
    reference, tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    out = tmp_path / "run"
    # The first layer's arrays alone are larger than this (784 x 128 float32: 401,408 bytes, on any
    # data): every checkpoint save fails, while the files written before it are far smaller.
    args = baseline("--epochs", 2, "--out", out, *small_mnist)
    result = run(args, mnist_dir, limit_bytes=300_000)
    assert_one_line_error(result, "cannot write a checkpoint", os.strerror(errno.EFBIG))
    resume = ["experiments.baseline", "--resume", out]  # in this process, without the limit
    assert run_in_process(resume, mnist_dir, monkeypatch, capsys).returncode == 0
    assert_same_run(reference, out)


def baseline_in_process_error(out, small_mnist, capsys) -> list[str]:
    """A 2-epoch baseline run into `out`, in this process (with the test's patches), that must
    end with exit status 2: its stderr lines."""
    from experiments import baseline as command
    from experiments.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(
            command.main,
            "python -m experiments.baseline",
            baseline("--epochs", 2, "--out", out, *small_mnist)[1:],
        )
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()


def test_a_full_disk_at_the_plots_is_one_line_and_resume_writes_what_is_missing(
    reference, tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    import matplotlib.figure

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # In this process, so that only the figures fail (a file-size limit would stop the
    # checkpoints, which are larger, first).
    out = tmp_path / "run"
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    monkeypatch.setattr("warnings.showwarning", __import__("warnings").showwarning)
    err = baseline_in_process_error(out, small_mnist, capsys)
    assert len(err) == 1 and os.strerror(errno.ENOSPC) in err[0], err
    monkeypatch.undo()
    resume = ["experiments.baseline", "--resume", out]
    assert run_in_process(resume, mnist_dir, monkeypatch, capsys).returncode == 0
    assert_same_run(reference, out)


def test_a_full_disk_at_the_last_tensorboard_events_is_one_line_and_resume_repairs_them(
    tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    # tensorboardX's writer thread died with a traceback, and the command then never exited.
    # The accumulator TensorBoard's server reads with (it purges every kind of event).
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    from mnist_jax import tensorboard
    from mnist_jax.logs import TENSORBOARD_COMPLETE

    write = tensorboard.EventWriter._write

    def disk_full_at_images(self, event):
        if any(value.HasField("image") for value in event.summary.value):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, event)

    out = tmp_path / "run"
    monkeypatch.setenv("MNIST_JAX_DATA", str(mnist_dir))
    monkeypatch.setattr(tensorboard.EventWriter, "_write", disk_full_at_images)
    monkeypatch.setattr("warnings.showwarning", warnings.showwarning)
    err = baseline_in_process_error(out, small_mnist, capsys)
    assert len(err) == 1 and "TensorBoard" in err[0] and os.strerror(errno.ENOSPC) in err[0], err
    assert (out / "metrics.json").is_file() and not (out / TENSORBOARD_COMPLETE).exists()
    monkeypatch.undo()

    resume = ["experiments.baseline", "--resume", out]
    result = run_in_process(resume, mnist_dir, monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    assert (out / TENSORBOARD_COMPLETE).exists()
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    steps = {tag: [e.step for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}
    assert steps["figures/training_curves"] == steps["figures/confusion_matrix"] == [2]  # once
    assert steps["loss/validation"] == [1, 2]  # each epoch once
    assert steps["run/text_summary"] == [2]  # the run record once
    # A second resume finds the events complete: it writes nothing.
    files = sorted((out / "tensorboard").iterdir())
    assert run_in_process(resume, mnist_dir, monkeypatch, capsys).returncode == 0
    assert sorted((out / "tensorboard").iterdir()) == files


def test_resuming_a_finished_run_rewrites_nothing_and_restores_a_lost_plot(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    (out / "top_errors.png").unlink()
    before = snapshot(out)
    resume = ["experiments.baseline", "--resume", out]
    result = run_in_process(resume, mnist_dir, monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    after = snapshot(out)
    assert "top_errors.png" in after
    assert {k: v for k, v in after.items() if k != "top_errors.png"} == before
    assert json.loads((out / "metrics.json").read_text())["train_seconds"] is not None


def test_an_unwritable_output_folder_is_one_line_and_creates_nothing(
    tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = baseline("--epochs", 1, "--out", blocker / "run", *small_mnist)
    result = run_in_process(args, mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, str(blocker / "run"))
    assert blocker.read_text() == "not a folder"


def test_an_unwritable_checkpoint_folder_fails_before_training(reference, tmp_path, mnist_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text((reference / "config.json").read_text())
    (out / "checkpoints").write_text("a file where the checkpoints belong")
    started = time.monotonic()
    result = run(["experiments.baseline", "--resume", str(out)], mnist_dir)
    assert_one_line_error(result, "checkpoints")
    # Not orbax's wait for a thread that died (the refusal takes 3 to 4 s on 2 busy cores).
    assert time.monotonic() - started < 60
    assert not (out / "metrics.json").exists()


def test_evaluate_into_an_occupied_folder_is_refused_and_leaves_it(
    reference, mnist_dir, monkeypatch, capsys
):
    before = snapshot(reference)
    args = ["experiments.evaluate", reference, "--out", reference]
    result = run_in_process(args, mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, "already holds")
    assert snapshot(reference) == before


def test_missing_array_metadata_of_the_newest_checkpoint_falls_back_in_one_warning(
    reference, tmp_path, mnist_dir
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    (out / "checkpoints" / "2" / "state" / "_METADATA").unlink()
    result = run(["experiments.evaluate", str(out), "--quiet"], mnist_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: skipping damaged checkpoint of epoch 2 in {out / 'checkpoints'}: its array "
        "metadata is missing"
    ]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", 10_000_000], "batch_size"),
        (["--validation", "holdout", "--validation-size", 60_000], "validation_size"),
        (["--save-every", 0], "--save-every"),
        (["--keep", 0], "--keep"),
        (["--epoch", 2], "unrecognized arguments"),
        (["--learning-rate", "1e-50"], "float32"),  # rounds to 0 on the device: trains nothing
        (["--hidden-sizes", 10_000_000], "GiB"),  # more memory than the machine has
        (["--resume", ""], "empty path"),  # not a silent fresh run
        (["--data-dir", "/tmp/" + "z" * 300], "File name too long"),
        (["--patience", 2**31], "patience"),  # an int32 of the train state
        (["--epochs", 10**400], "epochs"),  # it overflowed a float on its way to the schedule
        (["--out", "/tmp/mnist-jax-\udcff"], "UTF-8"),  # the checkpoints failed after training
    ],
)
def test_bad_values_are_refused_before_anything_is_created(
    flags, message, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    result = run_in_process(baseline("--out", out, *flags), mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, message)
    assert not out.exists()


def test_ctrl_c_inside_a_long_epoch_ends_the_command_within_seconds(tmp_path, mnist_dir):
    # The real MNIST and a model whose epoch takes over a minute (80 s on 2 busy cores), so that the
    # bound below is far shorter than waiting for the epoch to end.
    out = tmp_path / "run"
    args = ["experiments.baseline", "--hidden-sizes", "4000,4000", "--out", str(out)]
    proc = start(args, mnist_dir, interruptible=True)
    try:
        for line in proc.stdout:  # the epochs start right after this line
            if line.startswith("run directory:"):
                break
        time.sleep(3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a command that ignored the signal is not left training
        proc.wait(timeout=60)
    # The command ends 2 s after the signal (its grace, then the watcher's SIGKILL; 2.0 to 2.2 s
    # measured on 2 busy cores): the bound is against waiting for the epoch, or for ever.
    assert time.monotonic() - sent < 30, err
    assert proc.returncode != 0 and "interrupted" in err and "Traceback" not in err


def test_a_finished_run_without_checkpoints_is_not_trained_again_over_its_files(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    subprocess.run(["rm", "-r", str(out / "checkpoints")], check=True)
    before = snapshot(out)
    args = ["experiments.baseline", "--resume", out]
    result = run_in_process(args, mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, "no checkpoints")
    assert snapshot(out) == before


def test_resuming_a_finished_sweep_rewrites_nothing(
    tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    # In this process: nothing here is about a process (each command's files, output and status
    # are the same; sweeps killed and resumed as processes are in test_sweep_resume.py).
    out = tmp_path / "sweep"
    sweep = ["experiments.sweep", "--quiet", "--seeds", "0-1", "--epochs", "1", "--out", out]
    sweep += [*small_mnist, "--validation-size", "500"]  # held out from the cut's 2,000 images
    result = run_in_process(sweep, mnist_dir, monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    (out / "learning_curves.png").unlink()
    before = snapshot(out)
    resume = ["experiments.sweep", "--resume", out]
    result = run_in_process(resume, mnist_dir, monkeypatch, capsys)
    assert result.returncode == 0, result.stderr
    after = snapshot(out)
    assert "learning_curves.png" in after
    assert {k: v for k, v in after.items() if k != "learning_curves.png"} == before
    # A damaged members.json is not kept as if intact ("every output was there"): one line.
    (out / "members.json").write_text('{"damaged": true}')
    before = snapshot(out)
    result = run_in_process(resume, mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, "members.json is damaged")
    assert snapshot(out) == before


def test_a_grid_whose_predictions_exceed_host_memory_is_refused_before_anything_is_created(
    tmp_path, mnist_dir, small_mnist, monkeypatch, capsys
):
    # 100,000 MNIST members planned for over a minute in silence, then would have held 75 GiB of
    # test logits on the host. Here the machine reports 512 MiB: 256 MiB for the predictions.
    import mnist_jax.memory

    real = os.sysconf
    pages = {"SC_PHYS_PAGES": 512 * 2**20 // 4096, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(mnist_jax.memory.os, "sysconf", lambda name: pages.get(name) or real(name))
    out = tmp_path / "sweep"
    argv = ["experiments.sweep", "--seeds", "0-9999", "--validation-size", "500", "--out", out]
    argv += small_mnist
    result = run_in_process(argv, mnist_dir, monkeypatch, capsys)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result, "10,000 members' test predictions", "sweep at most")
    assert not out.exists()


def test_a_plan_of_many_programs_lists_the_first_and_counts_the_rest():
    from experiments.sweep_output import int_ranges, print_plan
    from mnist_jax.config import TrainConfig
    from mnist_jax.sweep import expand_members
    from mnist_jax.sweep.plan import SweepProgram

    lines = []
    console = type("Console", (), {"info": lambda self, text: lines.append(text)})()
    members = expand_members([*range(30), 40, 42, 43, 44])
    programs = [SweepProgram(k, members[2 * k : 2 * k + 2], 2) for k in range(17)]
    devices = {"count": 1, "kind": "cpu", "platform": "cpu", "process_count": 1}
    print_plan(console, TrainConfig(), members, programs, 2, 1, devices)
    assert "members: 34 = seeds 0-29,40,42-44" in lines[1]
    listed = [line for line in lines if line.startswith("  program ")]
    assert len(listed) == 10 and listed[0].startswith("  program 0:")
    assert "  ... and 7 more programs" in lines
    assert int_ranges([]) == "" and int_ranges([5]) == "5"


def test_a_config_json_nested_too_deeply_is_one_line(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    (out / "config.json").write_text("[" * 100_000)  # found by a hostile pass: a RecursionError
    result = run_in_process(["experiments.evaluate", out], mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, "nested too deeply")


def test_an_edited_metrics_log_line_gives_way_to_the_checkpoints_history(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    log = out / "metrics.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines[0]["train_loss"] = "abc"  # found by a hostile pass: evaluate's plot crashed on it
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_in_process(
        ["experiments.evaluate", out, "--quiet"], mnist_dir, monkeypatch, capsys
    )
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((out / "evaluation" / "latest" / "metrics.json").read_text())
    recorded = json.loads((out / "metrics.json").read_text())
    assert evaluated["history"][0]["train_loss"] == recorded["history"][0]["train_loss"]


def test_a_path_holding_a_newline_stays_one_line(tmp_path, mnist_dir, monkeypatch, capsys):
    missing = tmp_path / "two\nlines"
    result = run_in_process(["experiments.evaluate", missing], mnist_dir, monkeypatch, capsys)
    assert_one_line_error(result, "two\\nlines")


def test_a_checkpoint_folder_replaced_by_a_file_is_warned_of(
    reference, tmp_path, mnist_dir, monkeypatch, capsys
):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    shutil.rmtree(out / "checkpoints" / "2")
    (out / "checkpoints" / "2").write_text("not a checkpoint")  # found by a hostile pass: unsaid
    result = run_in_process(
        ["experiments.evaluate", out, "--quiet"], mnist_dir, monkeypatch, capsys
    )
    assert result.returncode == 0, result.stderr
    assert "skipping damaged checkpoint of epoch 2" in result.stderr
    assert "it is a file, not a checkpoint folder" in result.stderr
