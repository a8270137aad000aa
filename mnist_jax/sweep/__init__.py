"""Multi-seed and hyper-parameter sweeps: many members trained by one vmapped, sharded program.

The sweep uses the single run's `train_epoch` under `jax.vmap` (no second copy of the training
maths), with the members' leading axis sharded over all devices of all processes. See `run_sweep`.

The names below load their module on first use (PEP 562): importing one sweep module, e.g.
`mnist_jax.sweep.members`, does not load the runner, the statistics and the outputs with it.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "config_label": "mnist_jax.sweep.results",
    "config_labels": "mnist_jax.sweep.results",
    "ConfigKey": "mnist_jax.sweep.members",
    "curves_by_config": "mnist_jax.sweep.results",
    "default_budget_bytes": "mnist_jax.memory",
    "default_members_per_step": "mnist_jax.sweep.program",
    "ensembles": "mnist_jax.sweep.run",
    "epoch_program": "mnist_jax.sweep.program",
    "expand_members": "mnist_jax.sweep.members",
    "gather_to_host": "mnist_jax.distributed",
    "init_members": "mnist_jax.sweep.program",
    "initialize_distributed_from_env": "mnist_jax.distributed",
    "is_main_process": "mnist_jax.distributed",
    "logits_program": "mnist_jax.sweep.program",
    "Member": "mnist_jax.sweep.members",
    "MEMBER_AXIS": "mnist_jax.sweep.program",
    "member_mesh": "mnist_jax.sweep.program",
    "member_sharding": "mnist_jax.sweep.program",
    "MemberResult": "mnist_jax.sweep.run",
    "MIN_MEMBERS_PER_DEVICE": "mnist_jax.sweep.members",
    "paired_difference": "mnist_jax.sweep.results",
    "parse_int_ranges": "mnist_jax.sweep.members",
    "plan_sweep": "mnist_jax.sweep.plan",
    "replicate_data": "mnist_jax.sweep.program",
    "replicated": "mnist_jax.sweep.program",
    "resolve_members_per_program": "mnist_jax.sweep.plan",
    "run_sweep": "mnist_jax.sweep.run",
    "summarize": "mnist_jax.sweep.stats",
    "summarize_by_config": "mnist_jax.sweep.stats",
    "SweepCallback": "mnist_jax.sweep.run",
    "SweepProgram": "mnist_jax.sweep.plan",
    "SweepResult": "mnist_jax.sweep.run",
    "SweepStart": "mnist_jax.sweep.run",
    "validate_program": "mnist_jax.sweep.program",
    "values_by_config": "mnist_jax.sweep.results",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
