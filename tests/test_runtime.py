"""The XLA:CPU flags the commands set: only on the CPU, only before jax's backend starts (so XLA
honours them), never over a flag the user set."""

import ast
import json
import os
import subprocess
import sys

import pytest

from mnist_jax.runtime import CPU_FLAGS, CPU_FLAGS_ENV

# Prints what `configure_xla_cpu` added, XLA_FLAGS after it, and, unless NO_BACKEND is set, the
# compiled text of a dense layer and a sum over the batch (under the flag, YNNPACK takes the
# matmul with its bias and leaves the sum to XLA).
SCRIPT = """
import json, os, jax, jax.numpy as jnp
from mnist_jax.runtime import configure_xla_cpu
from jax._src import xla_bridge
if os.environ.get("START_BACKEND_FIRST"):
    jax.devices()
added = configure_xla_cpu()
started = xla_bridge.backends_are_initialized()
hlo = None
if not os.environ.get("NO_BACKEND"):
    dense = lambda x, w, b: jnp.sum(jax.nn.relu(x @ w + b), axis=0)
    args = (jnp.ones((512, 64)), jnp.ones((64, 32)), jnp.ones((32,)))
    hlo = jax.jit(dense).lower(*args).compile().as_text()
print(json.dumps({"added": added, "xla_flags": os.environ.get("XLA_FLAGS"),
                  "started_before": started, "hlo": hlo}))
"""


def run(**env_changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", CPU_FLAGS_ENV)}
    env.update({"JAX_PLATFORMS": "cpu", **env_changes})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_flags_are_set_on_cpu_before_the_backend_starts_and_xla_applies_them():
    configured = run()
    assert configured["added"] == list(CPU_FLAGS)
    assert configured["started_before"] is False
    assert configured["xla_flags"].split() == list(CPU_FLAGS)
    # The program XLA compiled is the one the flags give when set by hand, not the default one.
    by_hand = run(XLA_FLAGS=" ".join(CPU_FLAGS), **{CPU_FLAGS_ENV: "off"})
    default = run(**{CPU_FLAGS_ENV: "off"})
    assert by_hand["added"] == default["added"] == []
    assert configured["hlo"] == by_hand["hlo"] != default["hlo"]


@pytest.mark.slow
def test_flags_join_the_users_and_never_replace_one_the_user_set():
    joined = run(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert joined["xla_flags"].split() == ["--xla_force_host_platform_device_count=2", *CPU_FLAGS]
    name = CPU_FLAGS[0].split("=")[0]
    mine = run(XLA_FLAGS=f"{name}=DEFAULT", NO_BACKEND="1")
    assert mine["added"] == [] and mine["xla_flags"] == f"{name}=DEFAULT"


@pytest.mark.slow
def test_no_flags_once_the_backend_has_started():
    late = run(START_BACKEND_FIRST="1", NO_BACKEND="1")
    assert late["added"] == [] and late["xla_flags"] is None


@pytest.mark.slow
def test_no_flags_when_jax_will_run_on_an_accelerator():
    # Nothing starts a backend here: the platform is only named.
    for platforms in ("cuda", "tpu", "cuda,cpu"):
        other = run(JAX_PLATFORMS=platforms, NO_BACKEND="1")
        assert other["added"] == [] and other["xla_flags"] is None


@pytest.mark.slow
def test_off_sets_no_flags():
    off = run(NO_BACKEND="1", **{CPU_FLAGS_ENV: "off"})
    assert off["added"] == [] and off["xla_flags"] is None


@pytest.mark.slow
def test_a_single_runs_commands_import_neither_scipy_nor_seaborn_nor_pandas():
    """A single run needs neither: importing them (seaborn brings the other two) took a second or
    two of every command's start-up on a 2-core CPU."""
    script = (
        "import sys, experiments.baseline, experiments.evaluate, mnist_jax.report, mnist_jax.logs"
    )
    assert modules_imported_by(script, ("scipy", "seaborn", "pandas")) == []


@pytest.mark.slow
def test_a_sweeps_statistics_and_figures_import_neither_scipy_stats_nor_seaborn_nor_pandas():
    """scipy.stats (most of a second) and seaborn (a second, with pandas) in every sweep and
    comparison: the statistics use scipy.special's distributions, the figures matplotlib."""
    script = (
        "import sys, numpy as np, experiments.sweep, experiments.compare;"
        "from mnist_jax import plots, stats;"
        "a = {0: 0.97, 1: 0.975, 2: 0.971}; b = {0: 0.972, 1: 0.976, 2: 0.974};"
        "stats.summarize(list(a.values())); stats.paired_p_value(a, b);"
        "stats.probability_of_improvement(a, b);"
        "stats.mcnemar(np.arange(9) % 2 == 0, np.arange(9) % 3 == 0);"
        "plots.plot_accuracy_distribution({'a': list(a.values()), 'b': list(b.values())});"
        "plots.plot_learning_curves_band({'a': [[0.9, 0.95], [0.91, 0.96]]})"
    )
    assert modules_imported_by(script, ("scipy.stats", "seaborn", "pandas")) == []


def modules_imported_by(script: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `script`."""
    script += f";print(sorted(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip())


def test_a_compilation_cache_setting_that_is_not_a_writable_folder_is_one_line(
    tmp_path, monkeypatch
):
    import pytest

    from mnist_jax.errors import ConfigError
    from mnist_jax.runtime import CACHE_ENV, enable_compilation_cache

    file = tmp_path / "file"
    file.write_text("kept")
    monkeypatch.setenv(CACHE_ENV, str(file))
    with pytest.raises(ConfigError, match=CACHE_ENV):  # jax warned at every compilation instead
        enable_compilation_cache()
    assert file.read_text() == "kept"
    # The default place unusable: the cache only saves time, so the command runs without it.
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(file))
    assert enable_compilation_cache() is None


@pytest.mark.slow
def test_a_backend_that_cannot_start_is_named_as_such_in_one_line(tmp_path, mnist_dir):
    env = dict(os.environ, JAX_PLATFORMS="bogus", MNIST_JAX_DATA=str(mnist_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.baseline", "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "jax cannot start its backend" in proc.stderr  # it blamed the model
    assert not (tmp_path / "run").exists()


# A notebook's session: something compiles first (jax then settles whether a cache is in use),
# then `fit`. Prints the cache folder `fit` left jax with.
FIT_SCRIPT = """
import sys, jax, jax.numpy as jnp
sys.path.insert(0, "tests")
from helpers import teacher_data
from mnist_jax.config import TrainConfig
from mnist_jax.fit import fit
jnp.arange(3).sum().block_until_ready()
fit(TrainConfig(epochs=1, batch_size=32, hidden_sizes=(8,), validation="test"), teacher_data())
print(jax.config.jax_compilation_cache_dir)
"""


@pytest.mark.slow
def test_python_users_get_the_compilation_cache_by_default_and_can_turn_it_off(tmp_path):
    from mnist_jax.runtime import CACHE_ENV

    env = {k: v for k, v in os.environ.items() if k != CACHE_ENV}
    env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "home"))

    def fit_once(**changes):
        done = subprocess.run(
            [sys.executable, "-c", FIT_SCRIPT],
            env={**env, **changes},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    folder = tmp_path / "home" / "mnist_jax" / "jax"
    assert fit_once() == str(folder)
    assert any(folder.iterdir())  # the epoch's program was written, though jax had compiled first
    assert fit_once(**{CACHE_ENV: "off"}) == "None"


def test_a_cpu_flags_setting_that_is_neither_on_nor_off_is_refused(monkeypatch):
    from mnist_jax.errors import ConfigError
    from mnist_jax.runtime import configure_xla_cpu

    monkeypatch.setenv(CPU_FLAGS_ENV, "offf")  # found by a hostile pass: it meant "on"
    with pytest.raises(ConfigError, match="MNIST_JAX_CPU_FLAGS='offf': expected on or off"):
        configure_xla_cpu()
