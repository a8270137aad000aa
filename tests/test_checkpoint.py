"""Checkpoints: bitwise round trips, donation safety, retention, resume, damage, compatibility."""

import json
import logging
import shutil
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from mnist_jax.checkpoint import (
    FORMAT_VERSION,
    RunCheckpointer,
    checkpoints_dir,
    list_checkpoints,
    load_run,
    restore_checkpoint,
    state_digest,
)
from mnist_jax.config import TrainConfig
from mnist_jax.distributed import flat
from mnist_jax.errors import CheckpointError
from mnist_jax.fit import DeviceData, fit
from mnist_jax.train import LEGACY_FIELDS, TrainSpec, create_train_state, train_epoch_jit

CONFIG = TrainConfig(hidden_sizes=(16, 16), batch_size=32, epochs=3, eval_batch_size=64)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    """Tiny learnable data: labels from a fixed random linear teacher."""
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(784, 10))
    images = rng.uniform(size=(192, 784)).astype(np.float32)
    labels = np.argmax(images @ teacher, axis=1).astype(np.int32)
    train, test = (images[:128], labels[:128]), (images[128:], labels[128:])
    return DeviceData(*jax.device_put([*train, *test, *test]), num_classes=10)


def model_of(config):
    return TrainSpec.from_config(config).model


def template(config=CONFIG):
    return create_train_state(config, TrainSpec.from_config(config))


def host_copy(tree):
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def assert_bitwise_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def record(epoch, val_accuracy=0.5):
    return {
        "epoch": epoch,
        "train_loss": 1.0,
        "train_accuracy": 0.5,
        "val_loss": 1.0,
        "val_accuracy": val_accuracy,
        "seconds": 0.0,
    }


def save_states(run_dir, states_and_accuracies, **kwargs):
    """Saves each (state, val_accuracy) as the next epoch, with a matching history."""
    history = []
    with RunCheckpointer(
        run_dir, CONFIG.replace(epochs=len(states_and_accuracies)), **kwargs
    ) as checkpointer:
        for epoch, (state, accuracy) in enumerate(states_and_accuracies, start=1):
            history.append(record(epoch, accuracy))
            checkpointer(state.replace(epoch=np.int32(epoch)), history[-1], history)
    return history


def snapshot(directory: Path) -> dict:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def array_files(run_dir, epoch):
    return sorted(
        p for p in (checkpoints_dir(run_dir) / str(epoch) / "state").rglob("d/*") if p.is_file()
    )


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Three epochs with the checkpointer (async), and the uninterrupted result."""
    run_dir = tmp_path_factory.mktemp("run")
    with RunCheckpointer(run_dir, CONFIG, keep_latest=3) as checkpointer:
        result = fit(CONFIG, data, callbacks=[checkpointer])
    return run_dir, result


@pytest.mark.slow
def test_round_trip_restores_every_leaf_bitwise(trained):
    run_dir, result = trained
    state, info = restore_checkpoint(run_dir, template(), "latest", model=model_of(CONFIG))
    assert_bitwise_equal(state, result.state)
    assert info["epoch"] == 3 and info["format_version"] == FORMAT_VERSION
    assert info["history"] == result.history
    assert TrainConfig.from_dict(info["config"]) == CONFIG


@pytest.mark.slow
def test_save_then_donate_restores_the_values_at_save_time(data, tmp_path):
    spec = TrainSpec.from_config(CONFIG)
    state = create_train_state(CONFIG, spec)
    state, _ = train_epoch_jit(spec, state, data.train_images, data.train_labels)
    at_save = host_copy(state)
    old_leaves = jax.tree_util.tree_leaves(state)
    with RunCheckpointer(tmp_path, CONFIG, async_save=True) as checkpointer:
        checkpointer(state, record(1), [record(1)])
        # What fit does next: donate the saved buffers to the next epoch, while the save is pending.
        state, _ = train_epoch_jit(spec, state, data.train_images, data.train_labels)
        assert all(leaf.is_deleted() for leaf in old_leaves)  # donated, not silently copied
    restored, _ = restore_checkpoint(tmp_path, template(), 1)
    assert_bitwise_equal(restored, at_save)
    assert state_digest(restored) != state_digest(state)


def test_retention_keeps_the_latest_k_and_the_best(tmp_path):
    base = template()
    accuracies = [0.5, 0.9, 0.6, 0.7, 0.65, 0.66]  # epoch 2 is the best and old
    save_states(tmp_path, [(base, a) for a in accuracies], keep_latest=2, keep_best=1)
    assert list_checkpoints(tmp_path) == [2, 5, 6]
    _, best = restore_checkpoint(tmp_path, template(), "best")
    assert best["epoch"] == 2 and best["val_accuracy"] == 0.9


def test_save_every_saves_multiples_and_the_final_epoch(tmp_path):
    config = CONFIG.replace(epochs=5)
    with RunCheckpointer(tmp_path, config, save_every=2, keep_latest=10) as checkpointer:
        history = []
        for epoch in range(1, 6):
            history.append(record(epoch))
            checkpointer(template().replace(epoch=np.int32(epoch)), history[-1], history)
    assert list_checkpoints(tmp_path) == [2, 4, 5]


@pytest.mark.slow
def test_resume_from_epoch_2_continues_bitwise_like_the_uninterrupted_run(trained, data, tmp_path):
    run_dir, uninterrupted = trained
    restored, info = restore_checkpoint(run_dir, template(), 2, model=model_of(CONFIG))
    assert int(restored.epoch) == 2 and len(info["history"]) == 2
    # Resume into a copy of the run, so the shared run stays as it is.
    with RunCheckpointer(tmp_path, CONFIG) as checkpointer:
        resumed = fit(
            CONFIG, data, state=restored, history=info["history"], callbacks=[checkpointer]
        )
    assert_bitwise_equal(resumed.state, uninterrupted.state)
    assert [r["val_accuracy"] for r in resumed.history] == [
        r["val_accuracy"] for r in uninterrupted.history
    ]


@pytest.mark.slow
def test_resuming_in_place_sets_later_checkpoints_aside_instead_of_deleting(
    trained, data, tmp_path
):
    run_dir, uninterrupted = trained
    shutil.copytree(run_dir, tmp_path / "run")
    run = tmp_path / "run"
    restored, info = restore_checkpoint(run, template(), 2)
    with (
        pytest.warns(UserWarning, match="moved to"),
        RunCheckpointer(run, CONFIG) as checkpointer,
    ):
        fit(CONFIG, data, state=restored, history=info["history"], callbacks=[checkpointer])
    assert list_checkpoints(run) == [1, 2, 3]
    assert (run / "checkpoints_set_aside" / "3" / "state").is_dir()
    state, _ = restore_checkpoint(run, template())
    assert_bitwise_equal(state, uninterrupted.state)


@pytest.fixture
def two_checkpoints(tmp_path, data):
    history = save_states(tmp_path, [(template(), 0.5), (template(CONFIG.replace(seed=1)), 0.6)])
    return tmp_path, history


@pytest.mark.parametrize("damage", ["truncate_array", "delete_array", "delete_info", "delete_item"])
def test_damaged_newest_checkpoint_falls_back_to_previous_and_leaves_files(two_checkpoints, damage):
    run_dir, _ = two_checkpoints
    newest = checkpoints_dir(run_dir) / "2"
    if damage == "truncate_array":
        victim = max(array_files(run_dir, 2), key=lambda p: p.stat().st_size)
        with open(victim, "r+b") as f:
            f.truncate(victim.stat().st_size // 2)
    elif damage == "delete_array":
        max(array_files(run_dir, 2), key=lambda p: p.stat().st_size).unlink()
    elif damage == "delete_info":
        (newest / "info" / "metadata").unlink()
    else:
        shutil.rmtree(newest / "state")
    before = snapshot(run_dir)
    with pytest.warns(UserWarning, match=r"damaged checkpoint of epoch 2"):
        state, info = restore_checkpoint(run_dir, template(), "latest")
    assert info["epoch"] == 1
    assert_bitwise_equal(state, template().replace(epoch=np.int32(1)))
    assert snapshot(run_dir) == before  # nothing deleted, moved or rewritten
    with pytest.warns(UserWarning):
        assert restore_checkpoint(run_dir, template())[1]["epoch"] == 1


def test_writer_sets_aside_a_checkpoint_with_unreadable_metrics(two_checkpoints):
    run_dir, _ = two_checkpoints
    (checkpoints_dir(run_dir) / "2" / "metrics" / "metrics").write_text('{"val_acc')
    with pytest.warns(UserWarning, match="unreadable metrics file"):
        RunCheckpointer(run_dir, CONFIG).close()
    assert list_checkpoints(run_dir) == [1]
    assert (run_dir / "checkpoints_set_aside" / "2" / "state").is_dir()


def test_no_intact_checkpoint_is_a_checkpoint_error(two_checkpoints):
    run_dir, _ = two_checkpoints
    for epoch in (1, 2):
        for f in array_files(run_dir, epoch):
            f.unlink()
    # One line: the error names every damaged checkpoint, with no warning per checkpoint before it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match="no intact checkpoint.*epoch 2: .*epoch 1: "):
            restore_checkpoint(run_dir, template())


def test_damaged_requested_epoch_is_a_checkpoint_error(two_checkpoints):
    run_dir, _ = two_checkpoints
    for f in array_files(run_dir, 1):
        f.unlink()
    with pytest.raises(CheckpointError, match="epoch 1 .* is damaged"):
        restore_checkpoint(run_dir, template(), 1)


def test_missing_run_has_no_checkpoints(tmp_path):
    assert list_checkpoints(tmp_path) == []
    with pytest.raises(CheckpointError, match="does not exist"):
        restore_checkpoint(tmp_path, template())


def test_architecture_mismatch_names_both_models(two_checkpoints):
    run_dir, _ = two_checkpoints
    other = CONFIG.replace(hidden_sizes=(32, 32))
    both = (
        r"holds model mlp\(hidden_sizes=\[16, 16\], num_classes=10\); this run's model is "
        r"mlp\(hidden_sizes=\[32, 32\], num_classes=10\)"
    )
    with pytest.raises(CheckpointError, match=both):
        restore_checkpoint(run_dir, template(other), model=model_of(other))
    # Without the model, the array shapes give it away, still before reading any array.
    shapes = r"model mlp.*\[16, 16\].*params/Dense_0/bias of shape \(16,\).*\(32,\)"
    with pytest.raises(CheckpointError, match=shapes):
        restore_checkpoint(run_dir, template(other))


def test_unknown_format_version_is_refused(two_checkpoints):
    run_dir, _ = two_checkpoints
    for epoch in (1, 2):
        info_file = checkpoints_dir(run_dir) / str(epoch) / "info" / "metadata"
        info = json.loads(info_file.read_text())
        info["format_version"] = 7
        info_file.write_text(json.dumps(info))
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint format version 7 is not supported "
        r"\(this mnist-jax reads version 1\)",
    ):
        restore_checkpoint(run_dir, template())


def test_load_run_returns_config_params_and_history(trained):
    run_dir, result = trained
    loaded = load_run(run_dir, "best")
    assert loaded.config == CONFIG
    best = max(result.history, key=lambda r: (r["val_accuracy"], r["epoch"]))
    assert loaded.epoch == best["epoch"]
    assert loaded.history == result.history[: best["epoch"]]
    assert jax.tree_util.tree_structure(loaded.params) == jax.tree_util.tree_structure(
        result.state.params
    )
    latest = load_run(run_dir, "latest")
    assert_bitwise_equal(latest.params, result.state.params)


def test_load_run_logs_no_routine_warnings(trained, caplog):
    # Every load_run printed orbax's "Given directory is read only" warnings (issue 27).
    with caplog.at_level(logging.WARNING):
        load_run(trained[0], "latest")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_load_run_prefers_the_run_config_json_and_refuses_one_of_another_run(two_checkpoints):
    run_dir, _ = two_checkpoints
    # What does not define the run (where the data are, evaluation chunks) is config.json's.
    config = CONFIG.replace(epochs=2, eval_batch_size=CONFIG.eval_batch_size + 1, data_dir="/d")
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    assert load_run(run_dir, "latest").config == config
    # A learning rate the checkpoints were not trained with: config.json is another run's.
    (run_dir / "config.json").write_text(json.dumps(config.replace(learning_rate=0.5).to_dict()))
    with pytest.raises(CheckpointError, match="learning_rate=0.001.*learning_rate=0.5"):
        load_run(run_dir, "latest")


def test_checkpoints_contain_no_pickle(trained):
    run_dir, _ = trained
    for path in checkpoints_dir(run_dir).rglob("*"):
        assert path.suffix not in (".pkl", ".pickle")
        if path.is_file():
            content = path.read_bytes()
            assert b"pickle" not in content.lower()
            assert not content.startswith(b"\x80")  # the pickle protocol-2+ opcode
    info = json.loads((checkpoints_dir(run_dir) / "3" / "info" / "metadata").read_text())
    assert info["val_accuracy"] == info["history"][-1]["val_accuracy"]


def test_the_state_digest_is_pinned_since_checkpoints_store_it():
    # Checkpoints written by earlier versions carry this digest of their arrays; a change in how it
    # is computed (e.g. scalars hashed as shape (1,)) would make every existing run look damaged.
    tree = {"a": np.float32(1.5), "b": {"c": np.arange(6, dtype=np.int32).reshape(2, 3)}}
    assert state_digest(tree) == "1f2370619c1f4e5240ee057e614036e49b0ed8be67425d3057d6830166690a55"
    state = template(TrainConfig(hidden_sizes=(4,)))
    # The fields a train state had before best-epoch tracking, read as such from old checkpoints
    # (`restore_state`), keep the digest those checkpoints carry.
    assert state_digest({name: getattr(state, name) for name in LEGACY_FIELDS}) == (
        "6f5ceacd8b94fc6a792e390b90396962eafa8d4d3c5d512ebc7523d5702827b1"
    )
    # The fields before `hyper` was added (checkpoints of that time carry this digest), and now.
    before_hyper = {k: v for k, v in flat(state).items() if not k.startswith("hyper/")}
    assert state_digest(before_hyper) == (
        "7cbafd7edb0bfb8a75015bd40839d84cf5d3ba990c9c0c1df0de84d3790d3d9d"
    )
    assert state_digest(state) != state_digest(before_hyper)


@pytest.mark.slow
def test_a_run_checkpointed_before_best_epoch_tracking_resumes_to_the_same_result(tmp_path):
    # tests/data/legacy: a 3-epoch run made by the code before train states tracked their best
    # epoch (commit 1f590de), with its epoch-3 checkpoint and results removed, and the results of
    # that uninterrupted run. Resuming it here reads the old state and ends where it ended.
    import shutil

    from experiments import baseline
    from experiments.cli import run_main
    from mnist_jax.epochs import exact_accuracy

    legacy = Path(__file__).parent / "data" / "legacy"
    shutil.copytree(legacy, tmp_path / "legacy")
    run, data = tmp_path / "legacy" / "run", tmp_path / "legacy" / "tiny"
    with pytest.raises(SystemExit) as exit_info:
        run_main(
            baseline.main,
            "baseline",
            ["--resume", str(run), "--data-dir", str(data), "--quiet", "--no-tensorboard"],
        )
    assert exit_info.value.code == 0
    expected = json.loads((legacy / "expected.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    # the legacy run had no gradient or parameter norm
    drop = ("seconds", "learning_rate", "train_grad_norm", "train_param_norm")
    # Records now hold accuracies as exact ratios k/n (`epochs.exact_accuracy`); the legacy run
    # wrote their float32 rounding (14/96 as 0.14583332836...). The epochs it trained keep what it
    # wrote; the epoch trained here is compared as the ratio of the same count.
    examples = {"train_accuracy": 96, "val_accuracy": 32}
    expected["history"][-1].update(
        {m: exact_accuracy(expected["history"][-1][m], n) for m, n in examples.items()}
    )
    assert [{k: v for k, v in r.items() if k not in drop} for r in metrics["history"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in expected["history"]
    ]
    assert metrics["test_accuracy"] == expected["test_accuracy"]
    # The final evaluation is one compiled program since the legacy run was made (it was eager
    # operations): its float32 mean over 64 examples may round in another last bit.
    assert metrics["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-6)


@pytest.mark.slow
def test_a_run_checkpointed_before_the_state_held_hyper_resumes_to_the_same_result(tmp_path):
    # tests/data/legacy/run-best: a 3-epoch run made by the code before TrainState.hyper
    # (commit dd6eb02), with its epoch-1 and epoch-3 checkpoints and its results removed, as if
    # killed after epoch 3's log line; run-best-expected.json holds what the whole run wrote.
    import shutil

    from experiments import baseline
    from experiments.cli import run_main

    legacy = Path(__file__).parent / "data" / "legacy"
    shutil.copytree(legacy / "run-best", tmp_path / "run")
    run = tmp_path / "run"
    argv = ["--resume", str(run), "--data-dir", str(legacy / "tiny"), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(baseline.main, "baseline", [*argv, "--no-tensorboard"])
    assert exit_info.value.code == 0
    expected = json.loads((legacy / "run-best-expected.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    new = ("seconds", "train_grad_norm", "train_param_norm")  # it recorded neither norm
    history = [{k: v for k, v in r.items() if k not in new} for r in metrics["history"]]
    assert {**{k: metrics[k] for k in expected if k != "history"}, "history": history} == expected
    assert "train_grad_norm" in metrics["history"][-1]
    state = load_run(run, "latest").state
    assert float(state.hyper["label_smoothing"]) == 0.0


def test_a_save_that_never_finishes_ends_in_one_line_after_the_bound(tmp_path, monkeypatch):
    """orbax's background commit waits at most SAVE_TIMEOUT_SECONDS; a commit still pending then
    (a hung network disk) is the command's one-line error, not a wait without end."""
    import time

    from orbax.checkpoint._src.futures import future

    from mnist_jax.checkpoint import store as store_module
    from mnist_jax.errors import OutputError

    def never_done(self, timeout=None):
        assert timeout == 1  # the bound reached orbax's commit wait
        time.sleep(timeout)
        raise TimeoutError("commit still pending")

    monkeypatch.setattr(store_module, "SAVE_TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(future.ChainedFuture, "result", never_done)
    store = store_module.CheckpointStore(tmp_path / "checkpoints")
    started = time.monotonic()
    with pytest.raises(OutputError, match="cannot write a checkpoint to .*: ") as error:
        store.save(1, {"w": np.zeros(3, np.float32)}, {"epoch": 1}, metric=0.5)
        store.close()
    assert "commit still pending" in str(error.value) and "\n" not in str(error.value)
    assert time.monotonic() - started < 30
