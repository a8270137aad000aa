"""Multi-seed and hyper-parameter sweeps: many members trained by one vmapped, sharded program.

The sweep uses the single run's `train_epoch` under `jax.vmap` (no second copy of the training
maths), with the members' leading axis sharded over all devices of all processes. See `run_sweep`.
"""

from mnist_jax.sweep.distributed import (
    gather_to_host,
    initialize_distributed_from_env,
    is_main_process,
)
from mnist_jax.sweep.members import (
    MIN_MEMBERS_PER_DEVICE,
    ConfigKey,
    Member,
    expand_members,
    parse_int_ranges,
)
from mnist_jax.sweep.plan import SweepProgram, plan_sweep, resolve_members_per_program
from mnist_jax.sweep.program import (
    MEMBER_AXIS,
    default_budget_bytes,
    default_members_per_step,
    epoch_program,
    init_members,
    logits_program,
    member_mesh,
    member_sharding,
    replicate_data,
    replicated,
    validate_program,
)
from mnist_jax.sweep.results import (
    config_label,
    config_labels,
    curves_by_config,
    paired_difference,
    values_by_config,
)
from mnist_jax.sweep.run import (
    MemberResult,
    SweepCallback,
    SweepResult,
    SweepStart,
    ensembles,
    run_sweep,
)
from mnist_jax.sweep.stats import summarize, summarize_by_config

__all__ = [
    "ConfigKey",
    "MEMBER_AXIS",
    "MIN_MEMBERS_PER_DEVICE",
    "Member",
    "MemberResult",
    "SweepCallback",
    "SweepProgram",
    "SweepResult",
    "SweepStart",
    "config_label",
    "config_labels",
    "curves_by_config",
    "default_budget_bytes",
    "default_members_per_step",
    "ensembles",
    "epoch_program",
    "expand_members",
    "gather_to_host",
    "init_members",
    "initialize_distributed_from_env",
    "is_main_process",
    "logits_program",
    "member_mesh",
    "member_sharding",
    "paired_difference",
    "parse_int_ranges",
    "plan_sweep",
    "replicate_data",
    "replicated",
    "resolve_members_per_program",
    "run_sweep",
    "summarize",
    "summarize_by_config",
    "validate_program",
    "values_by_config",
]
