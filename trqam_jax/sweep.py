"""The paper's protocol as one plan: a shared BC pretraining per domain, one fine-tuning program
per (agent, domain), then the report (docs/sweep.md; the CLI is experiments/sweep.py).

A sweep is agents x domains x tasks x seeds (x kl_budgets for the agents that have one). Its plan
holds one BC program per domain (per group of agents whose pretrained fields have the same shapes),
which every fine-tuning program of the domain starts from (`init_from`), and one fine-tuning
program per (agent, domain) whose rows are tasks x budgets x seeds. Each program is one launcher
run (`experiment.run`) in a worker process of its own, so devices, memory and environments are
released between programs; JAX's persistent compilation cache carries the compiled programs from
one worker to the next. Every launcher run resumes, so rerunning a sweep skips what is finished
and resumes what is not.

Over several processes (`jax.distributed`), BC programs are dealt out whole, one process each,
and every fine-tuning program splits its rows into one block per process (`rows_part`,
`rows_parts`); only process 0 writes the shared files (plan, sweep summary, report). Workers are
single-process JAX programs (orbax writes a process's own checkpoints only when JAX runs one
process); the sweep processes meet at barriers of the distributed runtime between phases.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import json
import os
import pkgutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from trqam_jax import compile_cache, experiment, loop, run_dir, train
from trqam_jax.agents import AGENTS, bc, common, get_agent
from trqam_jax.data import names
from trqam_jax.data.datasets import parse_env_name

ConfigError = experiment.ConfigError
USER_ERRORS = experiment.USER_ERRORS
BC, FINETUNE = "bc", "finetune"
BC_TASK = 1  # BC reads no rewards: every task of a domain shares its pretraining, named task 1
# The TRQAM paper's table: its 7 methods as config names (those this checkout has take part).
PAPER_AGENTS = ("trqam", "qam", "qam_e", "fql_chunked", "dsrl", "ifql", "cgql")
# Run fields the sweep sets itself (each has its own flag or follows from the plan).
SWEEP_FIELDS = frozenset(("domain", "task", "tasks", "seeds", "kl_budgets", "run_dir"))
SWEEP_FIELDS |= {"init_from", "rows_part", "rows_parts"}
# The shared files under the root (process 0 writes them) and the workers' records.
PLAN_FILE, SUMMARY_FILE, RECORDS_DIR, REPORT_DIR = "plan.json", "sweep.json", "records", "report"


# ----------------------------------------------------------------------------------------------
# What a sweep is


@dataclasses.dataclass(frozen=True)
class Sweep:
    """agents: config names (configs/<name>.py); domains; tasks; seeds; kl_budgets ((): each
    agent's own); root: the directory of every run; overrides: (dotted config key, value) pairs
    applied to every config that has the key."""

    agents: tuple[str, ...]
    domains: tuple[str, ...]
    tasks: tuple[int, ...]
    seeds: int
    kl_budgets: tuple[float, ...]
    root: str
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Program:
    """One launcher run of the plan.

    name: its run directory under the root; stage: BC or FINETUNE; config_name: configs/<name>.py;
    rows: rows of the whole program (seeds for BC, tasks x budgets x seeds to fine-tune); steps:
    update steps per row; parts: processes its rows split over (BC programs run whole); process:
    the process that runs a BC program; bc: the BC program a fine-tuning program starts from.
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


@functools.cache
def agent_configs() -> tuple[str, ...]:
    """Every agent config of configs/: a module `<agent>[_<preset>].py` with `get_config` whose
    agent is one of `trqam_jax.agents.AGENTS`, in the order of AGENTS (new agents join here)."""
    import configs

    found = []
    for module in pkgutil.iter_modules(configs.__path__):
        get = getattr(importlib.import_module(f"configs.{module.name}"), "get_config", None)
        if get is None:
            continue
        agent = get().agent.agent_name
        if agent in AGENTS and (module.name == agent or module.name.startswith(agent + "_")):
            found.append((AGENTS.index(agent), module.name))
    return tuple(name for _, name in sorted(found))


def parse_agents(text: str) -> tuple[str, ...]:
    """`paper` (the TRQAM table's methods present here), `all`, or comma-separated config names."""
    known = agent_configs()
    if text == "paper":
        chosen = tuple(name for name in PAPER_AGENTS if name in known)
    elif text == "all":
        chosen = known
    else:
        chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ConfigError(
            f"--agents={text!r}: unknown {', '.join(unknown) or 'empty list'}; use paper, all or "
            f"some of {', '.join(known)}"
        )
    agent_of = {name: base_config_of(name).agent.agent_name for name in chosen}
    for agent in set(agent_of.values()):
        twins = [name for name in chosen if agent_of[name] == agent]
        if len(twins) > 1:
            raise ConfigError(
                f"--agents: {' and '.join(twins)} both run agent {agent!r}, which the report "
                "cannot tell apart; sweep them under different --root directories"
            )
    return chosen


def parse_domains(text: str) -> tuple[str, ...]:
    """`paper` (the 10 domains of the TRQAM table) or comma-separated domain names."""
    if text == "paper":
        return names.PAPER_DOMAINS
    domains = tuple(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not domains:
        raise ConfigError("--domains is empty; use paper or e.g. cube-double-play,scene-play")
    return domains


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value): a Python literal ((16,16), 3, 0.5, True) or else a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. agent.num_qs=2")
    if key.split(".")[0] in SWEEP_FIELDS:
        raise ConfigError(
            f"--set {key}: the sweep sets config.{key.split('.')[0]} itself; use the sweep's "
            "flags (--domains, --tasks, --seeds, --kl_budgets, --root)"
        )
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def make_sweep(
    agents: str,
    domains: str,
    tasks: str,
    seeds: int,
    kl_budgets: str,
    root: str,
    overrides: Sequence[str] = (),
) -> Sweep:
    """A checked `Sweep` from the CLI's values: comma-separated agents, domains, tasks and budgets
    ("" = each agent's own), `key=value` overrides.

    Raises ConfigError or DataError (an unknown domain or task) naming the value and the fix.
    """
    try:
        task_ids = tuple(int(t) for t in tasks.split(","))
        budgets = tuple(float(b) for b in kl_budgets.split(",") if b.strip())
    except ValueError:
        raise ConfigError(
            f"--tasks={tasks!r} / --kl_budgets={kl_budgets!r}: expected comma-separated numbers, "
            "e.g. --tasks=1,2,3 --kl_budgets=0.5,1.0"
        ) from None
    sweep = Sweep(
        agents=parse_agents(agents),
        domains=parse_domains(domains),
        tasks=task_ids,
        seeds=int(seeds),
        kl_budgets=budgets,
        root=root,
        overrides=tuple(parse_override(o) for o in overrides),
    )
    if not sweep.tasks or sweep.seeds < 1 or not sweep.agents:
        raise ConfigError(
            f"a sweep needs agents, tasks and seeds >= 1 (got agents {sweep.agents}, tasks "
            f"{sweep.tasks}, seeds {sweep.seeds})"
        )
    for domain in sweep.domains:
        for task in sweep.tasks:
            parse_env_name(names.env_name(domain, task))  # unknown names: the fix, close matches
    for key, _ in sweep.overrides:
        if not any(_has_field(base_config_of(name), key) for name in sweep.agents):
            raise ConfigError(
                f"--set {key}: no config of the sweep ({', '.join(sweep.agents)}) has this field; "
                "see --print_config of experiments.run for the fields"
            )
    return sweep


# ----------------------------------------------------------------------------------------------
# The configs of the programs


def base_config_of(config_name: str, domain: str | None = None) -> ml_collections.ConfigDict:
    return importlib.import_module(f"configs.{config_name}").get_config(domain)


def _has_field(config, key: str) -> bool:
    node = config
    for name in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            return False
        node = node[name]
    return True


def agent_config(sweep: Sweep, config_name: str, domain: str) -> ml_collections.ConfigDict:
    """configs/<config_name>.py on `domain` with the sweep's overrides (those it has)."""
    config = base_config_of(config_name, domain)
    for key, value in sweep.overrides:
        if not _has_field(config, key):
            continue  # e.g. agent.kl_budget only for TRQAM
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        try:
            node[leaf] = value
        except TypeError as err:
            raise ConfigError(f"--set {key}={value!r}: {err}") from None
    return config


def program_config(sweep: Sweep, program: Program) -> ml_collections.ConfigDict:
    """The run config the program's launcher runs (one block of it: set rows_part / rows_parts)."""
    config = agent_config(sweep, program.config_name, program.domain)
    config.seeds = sweep.seeds
    config.run_dir = os.path.join(sweep.root, program.name)
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
        budgets = sweep.kl_budgets if experiment.SWEPT in config.agent else ()
        init = os.path.join(sweep.root, program.bc) if program.bc else ""
        config.update(
            task=sweep.tasks[0], tasks=sweep.tasks, kl_budgets=budgets, bc_steps=0, init_from=init
        )
    return config


def part_dirs(sweep: Sweep, program: Program) -> list[str]:
    """The run directories the program's parts write (experiment.run_directory's rule)."""
    out = os.path.join(sweep.root, program.name)
    return (
        [out]
        if program.parts == 1
        else [os.path.join(out, f"part{i}") for i in range(program.parts)]
    )


def _base_field_shapes(config) -> str:
    """What a BC checkpoint must match to initialise `config`'s agent: its base field's shapes
    (observation and action sizes are the domain's, shared by every agent of it)."""

    def base():  # traced only: the sweep's own process never opens a device
        example = (jnp.zeros(3), jnp.zeros((config.agent.horizon, 2)))
        return bc.init(jax.random.PRNGKey(0), config.agent, *example).params["base"]

    return str(jax.tree.map(lambda x: x.shape, jax.eval_shape(base)))


# ----------------------------------------------------------------------------------------------
# The plan


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
            groups.setdefault(_base_field_shapes(agent_config(sweep, name, domain)), []).append(
                name
            )
        owner_of = {name: members[0] for members in groups.values() for name in members}
        needed = dict.fromkeys(owner_of[name] for name in sweep.agents)
        bc_names = {}
        for owner in needed:
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
            budgets = len(sweep.kl_budgets) if experiment.SWEPT in config.agent else 1
            rows = len(sweep.tasks) * max(budgets, 1) * sweep.seeds
            if rows % processes:
                raise ConfigError(
                    f"{name} on {domain} has {rows} rows (tasks x budgets x seeds), which do not "
                    f"split among {processes} processes; use a number of processes that divides "
                    f"{rows}, or other seeds"
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


def program_status(sweep: Sweep, program: Program) -> str:
    """done (every part has a summary covering its steps), resumes (a part started) or todo."""
    config = program_config(sweep, program)
    dirs = part_dirs(sweep, program)
    if all(experiment.finished_summary(config, d) is not None for d in dirs):
        return "done"
    if any(os.path.exists(os.path.join(d, run_dir.CONFIG_FILE)) for d in dirs):
        return "resumes"
    return "todo"


def estimate(plan: Sequence[Program], status: dict, costs: dict, processes: int) -> dict:
    """Wall-time estimate of the plan from measured seconds per update step.

    Args:
      status: program name -> program_status; costs: program name -> a `measure` record (its
        `s_per_step` is one step of all the rows one process runs) or {"error": ...}.
    Returns:
      {program name: estimated training seconds (None: not measured)} plus "total_s": BC phase
      (the busiest process: BC programs run whole, one per process) + fine-tuning programs (all
      processes at once), "compile_s": the measured compile seconds, "unmeasured": names. A
      resumed program counts all its steps (an upper bound); evaluation is not included.
    """
    out, busy, unmeasured = {}, [0.0] * processes, []
    total = compile_s = 0.0
    for program in plan:
        cost = costs.get(program.name) or {}
        if status.get(program.name) == "done":
            out[program.name] = 0.0
            continue
        if "s_per_step" not in cost:
            out[program.name] = None
            unmeasured.append(program.name)
            continue
        seconds = program.steps * cost["s_per_step"]
        out[program.name] = seconds
        compile_s += cost["compile_s"]
        if program.stage == BC:
            busy[program.process] += seconds
        else:
            total += seconds
    return dict(out, total_s=total + max(busy), compile_s=compile_s, unmeasured=unmeasured)


def _hours(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def plan_lines(sweep: Sweep, plan, status, costs, processes: int) -> list[str]:
    """The plan as the terminal shows it before any work."""
    est = estimate(plan, status, costs, processes)
    budgets = ", ".join(map(str, sweep.kl_budgets)) or "each agent's own"
    lines = [
        f"Sweep plan for {sweep.root} ({processes} process{'es' if processes > 1 else ''}): "
        f"agents {', '.join(sweep.agents)}; domains {', '.join(sweep.domains)}; tasks "
        f"{', '.join(map(str, sweep.tasks))}; {sweep.seeds} seeds; kl_budgets {budgets}",
        f"  {'program':<40} {'stage':<8} {'rows':>5} {'rows/proc':>9} {'steps/row':>10} "
        f"{'updates':>11} {'status':<8} {'compile s':>9} {'ms/step':>8} {'est. wall':>9}",
    ]
    for p in plan:
        cost = costs.get(p.name) or {}
        per_process = p.rows if p.stage == BC else p.rows // p.parts
        compile_s = f"{cost['compile_s']:.1f}" if "compile_s" in cost else "-"
        ms = f"{1e3 * cost['s_per_step']:.2f}" if "s_per_step" in cost else "-"
        lines.append(
            f"  {p.name:<40} {p.stage:<8} {p.rows:>5} {per_process:>9} {p.steps:>10} "
            f"{p.updates:>11,} {status[p.name]:<8} {compile_s:>9} {ms:>8} "
            f"{_hours(est[p.name]):>9}"
        )
        if "error" in cost:
            lines.append(f"    not measured: {cost['error'].splitlines()[0]}")
    todo = sum(p.updates for p in plan if status[p.name] != "done")
    lines.append(
        f"{len(plan)} programs, {sum(p.updates for p in plan):,} updates (rows x steps), "
        f"{todo:,} still to run"
    )
    unmeasured = len(est["unmeasured"])
    if unmeasured < len(plan) and todo:
        lines.append(
            f"estimated training wall {_hours(est['total_s'])}"
            + (f" for the measured programs ({unmeasured} not measured)" if unmeasured else "")
            + f", + {est['compile_s']:.0f} s compiling, paid once (the programs load these "
            "compiles from the cache); evaluation and data loading not included"
        )
    elif todo:
        lines.append("no estimate: nothing measured (--time_calls=0, or the measurement failed)")
    return lines


def plan_record(sweep: Sweep, plan, status, costs, processes: int, command) -> dict:
    """plan.json: the sweep, every program with its status, cost and estimate, and the totals."""
    est = estimate(plan, status, costs, processes)
    return {
        "sweep": dataclasses.asdict(sweep),
        "processes": processes,
        "programs": [
            dict(
                dataclasses.asdict(p),
                updates=p.updates,
                status=status[p.name],
                run_dirs=part_dirs(sweep, p),
                cost=costs.get(p.name),
                estimate_s=est[p.name],
            )
            for p in plan
        ],
        "estimate_s": est["total_s"],
        "compile_s": est["compile_s"],
        "command": list(command),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ----------------------------------------------------------------------------------------------
# Workers: one program part, or the cost measurement, in a process of its own


def measure(config, stage: str, calls: int) -> dict:
    """Seconds per update step of a program block, timed on the launcher's own compiled call.

    The call is built as the launcher builds it (`loop.OfflineStage` over the program's data, rows
    and sharding), so with the persistent cache on, the program later loads this compile.
    Returns:
      rows, steps_per_call, compile_s (the first call's compile), s_per_step (the fastest of
      `calls` timed calls, per step of all rows), cache_hits, cache_misses.
    """
    rows = experiment.check_config(config)
    mesh = train.make_mesh(len(rows))
    data = experiment.load_data(config)
    source = experiment.data_source(data, config, mesh)
    examples = (
        jnp.zeros(data.train["observations"].shape[1]),
        jnp.zeros((config.agent.horizon, data.train["actions"].shape[1])),
    )
    agent = bc if stage == BC else get_agent(config.agent.agent_name)
    states = train.init_rows(agent, config.agent, jax.random.PRNGKey(0), rows.ids, *examples)
    if agent is not bc:
        states = common.set_hparams(states, rows.swept)
    states = train.shard_rows(states, mesh)
    timed = loop.OfflineStage(stage, agent, config, source, jax.random.PRNGKey(1), rows)
    with compile_cache.CompileTimer() as timer:
        states = jax.block_until_ready(timed.step(states, 0))[0]
    seconds = []
    for call in range(1, calls + 1):
        start = time.perf_counter()
        states = jax.block_until_ready(timed.step(states, call * timed.stride))[0]
        seconds.append(time.perf_counter() - start)
    return dict(
        timer.record(),
        rows=len(rows),
        steps_per_call=timed.stride,
        s_per_step=min(seconds) / timed.stride,
    )


def run_worker(sweep: Sweep, job: dict) -> int:
    """The worker side of a job (`launch`'s argument): run one program part, or measure programs.

    {"mode": "run", "program": name, "part": i, "processes": P}: `experiment.run` of block i,
      then its record (wall and compile seconds, cache hits) in <root>/records/<name>.part<i>.json.
    {"mode": "measure", "programs": [names], "processes": P, "calls": n, "out": path,
      "generate": bool}: `measure` of each program's block 0, written to `out` as
      {name: record or {"error": message}}.
    Returns the exit code (2: a user error, 3: training diverged).
    """
    plan = {p.name: p for p in make_plan(sweep, job["processes"])}
    if job["mode"] == "measure":
        costs = {}
        for name in job["programs"]:
            program = plan[name]
            config = program_config(sweep, program)
            config.rows_part, config.rows_parts = 0, program.parts
            config.generate_if_missing = config.generate_if_missing and job["generate"]
            config.init_from = ""  # not trained yet; the timed states start from scratch
            try:
                costs[name] = measure(config, program.stage, job["calls"])
            except USER_ERRORS as err:
                costs[name] = {"error": str(err)}
            print(f"measured {name}: {costs[name]}", flush=True)
        with open(job["out"], "w") as f:
            json.dump(costs, f)
        return 0
    program = plan[job["program"]]
    config = program_config(sweep, program)
    config.rows_part, config.rows_parts = job["part"], program.parts
    start = time.perf_counter()
    try:
        with compile_cache.CompileTimer() as timer:
            summary = experiment.run(config)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except loop.DivergenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print("\n".join(experiment.summary_lines(config, summary)), flush=True)
    record = dict(
        timer.record(),
        program=program.name,
        part=job["part"],
        wall_s=round(time.perf_counter() - start, 3),
        run_dir=summary["run_dir"],
    )
    os.makedirs(os.path.join(sweep.root, RECORDS_DIR), exist_ok=True)
    path = os.path.join(sweep.root, RECORDS_DIR, f"{program.name}.part{job['part']}.json")
    run_dir.write_json(path, record)
    return 0


# ----------------------------------------------------------------------------------------------
# Processes


class Processes:
    """The processes of a sweep: this one's index, their count, and barriers between phases.

    One process needs nothing else. Several use the client of JAX's distributed runtime
    (`connect`): its barrier takes an explicit timeout, so a process may wait hours for a BC
    program on another one, and needs no device collective, so this process never opens an
    accelerator (its workers do).
    """

    def __init__(self, index: int = 0, count: int = 1, client=None, timeout_s: float = 0.0):
        self.index, self.count, self.client, self.timeout_s = index, count, client, timeout_s

    @property
    def writer(self) -> bool:
        """Whether this process writes the shared files (the plan, the summary, the report)."""
        return self.index == 0

    def barrier(self, name: str, status: str = "") -> list[str]:
        """Wait until every process reached barrier `name`; returns every process's `status`."""
        if self.count == 1:
            return [status]
        key = f"trqam_sweep/{name}"
        self.client.key_value_set(f"{key}/{self.index}", json.dumps(status))
        self.client.wait_at_barrier(key, int(self.timeout_s * 1000))
        return [
            json.loads(self.client.blocking_key_value_get(f"{key}/{i}", 60_000))
            for i in range(self.count)
        ]


def connect(coordinator_address=None, num_processes=None, process_id=None, timeout_s=3 * 86400.0):
    """`jax.distributed.initialize` (arguments None: detected from SLURM, Open MPI, a TPU pod or
    $JAX_COORDINATOR_ADDRESS / $JAX_NUM_PROCESSES / $JAX_PROCESS_ID) -> `Processes`."""
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    # The runtime initialize() connected; jax.process_index() would open a device backend here.
    from jax._src import distributed

    state = distributed.global_state
    return Processes(state.process_id, state.num_processes, state.client, timeout_s)


# Variables that would make a worker join the distributed runtime itself.
_DISTRIBUTED_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "JAX_LOCAL_DEVICE_IDS",
)
# The device choice jax.distributed.initialize made (e.g. GPU SLURM_LOCALID), and the variable
# that makes a worker see the same devices.
_VISIBLE = (
    ("jax_cuda_visible_devices", "CUDA_VISIBLE_DEVICES"),
    ("jax_rocm_visible_devices", "HIP_VISIBLE_DEVICES"),
)


def worker_env(environ=None, chosen=None) -> dict:
    """The environment of a worker: single-process JAX on the devices this process was given.

    Args:
      environ: this process's environment (default os.environ).
      chosen: {jax config name: device ids} (default: what `jax.distributed.initialize` set,
        e.g. the GPU of SLURM_LOCALID; "all" = every visible device). Ids index the devices
        this process sees, so they are mapped through an existing CUDA_VISIBLE_DEVICES.
    Returns:
      environ without the distributed variables, with the chosen devices made the only visible
      ones, and this checkout on PYTHONPATH.
    """
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k not in _DISTRIBUTED_ENV}
    for name, variable in _VISIBLE:
        ids = (jax.config.values if chosen is None else chosen).get(name, "all")
        if ids != "all":
            listed = environ.get(variable)
            env[variable] = (
                ",".join(listed.split(",")[int(i)] for i in ids.split(",")) if listed else ids
            )
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    return env


# ----------------------------------------------------------------------------------------------
# The sweep


def _say(processes: Processes, text: str) -> None:
    prefix = f"[sweep {processes.index}/{processes.count}] " if processes.count > 1 else "[sweep] "
    print(prefix + text, flush=True)


def _write_shared(processes: Processes, path: str, payload: dict) -> None:
    if processes.writer:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        run_dir.write_json(path, payload)
        _say(processes, f"wrote {path}")


def _announce(sweep, plan, processes, launch, dry_run, time_calls, command) -> str:
    """Process 0 before any work: statuses, the cost measurement (a worker), the printed plan and
    plan.json. Returns why the sweep cannot run, or ""."""
    status = {p.name: program_status(sweep, p) for p in plan}
    costs, problem = {}, ""
    todo = [p.name for p in plan if status[p.name] != "done"]
    if time_calls and todo:
        _say(
            processes,
            f"measuring the update cost of {len(todo)} programs ({time_calls} timed calls each)",
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "costs.json")
            job = dict(
                mode="measure",
                programs=todo,
                processes=processes.count,
                calls=time_calls,
                out=out,
                generate=not dry_run,
            )
            if launch(job) == 0:
                with open(out) as f:
                    costs = json.load(f)
            else:
                problem = "the cost measurement failed (its output is above)"
    print("\n".join(plan_lines(sweep, plan, status, costs, processes.count)), flush=True)
    errors = [f"{name}: {c['error']}" for name, c in costs.items() if "error" in c]
    if errors and not dry_run:
        problem = f"cannot run {len(errors)} programs; the first: {errors[0]}"
    if not dry_run and not problem:
        record = plan_record(sweep, plan, status, costs, processes.count, command)
        _write_shared(processes, os.path.join(sweep.root, PLAN_FILE), record)
    return problem


def run(
    sweep: Sweep,
    processes: Processes,
    launch: Callable[[dict], int],
    report: Callable[[list[str], str], int],
    dry_run: bool = False,
    time_calls: int = 1,
    command: Sequence[str] = (),
) -> int:
    """Plan, measure, print the plan, then BC, fine-tuning and the report, resuming what exists.

    Args:
      launch: runs a `run_worker` job in a worker process and returns its exit code.
      report: (run directories, output directory) -> exit code (experiments.report).
      dry_run: print the plan and stop; nothing is written (the cost measurement's compiles go
        to the compilation cache, whose entries the real run then loads).
      time_calls: timed calls per program for the estimate (0: no measurement, no estimate).
    Returns:
      0, 2 (the plan cannot run), 3 (some program failed; the others ran and are reported).
    """
    plan = make_plan(sweep, processes.count)
    problem = ""
    if processes.writer:
        try:
            problem = _announce(sweep, plan, processes, launch, dry_run, time_calls, command)
        except USER_ERRORS as err:  # e.g. a broken summary.json: say so to every process
            problem = str(err)
    problems = [s for s in processes.barrier("plan", problem) if s]
    if problems:
        _say(processes, f"error: {problems[0]}")
        return 2
    if dry_run:
        return 0

    def run_part(program: Program, part: int) -> str:
        """'' when the part is done (now or before), else why it is not."""
        config = program_config(sweep, program)
        config.rows_part, config.rows_parts = part, program.parts
        if experiment.finished_summary(config, part_dirs(sweep, program)[part]) is not None:
            _say(processes, f"{program.name} part {part}: finished before, skipped")
            return ""
        _say(processes, f"{program.name} part {part} of {program.parts}: running")
        code = launch(dict(mode="run", program=program.name, part=part, processes=processes.count))
        return "" if code == 0 else f"{program.name} part {part} exited with code {code}"

    failed: dict[str, str] = {}
    mine = {p.name: run_part(p, 0) for p in plan if p.stage == BC and p.process == processes.index}
    for statuses in processes.barrier("bc", {k: v for k, v in mine.items() if v}):
        failed.update(statuses)
    mine = {}
    for program in (p for p in plan if p.stage == FINETUNE):
        if program.bc in failed:
            mine[program.name] = f"{program.name} not run: its BC program {program.bc} failed"
        else:
            mine[program.name] = run_part(program, processes.index)
    for statuses in processes.barrier("finetune", {k: v for k, v in mine.items() if v}):
        failed.update(statuses)

    code = 3 if failed else 0
    if processes.writer:
        records = []
        records_dir = os.path.join(sweep.root, RECORDS_DIR)
        for program in plan:
            for part in range(program.parts):
                path = os.path.join(records_dir, f"{program.name}.part{part}.json")
                if os.path.exists(path):
                    records.append(run_dir.read_json(path))
        summary = {"programs": records, "failed": failed, "processes": processes.count}
        _write_shared(processes, os.path.join(sweep.root, SUMMARY_FILE), summary)
        for message in failed.values():
            _say(processes, f"failed: {message}")
        done = [
            os.path.join(sweep.root, p.name)
            for p in plan
            if p.stage == FINETUNE and program_status(sweep, p) == "done"
        ]
        if done:
            report_code = report(done, os.path.join(sweep.root, REPORT_DIR))
            code = code or report_code
            if report_code == 0:
                _say(processes, f"wrote {os.path.join(sweep.root, REPORT_DIR)}")
    processes.barrier("report")  # every process stays up until process 0 is done with the runtime
    return code
