"""Multi-seed and hyper-parameter sweeps: many members trained by one vmapped, sharded program.

The sweep uses the single run's `train_epoch` under `jax.vmap` (no second copy of the training
maths), with the members' leading axis sharded over all devices of all processes. See `run_sweep`.

The names below load their module on first use (PEP 562): importing one sweep module, e.g.
`mnist_jax.sweep.members`, does not load the runner, the statistics and the outputs with it.
"""

from __future__ import annotations

import importlib

# Each public name, by the module that defines it.
_NAMES_BY_MODULE = {
    "mnist_jax.distributed": "gather_to_host initialize_distributed_from_env is_main_process",
    "mnist_jax.memory": "default_budget_bytes",
    "mnist_jax.sweep.members": "ConfigKey expand_members Member MIN_MEMBERS_PER_DEVICE "
    "parse_int_ranges",
    "mnist_jax.sweep.plan": "plan_sweep resolve_members_per_program SweepProgram",
    "mnist_jax.sweep.program": "default_members_per_step epoch_program init_members logits_program "
    "MEMBER_AXIS member_mesh member_sharding replicate_data replicated validate_program",
    "mnist_jax.sweep.results": "config_label config_labels curves_by_config paired_difference "
    "values_by_config",
    "mnist_jax.sweep.run": "ensembles MemberResult run_sweep SweepCallback SweepResult SweepStart",
    "mnist_jax.sweep.stats": "summarize summarize_by_config",
}
_EXPORTS = {name: module for module, names in _NAMES_BY_MODULE.items() for name in names.split()}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
