"""The paper's protocol as one plan: a shared BC pretraining per domain, one fine-tuning program
per (agent, domain), then the report (docs/sweep.md; the CLI is experiments/sweep.py).

A sweep is agents x domains x tasks x seeds (x the values of each agent's swept hparam). Its plan
(`plan`) holds one BC program per domain (per group of agents whose pretrained fields have the
same shapes), which every fine-tuning program of the domain starts from (`init_from`), and one
fine-tuning program per (agent, domain) whose rows are tasks x swept values x seeds. Each
program's resolved config is written under the root, and each of its parts is one unchanged
launcher run (`experiments.run` on `configs/resolved.py:<file>`, `rows_part` / `rows_parts`) in a
worker process of its own (`processes`, `part`), so the launcher's checks (validation, lock,
config change) hold for sweeps and devices, memory and environments are released between
programs; JAX's persistent compilation cache carries the compiled programs from one worker to the
next. Every launcher run resumes, so rerunning a sweep skips what is finished and resumes what is
not. Before any work the sweep checks every part (`plan.check_programs`), prints the plan and its
cost, measured by a worker (`measure`, `estimate`).

Over several processes (`jax.distributed`), BC programs are dealt out whole, one process each,
and every fine-tuning program splits its rows into one block per process; only process 0 writes
the shared files (plan, configs, sweep summary, report). Workers are single-process JAX programs
(orbax writes a process's own checkpoints only when JAX runs one process); the sweep processes
meet at barriers of the distributed runtime between phases.

Modules: spec (what a sweep is, the overrides), plan (programs, configs, statuses), estimate
(cost and the printed plan), measure and part (worker entry points), processes (peers and
workers), driver (the run).
"""

from trqam_jax.experiment import USER_ERRORS
from trqam_jax.sweep.driver import PLAN_FILE, RECORDS_DIR, REPORT_DIR, SUMMARY_FILE, run
from trqam_jax.sweep.estimate import estimate, plan_lines, plan_record
from trqam_jax.sweep.plan import (
    BC,
    FINETUNE,
    Program,
    check_programs,
    config_file,
    make_plan,
    part_config,
    part_dirs,
    program_config,
    program_status,
)
from trqam_jax.sweep.processes import Processes, connect, run_worker, worker_env
from trqam_jax.sweep.spec import (
    PAPER_AGENTS,
    SWEEP_FIELDS,
    ConfigError,
    Sweep,
    agent_config,
    agent_configs,
    base_config_of,
    make_sweep,
    parse_agents,
)

__all__ = [
    "BC",
    "FINETUNE",
    "PAPER_AGENTS",
    "PLAN_FILE",
    "RECORDS_DIR",
    "REPORT_DIR",
    "SUMMARY_FILE",
    "SWEEP_FIELDS",
    "USER_ERRORS",
    "ConfigError",
    "Processes",
    "Program",
    "Sweep",
    "agent_config",
    "agent_configs",
    "base_config_of",
    "check_programs",
    "config_file",
    "connect",
    "estimate",
    "make_plan",
    "make_sweep",
    "parse_agents",
    "part_config",
    "part_dirs",
    "plan_lines",
    "plan_record",
    "program_config",
    "program_status",
    "run",
    "run_worker",
    "worker_env",
]
