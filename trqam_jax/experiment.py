"""One experiment from its config: validate, load data, plan the rows and stages, run, summarise.

The stage plan: BC pretraining (`bc_steps`, skipped with `init_from`) -> offline fine-tuning
(`offline_steps`) -> optional online fine-tuning (`online_steps`). Every stage resumes from its own
checkpoint, so rerunning the same config picks up where it stopped (a finished BC stage only
restores its final state). All rows (swept values x seeds) are one vmapped program, sharded over
the local devices; `loop.run_stage` runs each stage. `prepare` builds what the stages run on
(rows, mesh, data, initial states, stages), for the launcher, the sweep's cost measurement and
the benchmarks alike.
"""

import contextlib
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax import (
    checkpoint,
    loggers,
    loop,
    memory,
    online,
    reference_checkpoint,
    run_dir,
    train,
    validation,
)
from trqam_jax.agents import bc, common, get_agent
from trqam_jax.data import names
from trqam_jax.data.datasets import load_offline_data, parse_env_name, resolve_data_dir
from trqam_jax.data.errors import DataError, DatasetNotFoundError
from trqam_jax.data.shards import ShardRotator, shard_loader
from trqam_jax.envs import make_envs
from trqam_jax.versions import versions

STAGE_STEPS = ("bc_steps", "offline_steps", "online_steps")
ConfigError = validation.ConfigError
# What a user can fix: launchers print the message (it names the fix) and exit with 2.
USER_ERRORS = (ConfigError, DataError, checkpoint.CheckpointError, run_dir.RunDirError)


def tasks_of(config) -> tuple[int, ...]:
    """The tasks the rows train on: `config.tasks`, or the single `config.task`."""
    return tuple(int(t) for t in config.tasks) or (int(config.task),)


def env_name_of(config, task: int | None = None) -> str:
    """The environment of `task` (default the run's first task): config.json's `env_name`."""
    return names.env_name(config.domain, tasks_of(config)[0] if task is None else task)


def swept_hparam(config) -> str | None:
    """The traced hparam the rows of `config`'s agent sweep (its module's `SWEPT`), or None."""
    return get_agent(config.agent.agent_name).SWEPT


def swept_values(config) -> dict[str, tuple]:
    """{hparam: values} the rows sweep: `config.kl_budgets` (the values of the agent's swept
    hparam, whatever its name; the field keeps the name old run directories have), or the
    agent's own value; {} for an agent that sweeps nothing."""
    name = swept_hparam(config)
    if name is None:
        return {}
    return {name: tuple(config.kl_budgets) or (config.agent[name],)}


def check_config(config) -> train.Rows:
    """Fail before any work on a config that cannot run; returns the rows this launcher runs."""
    validation.check_run_config(config)
    if config.kl_budgets and swept_hparam(config) is None:
        raise ConfigError(
            f"config.kl_budgets={tuple(config.kl_budgets)}: {config.agent.agent_name} sweeps no "
            "hparam on the rows (TRQAM sweeps kl_budget, QAM inv_temp); leave it empty"
        )
    for task in tasks_of(config):
        parse_env_name(env_name_of(config, task))  # unknown domain or task -> DataError, fix
    try:
        rows = train.make_rows(
            config.seeds, swept_values(config), config.rows_part, config.rows_parts,
            tasks_of(config),
        )  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from None
    devices = jax.local_device_count()
    if len(rows) % devices:
        raise ConfigError(
            f"{len(rows)} rows (tasks x kl_budgets x seeds) do not divide among {devices} "
            f"devices; use a multiple of {devices} seeds"
        )
    return rows


def run_directory(config) -> str:
    """Where the run writes: `config.run_dir`, else runs/<agent>-<domain>-task<n> (one task) or
    runs/<agent>-<domain>-tasks<n>-<m>-... (several), + /part<i> for a part of a split sweep."""
    tasks = tasks_of(config)
    name = f"task{tasks[0]}" if len(tasks) == 1 else "tasks" + "-".join(map(str, tasks))
    out = config.run_dir or os.path.join(
        "runs", f"{config.agent.agent_name}-{config.domain}-{name}"
    )
    return os.path.join(out, f"part{config.rows_part}") if config.rows_parts > 1 else out


def experiment_name(config) -> str:
    """The experiment's name (W&B's group): its run directory's, the parts of a split sweep
    sharing the name of the directory above them."""
    out = run_directory(config)
    return os.path.basename(os.path.abspath(os.path.dirname(out) if config.rows_parts > 1 else out))


def config_record(config) -> dict:
    """The config as config.json holds it (env_name added: readers rely on it)."""
    record = dict(config.to_dict(), env_name=env_name_of(config))
    return json.loads(json.dumps(record, default=str))


def check_same_experiment(config, out: str) -> None:
    """Refuse to resume a run directory made by a config whose results would differ."""
    path = os.path.join(out, run_dir.CONFIG_FILE)
    if not os.path.exists(path):
        return
    changes = validation.config_differences(run_dir.read_json(path), config_record(config))
    if not changes:
        return
    listed = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
    if config.allow_config_change:
        change = {"time": time.time(), "changes": {k: list(v) for k, v in changes.items()}}
        run_dir.append_jsonl(os.path.join(out, run_dir.CONFIG_CHANGES_FILE), [change])
        print(f"Resuming {out} with changed fields (recorded): {listed}")
        return
    raise ConfigError(
        f"{out} holds another experiment; these fields differ from its config.json: {listed}. "
        "Pass another --config.run_dir for the new experiment, or "
        "--config.allow_config_change=True to resume this one with the new values."
    )


def finished_summary(config, out: str) -> dict | None:
    """The saved summary if the run already trained at least the steps `config` asks for."""
    path = os.path.join(out, run_dir.SUMMARY_FILE)
    if not os.path.exists(path):
        return None
    summary = run_dir.read_json(path)
    done = summary.get("steps", {})
    wanted = {name: config[name] for name in STAGE_STEPS}
    if all(done.get(name, -1) >= steps for name, steps in wanted.items()):
        return summary
    return None


def load_data(config):
    """The offline dataset, generated locally (and labelled so) when asked and absent.

    Only absent files are generated: a broken file, or one of the two missing, is an error
    naming it (nothing is overwritten).
    """
    data_dir = resolve_data_dir(config.dataset_dir or None)
    kwargs = dict(
        sparse=config.sparse, proportion=config.dataset_proportion, tasks=tasks_of(config)
    )
    try:
        return load_offline_data(env_name_of(config), data_dir, **kwargs)
    except DatasetNotFoundError:
        dataset = names.dataset_name_of(env_name_of(config))
        files = [os.path.join(data_dir, f"{dataset}{end}.npz") for end in ("", "-val")]
        if not config.generate_if_missing or any(os.path.exists(f) for f in files):
            raise
    from trqam_jax.data.generate import generate_dataset

    print(
        f"No dataset for {config.domain} in {data_dir}: generating {config.generate_episodes} "
        "episodes with OGBench's scripted oracles (GENERATED data, not the official release)."
    )
    generate_dataset(
        f"{config.domain}-v0",
        episodes=config.generate_episodes,
        seed=config.seed,
        out_dir=data_dir,
        workers=max(1, min(2, os.cpu_count() or 1)),
    )
    return load_offline_data(env_name_of(config), data_dir, **kwargs)


def data_source(data, config, mesh):
    """The dataset on the devices: `StaticData`, or a `ShardRotator` over a sharded release."""
    if data.shard_paths:
        loader = shard_loader(env_name_of(config), config.sparse, tasks=tasks_of(config))
        put = lambda tree: train.replicate(tree, mesh)
        return ShardRotator(data.shard_paths, loader, first=data.train, put=put)
    size = jnp.int32(len(data.train["rewards"]))
    return loop.StaticData(train.replicate(data.train, mesh), size)


class Prepared(NamedTuple):
    """What a launcher run needs, built from its config by `prepare` (nothing written yet).

    config: the run config; rows: the `train.Rows` it runs; out: its run directory; mesh: the
    devices' mesh the rows are sharded over; data: the loaded `OfflineData`; source: the dataset
    on the devices (`loop.StaticData` or `ShardRotator`); examples: (example obs (D,), example
    actions (H, A)), the shapes agents initialise from; agent: the agent module of the config.
    """

    config: Any
    rows: train.Rows
    out: str
    mesh: Any
    data: Any
    source: Any
    examples: tuple
    agent: Any


def prepare(config) -> Prepared:
    """Validate `config` (`check_config`), load its data and build what its stages run on.

    Writes nothing to the run directory (the data directory gets a generated dataset only when
    `generate_if_missing` asks for one). Raises the `USER_ERRORS` a user can fix.
    """
    rows = check_config(config)
    agent = get_agent(config.agent.agent_name)
    mesh = train.make_mesh(len(rows))
    data = load_data(config)
    examples = (
        jnp.zeros(data.train["observations"].shape[1]),
        jnp.zeros((config.agent.horizon, data.train["actions"].shape[1])),
    )
    source = data_source(data, config, mesh)
    return Prepared(config, rows, run_directory(config), mesh, data, source, examples, agent)


def run_keys(config) -> dict[str, jax.Array]:
    """The run's PRNG keys by use, all from `config.seed`: "init" (the agent's states),
    "bc_init" and "bc" (BC pretraining's states and training), "offline" (fine-tuning; the
    online stage folds in 1), "eval" (evaluation)."""
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    init_key, bc_key = jax.random.split(init_key)
    bc_init_key, bc_train_key = jax.random.split(bc_key)
    return {
        "init": init_key,
        "bc_init": bc_init_key,
        "bc": bc_train_key,
        "offline": train_key,
        "eval": eval_key,
    }


def initial_states(prepared: Prepared, agent=None, base=None):
    """Fresh states of `agent` (default the config's; `bc` for BC pretraining) for every row,
    leaves (R, ...), sharded over the mesh; a fine-tuning agent's swept values are set.

    Row r's state comes from `fold_in(key, key_ids[r])`, the key `run_keys` gives the role.
    `base`, if given, is the BC-pretrained field of every row (leaves (R, ...)) the agent starts
    fine-tuning from (`agent.with_pretrained_base`).
    """
    agent = agent or prepared.agent
    config, rows = prepared.config, prepared.rows
    key = run_keys(config)["bc_init" if agent is bc else "init"]
    states = train.init_rows(agent, config.agent, key, rows.key_ids, *prepared.examples)
    if agent is not bc:
        states = common.set_hparams(states, rows.swept)
    if base is not None:
        states = jax.vmap(agent.with_pretrained_base)(states, base)
    return train.shard_rows(states, prepared.mesh)


def offline_stage(prepared: Prepared, name: str = "offline", agent=None) -> loop.OfflineStage:
    """The `loop.OfflineStage` of `agent` (default the config's; `bc` for BC pretraining) on the
    prepared dataset, named `name` in logs and checkpoints, with the role's `run_keys` key."""
    agent = agent or prepared.agent
    key = run_keys(prepared.config)["bc" if agent is bc else "offline"]
    return loop.OfflineStage(name, agent, prepared.config, prepared.source, key, prepared.rows)


def loaded_base(config, rows, examples):
    """The base field of every row from `config.init_from` (checked against this run), or None.

    `init_from` is one of our run directories, or the reference's `params_<step>.pkl` (or a
    directory of them; `reference_checkpoint`).
    """
    if not config.init_from:
        return None
    key = jax.random.PRNGKey(0)  # only shapes are traced
    like = jax.eval_shape(lambda k: bc.init(k, config.agent, *examples).params["base"], key)
    ours = not reference_checkpoint.is_reference(config.init_from)
    loader = checkpoint if ours else reference_checkpoint
    return loader.load_base_params(config.init_from, rows.key_ids, like)


def pretrained_base(prepared: Prepared, log=None):
    """The BC-pretrained base field of every row, trained by the BC stage (or None: no BC);
    `log` receives its logged records (`loop.run_stage`)."""
    config = prepared.config
    if not config.bc_steps:
        return None
    states = initial_states(prepared, bc)
    stage = offline_stage(prepared, "bc", bc)
    states, _ = loop.run_stage(
        stage, states, config.bc_steps, config, prepared.out, prepared.rows, log=log
    )
    return states.params["base"]


def row_env_names(config, rows, per_row: int = 1) -> list[str]:
    """`per_row` environments of each row's own task, row after row (an `EnvPool`'s layout)."""
    return [env_name_of(config, int(task)) for task in rows.tasks for _ in range(per_row)]


def run(config) -> dict:
    """Run every stage of `config`; returns the summary also written to summary.json.

    A finished run (summary.json covering the steps asked for) returns its saved summary and
    does no work. Raises ConfigError, DataError, CheckpointError, RunDirError before any work when
    the config cannot run here, and loop.DivergenceError when training diverges. A run directory
    this call made is removed again when it fails before writing anything (`run_dir.made`). The
    summary's `run_dir` is where the run was found (a copied directory names itself).
    """
    check_config(config)
    out = run_directory(config)
    with run_dir.made(out), run_dir.locked(out):
        check_same_experiment(config, out)
        summary = finished_summary(config, out)
        if summary is not None:
            print(f"{out} has finished these steps; its saved summary:")
            return dict(summary, run_dir=out)
        # What _run opens to close when it ends, however it ends (the loggers).
        with contextlib.ExitStack() as closing:
            return _run(config, closing)


def _run(config, closing: contextlib.ExitStack) -> dict:
    start = time.perf_counter()
    prepared = prepare(config)
    agent, rows, out, data = prepared.agent, prepared.rows, prepared.out, prepared.data
    label = data.provenance["data_source"]
    print(f"Data: {data.provenance['dataset_name']} ({label.upper()}), run directory {out}")
    # Before anything is written: it may not fit.
    base = loaded_base(config, rows, prepared.examples)
    run_dir.write_json(os.path.join(out, run_dir.CONFIG_FILE), config_record(config))
    provenance = dict(
        data.provenance,
        versions=versions(),
        devices=[str(d) for d in jax.devices()],
        rows={"seeds": config.seeds, "row_ids": rows.ids.tolist(), "tasks": rows.tasks.tolist()}
        | {name: values.tolist() for name, values in rows.swept.items()}
        | {f"{name}_online": values for name, values in online_values(config, rows).items()},
    )
    run_dir.write_json(os.path.join(out, run_dir.PROVENANCE_FILE), provenance)
    run_loggers = loggers.Loggers(
        config.log_to, out, experiment_name(config), rows.columns(), config_record(config)
    )
    log = closing.enter_context(run_loggers).write

    if base is None:
        base = pretrained_base(prepared, log)
    states = initial_states(prepared, base=base)
    keys = run_keys(config)

    evaluate_fn = None
    if config.eval_episodes:
        per_row = max(1, min(config.eval_episodes, config.eval_envs // len(rows)))
        envs = make_envs(row_env_names(config, rows, per_row), len(rows) * per_row)
        evaluate_fn = loop.make_evaluator(config, envs, agent.act, keys["eval"], rows)
    states, final = loop.run_stage(
        offline_stage(prepared), states, config.offline_steps, config, out, rows, evaluate_fn,
        log=log,
    )  # fmt: skip
    if config.online_steps:
        envs = make_envs(row_env_names(config, rows), len(rows)).envs
        online_key = jax.random.fold_in(keys["offline"], 1)
        stage = loop.OnlineStage(agent, config, data.train, envs, online_key, rows)
        states, online_final = loop.run_stage(
            stage,
            states,
            config.online_steps,
            config,
            out,
            rows,
            evaluate_fn,
            log=log,
        )
        final = online_final if online_final is not None else final
    summary = {
        "wall_clock_s": time.perf_counter() - start,
        "data_source": label,
        "rows": len(rows),
        "tasks": rows.tasks.tolist(),
        "seeds": rows.seeds.tolist(),
        **{f"{name}s": values.tolist() for name, values in rows.swept.items()},
        **{f"{name}s_online": values for name, values in online_values(config, rows).items()},
        "steps": {name: config[name] for name in STAGE_STEPS},
        "start_success": start_success(out, rows) if final is not None else None,
        "final_success": None if final is None else final["success"].tolist(),
        "final_return": None if final is None else final["return"].tolist(),
        "peak_memory": memory.peak_memory(),
        "run_dir": out,
    }
    run_dir.write_json(os.path.join(out, run_dir.SUMMARY_FILE), summary)
    return summary


def online_values(config, rows) -> dict[str, list[float]]:
    """The values the online stage sets per row (`online.online_hparams`), recorded as
    `kl_budget_online` (provenance rows, train_metrics.jsonl) and `kl_budgets_online` (summary);
    none without an online stage."""
    values = online.online_hparams(config.agent, rows) if config.online_steps else {}
    return {name: column.tolist() for name, column in values.items()}


def start_success(out: str, rows) -> list[float] | None:
    """Per-row success of the policy fine-tuning started from (the offline stage's step 0)."""
    evals = run_dir.read_jsonl(os.path.join(out, run_dir.EVAL_FILE), required=False)
    start = [r["success"] for r in evals if r["stage"] == "offline" and r["step"] == 0]
    return start if len(start) == len(rows) else None  # rows are written in row order


def summary_lines(config, summary) -> list[str]:
    """A table of the final evaluation per row (task, seed, swept value), with the data label."""
    tag = " [GENERATED data]" if summary["data_source"] == "generated" else ""
    tasks = summary.get("tasks") or [tasks_of(config)[0]] * summary["rows"]
    several = len(set(tasks)) > 1
    where = f"{config.domain} tasks {sorted(set(tasks))}" if several else env_name_of(config)
    lines = [f"\n{config.agent.agent_name} on {where}{tag}"]
    # A summary saved before peak memory was recorded has none.
    peak = [memory.describe(summary["peak_memory"])] if summary.get("peak_memory") else []
    if summary["final_success"] is None:
        return lines + ["(no evaluation: config.eval_episodes = 0)", *peak]
    swept = {name: summary[f"{name}s"] for name in swept_values(config) if f"{name}s" in summary}
    online_budgets = summary.get("kl_budgets_online")
    if online_budgets is not None and online_budgets != swept.get("kl_budget"):
        swept["eps online"] = online_budgets
    start = summary.get("start_success") or [np.nan] * summary["rows"]
    header = [f"{'task':>5}"] * several + [f"{'seed':>5}", *(f"{n:>10}" for n in swept)]
    lines.append(" ".join(header + ["   start  success    return"]))
    for row, seed in enumerate(summary["seeds"]):
        task = f"{tasks[row]:>5} " if several else ""
        values = "".join(f" {v[row]:>10.3g}" for v in swept.values())
        success, ret = summary["final_success"][row], summary["final_return"][row]
        lines.append(f"{task}{seed:>5}{values} {start[row]:>8.2f} {success:>8.2f} {ret:>9.1f}")
    mean = np.mean(summary["final_success"])
    lines.append(
        f"mean success {np.mean(start):.3f} at the start of fine-tuning, {mean:.3f} at the end; "
        f"wall clock {summary['wall_clock_s']:.0f} s"
    )
    lines += peak
    out = summary.get("run_dir")
    if out:
        lines.append(f"Results in {out}; tables and plots: python -m experiments.report {out} "
                     f"--out {os.path.join(out, 'report')}")  # fmt: skip
    if config.get("expect"):
        lines.append(config.expect)
    return lines
