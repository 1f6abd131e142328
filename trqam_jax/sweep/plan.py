"""The plan: one BC program per domain (per group of agents whose pretrained fields have the same
shapes), one fine-tuning program per (agent, domain), each program's resolved launcher config,
and what is finished, started or changed under the root."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from trqam_jax import experiment, run_dir, validation
from trqam_jax.agents import bc
from trqam_jax.sweep.spec import ConfigError, Sweep, agent_config, agent_configs

BC, FINETUNE = "bc", "finetune"
BC_TASK = 1  # BC reads no rewards: every task of a domain shares its pretraining, named task 1
CONFIGS_DIR = "configs"  # <root>/configs/<program>.json: the config each program's launcher runs


@dataclasses.dataclass(frozen=True)
class Program:
    """One launcher run of the plan.

    name: its run directory under the root; stage: BC or FINETUNE; config_name: configs/<name>.py;
    rows: rows of the whole program (seeds for BC, tasks x swept values x seeds to fine-tune);
    steps: update steps per row; parts: processes its rows split over (BC programs run whole);
    process: the process that runs a BC program; bc: the BC program a fine-tuning program starts
    from.
    """

    name: str
    stage: str
    config_name: str
    domain: str
    rows: int
    steps: int
    parts: int = 1
    process: int = 0
    bc: str = ""

    @property
    def updates(self) -> int:
        return self.rows * self.steps


def program_config(sweep: Sweep, program: Program) -> ml_collections.ConfigDict:
    """The resolved config of the program's launcher (part 0; a part sets `rows_part`)."""
    config = agent_config(sweep, program.config_name, program.domain)
    config.seeds = sweep.seeds
    config.run_dir = os.path.join(sweep.root, program.name)
    config.rows_parts = program.parts
    if program.stage == BC:
        config.update(
            task=BC_TASK,
            tasks=(),
            kl_budgets=(),
            init_from="",
            offline_steps=0,
            online_steps=0,
            eval_episodes=0,
        )
    else:
        init = os.path.join(sweep.root, program.bc) if program.bc else ""
        config.update(
            task=sweep.tasks[0],
            tasks=sweep.tasks,
            kl_budgets=sweep.values_of(config),
            bc_steps=0,
            init_from=init,
        )
    return config


def part_config(sweep: Sweep, program: Program, part: int) -> ml_collections.ConfigDict:
    """The config of block `part` of the program's rows."""
    config = program_config(sweep, program)
    config.rows_part = part
    return config


def part_dirs(sweep: Sweep, program: Program) -> list[str]:
    """The run directories the program's parts write (experiment.run_directory's rule)."""
    return [
        experiment.run_directory(part_config(sweep, program, part)) for part in range(program.parts)
    ]


def config_file(sweep: Sweep, program: Program) -> str:
    """Where the program's resolved config is written (configs/resolved.py reads it)."""
    return os.path.join(sweep.root, CONFIGS_DIR, f"{program.name}.json")


def write_config(program_conf: ml_collections.ConfigDict, path: str) -> None:
    """The resolved config as JSON (tuples become lists; configs/resolved.py turns them back)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    run_dir.write_json(path, json.loads(program_conf.to_json()))


def _base_field_shapes(config) -> str:
    """What a BC checkpoint must match to initialise `config`'s agent: its base field's shapes
    (observation and action sizes are the domain's, shared by every agent of it)."""

    def base():  # traced only: the sweep's own process never opens a device
        example = (jnp.zeros(3), jnp.zeros((config.agent.horizon, 2)))
        return bc.init(jax.random.PRNGKey(0), config.agent, *example).params["base"]

    return str(jax.tree.map(lambda x: x.shape, jax.eval_shape(base)))


def make_plan(sweep: Sweep, processes: int = 1) -> list[Program]:
    """BC programs (one per domain and group of agents with the same base-field shapes), then one
    fine-tuning program per (agent, domain); all of it deterministic, so every process of a
    distributed sweep builds the same plan.

    A BC group is named bc-<domain> when it holds the first config of `agent_configs()`, else
    bc-<domain>-<its first config>; its BC stage trains with that first config, whichever agents
    the sweep runs, so the name always means the same pretraining. With bc_steps = 0 there is no
    BC program and every agent starts from scratch.
    Raises ConfigError when a fine-tuning program's rows do not split among the processes.
    """
    programs, finetune = [], []
    for domain in sweep.domains:
        groups: dict[str, list[str]] = {}
        for name in agent_configs():
            shapes = _base_field_shapes(agent_config(sweep, name, domain))
            groups.setdefault(shapes, []).append(name)
        owner_of = {name: members[0] for members in groups.values() for name in members}
        bc_names = {}
        for owner in dict.fromkeys(owner_of[name] for name in sweep.agents):
            config = agent_config(sweep, owner, domain)
            if not config.bc_steps:
                continue
            suffix = "" if owner == agent_configs()[0] else f"-{owner}"
            bc_names[owner] = f"bc-{domain}{suffix}"
            programs.append(
                Program(bc_names[owner], BC, owner, domain, sweep.seeds, config.bc_steps)
            )
        for name in sweep.agents:
            config = agent_config(sweep, name, domain)
            swept = len(sweep.values_of(config)) if experiment.swept_hparam(config) else 1
            rows = len(sweep.tasks) * max(swept, 1) * sweep.seeds
            if rows % processes:
                raise ConfigError(
                    f"{name} on {domain} has {rows} rows (tasks x swept values x seeds), which do "
                    f"not split among {processes} processes; use a number of processes that "
                    f"divides {rows}, or other seeds"
                )
            steps = config.offline_steps + config.online_steps
            bc_name = bc_names.get(owner_of[name], "")
            finetune.append(
                Program(
                    f"{name}-{domain}", FINETUNE, name, domain, rows, steps, processes, bc=bc_name
                )
            )
    # BC programs are dealt out whole: process k runs the BC programs k, k + P, ...
    programs = [dataclasses.replace(p, process=i % processes) for i, p in enumerate(programs)]
    return programs + finetune


def check_programs(sweep: Sweep, plan: Sequence[Program]) -> None:
    """The launcher's checks of every part before any work: its config validation, and the
    refusal of a run directory that holds another experiment (a finished one included).

    Raises ConfigError (or DataError for an unknown task) naming the program, field and fix.
    """
    for program in plan:
        for part in range(program.parts):
            config = part_config(sweep, program, part)
            checked = config.copy_and_resolve_references()
            checked.init_from = ""  # the plan's BC program makes it (its launcher checks it then)
            try:
                validation.check_run_config(checked)
            except ConfigError as err:
                raise ConfigError(f"{program.name}: {err}") from None
            changes = _changed_fields(config)
            if changes and not config.allow_config_change:
                listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
                raise ConfigError(
                    f"{experiment.run_directory(config)} holds another experiment; these fields "
                    f"differ from its config.json: {listed}. Use another --root for the new "
                    "sweep, or --set allow_config_change=True to resume this one with the new "
                    "values."
                )


def _changed_fields(config) -> dict:
    path = os.path.join(experiment.run_directory(config), run_dir.CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    saved = run_dir.read_json(path)
    return validation.config_differences(saved, experiment.config_record(config))


def program_status(sweep: Sweep, program: Program) -> str:
    """done (every part has a summary covering its steps), resumes (a part started) or todo."""
    configs = [part_config(sweep, program, part) for part in range(program.parts)]
    dirs = [experiment.run_directory(config) for config in configs]
    if all(
        experiment.finished_summary(c, d) is not None for c, d in zip(configs, dirs, strict=True)
    ):
        return "done"
    if any(os.path.exists(os.path.join(d, run_dir.CONFIG_FILE)) for d in dirs):
        return "resumes"
    return "todo"
