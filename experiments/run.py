"""Seed sweeps compiled end to end: `python -m experiments.run --config=configs/trqam.py:DOMAIN`.

    python -m experiments.run                     # the quickstart (configs/quickstart.py)
    python -m experiments.run --config=configs/trqam.py:cube-double-play --config.seeds=8
    python -m experiments.run --config=configs/qam.py:scene-play --config.agent.inv_temp=3
    python -m experiments.run --config=configs/trqam.py:cube-triple-play \\
        --config.kl_budgets='(0.25,0.5,1.0)' --config.init_from=runs/bc-cube-triple

Stages: BC pretraining of the flow (`bc_steps`, skipped with `init_from`), then offline
fine-tuning (`offline_steps`). All rows (kl_budgets x seeds) are one vmapped program, sharded over
the local devices; rerunning the same command resumes from the latest checkpoint. See
docs/run_directory.md for what a run writes.
"""

import os
import sys
import time

# State-based tasks need no rendering; without a display MuJoCo's default GL backend only warns.
os.environ.setdefault("MUJOCO_GL", "disable")

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from configs import domains
from trqam_jax import checkpoint, run_dir, train
from trqam_jax.agents import get_agent
from trqam_jax.agents import bc as bc_agent
from trqam_jax.data import names
from trqam_jax.data.datasets import DataError, load_offline_data, resolve_data_dir
from trqam_jax.data.shards import ShardRotator, shard_loader
from trqam_jax.evaluation import default_reset_seeds, evaluate, make_eval_envs
from trqam_jax.online import run_online

config_flags.DEFINE_config_file(
    "config",
    "configs/quickstart.py",
    "Run config: configs/<agent>.py:<domain> (agents: trqam, qam, qam_e, fql; domains in "
    "configs/domains.py), then --config.<field>=value overrides, e.g. --config.seeds=8, "
    "--config.agent.kl_budget=0.5, --config.kl_budgets='(0.5,1.0)', --config.offline_steps=N.",
)
FLAGS = flags.FLAGS


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the fix."""


def env_name_of(config) -> str:
    return names.env_name(config.domain, config.task)


def check_config(config) -> None:
    """Fail before any work on a config that cannot run."""
    get_agent(config.agent.agent_name)  # unknown agent -> ValueError naming the known ones
    domains.check_domain(config.domain)
    positive = (
        "seeds",
        "steps_per_call",
        "log_interval",
        "eval_interval",
        "save_interval",
        "shard_interval",
    )
    for name in positive:
        if config[name] < 1:
            raise ConfigError(f"config.{name} must be >= 1, got {config[name]}")
    for name in ("bc_steps", "offline_steps", "log_interval", "eval_interval", "save_interval"):
        if config[name] % config.steps_per_call:
            raise ConfigError(
                f"config.{name}={config[name]} is not a multiple of config.steps_per_call="
                f"{config.steps_per_call}; the compiled loop runs whole calls"
            )
    if config.online_steps < 0 or config.start_training < 0 or config.utd < 1:
        raise ConfigError("config.online_steps and start_training must be >= 0, utd >= 1")
    if config.init_from and not os.path.isdir(config.init_from):
        raise ConfigError(
            f"config.init_from={config.init_from!r} does not exist; pass the run directory of "
            "a run with bc_steps > 0"
        )
    if config.kl_budgets and config.agent.agent_name != "trqam":
        raise ConfigError(
            "config.kl_budgets sweeps TRQAM's budget; leave it empty for other agents"
        )


def load_data(config):
    """The offline dataset, generated locally (and labelled so) when asked and missing."""
    data_dir = resolve_data_dir(config.dataset_dir or None)
    kwargs = dict(sparse=config.sparse, proportion=config.dataset_proportion)
    try:
        return load_offline_data(env_name_of(config), data_dir, **kwargs)
    except DataError:
        if not config.generate_if_missing:
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


class Stage:
    """One training stage: its compiled call, checkpoints and the part of the logs it owns."""

    def __init__(self, name, agent, config, out):
        self.name, self.agent, self.config, self.out = name, agent, config, out
        self.ckpt = checkpoint.manager(os.path.join(out, "checkpoints", name))
        agent_cfg = config.agent
        self.call = train.make_train_call(
            agent.update,
            agent_cfg.batch_size,
            agent_cfg.horizon,
            agent_cfg.discount,
            config.steps_per_call,
        )

    def resume(self, states):
        """(states, step) from the latest checkpoint of this stage, or (states, 0)."""
        step = self.ckpt.latest_step()
        if step is None:
            return states, 0
        states = checkpoint.restore(self.ckpt, step, states)
        # Drop what was logged after that checkpoint, so nothing is written twice.
        for name in ("train_metrics.jsonl", "eval.jsonl"):
            run_dir.truncate_jsonl(
                os.path.join(self.out, name),
                lambda row: row["stage"] != self.name or row["step"] <= step,
            )
        print(f"[{self.name}] resuming from step {step}")
        return states, step


def run_stage(
    stage: Stage, states, total: int, data, key, evaluate_fn, seeds, budgets, timings=None
):
    """Train `states` for `total` steps of `stage`, logging, evaluating and checkpointing.

    `timings`, if given, is a dict that accumulates the seconds spent in evaluation
    ("evaluate_s") and checkpoint saves ("checkpoint_s") (benchmarks/update_speed.py).
    Returns:
      (states, the last evaluation's per-row results or None).
    """
    config = stage.config
    timings = {} if timings is None else timings

    def timed(name, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return out

    states, step = stage.resume(states)
    data.seek(step // config.shard_interval)
    bar = tqdm(total=total, initial=step, desc=stage.name, unit="step", dynamic_ncols=True)
    results, start_time, start_step = None, time.perf_counter(), step
    metrics_path = os.path.join(stage.out, "train_metrics.jsonl")
    pending = []  # (record, summary) of calls whose metrics are not yet on the host

    def write_pending():
        for record, summary in pending:
            run_dir.append_rows(metrics_path, train.to_host(summary), record, seeds, budgets)
        pending.clear()

    while step < total:
        keys = train.call_keys(key, seeds, step // config.steps_per_call)
        states, summary = stage.call(states, *data.current, keys)
        # The previous call's metrics are fetched while this call runs, so the device does not
        # wait for the host's logging.
        write_pending()
        step += config.steps_per_call
        bar.update(config.steps_per_call)
        record = {"step": step, "stage": stage.name}
        if step % config.log_interval == 0:
            pending.append((record, summary))
        evaluate_now = evaluate_fn is not None and (
            step % config.eval_interval == 0 or step == total
        )
        save_now = step % config.save_interval == 0 or step == total
        if evaluate_now or save_now:
            write_pending()  # a checkpoint never gets ahead of the metrics logged before it
        if evaluate_now:
            results = timed("evaluate_s", evaluate_fn, states)
            run_dir.append_rows(
                os.path.join(stage.out, "eval.jsonl"), results, record, seeds, budgets
            )
        if save_now:
            timed("checkpoint_s", checkpoint.save, stage.ckpt, step, states)
        if step % config.shard_interval == 0:
            data.advance()
        rate = (step - start_step) / max(time.perf_counter() - start_time, 1e-9)
        postfix = {"steps/s": f"{rate:.1f}"}
        if results is not None:
            postfix["success"] = f"{np.mean(results['success']):.2f}"
        bar.set_postfix(postfix)
    write_pending()
    bar.close()
    return states, results


class StaticData:
    """A dataset that fits on the device: the `ShardRotator` interface with nothing to rotate."""

    def __init__(self, data, size):
        self.current = (data, size)

    def advance(self):
        return self.current

    def seek(self, _index):
        return self.current


def make_evaluator(config, envs, act, key, row_ids, total_rows: int):
    """`states -> per-row results`: batched lockstep episodes, one policy call per chunk.

    Reset seeds are those of the rows' global ids in a sweep of `total_rows`, so a part of a
    split sweep evaluates its rows on the same episodes as the whole sweep would.
    """
    policy = jax.jit(jax.vmap(act, in_axes=(0, 0, None)))
    episodes = config.eval_episodes
    reset_seeds = default_reset_seeds(total_rows, episodes, config.seed)[row_ids]

    def run(states):
        result = evaluate(
            envs,
            lambda obs, k: np.asarray(policy(states, jnp.asarray(obs), k)),
            key,
            num_seeds=len(row_ids),
            episodes_per_seed=episodes,
            reset_seeds=reset_seeds,
        )
        return result.per_seed()

    return run


def pretrained_base(config, context, key):
    """The BC-pretrained base field of every row: loaded (`init_from`), trained, or None."""
    if config.init_from:
        return checkpoint.load_base_params(config.init_from, context["row_ids"])
    if not config.bc_steps:
        return None
    stage = Stage("bc", bc_agent, config, context["out"])
    init_key, train_key = jax.random.split(key)
    states = train.init_rows(
        bc_agent, config.agent, init_key, context["row_ids"], *context["examples"]
    )
    states, _ = run_stage(
        stage,
        train.shard_rows(states, context["mesh"]),
        config.bc_steps,
        context["data"],
        train_key,
        None,
        context["seeds"],
        context["budgets"],
    )
    return states.params["base"]


def initial_states(config, agent, context, key):
    """Fine-tuning states of every row, with each row's budget and the pretrained base."""
    init_key, bc_key = jax.random.split(key)
    row_ids = context["row_ids"]
    states = train.init_rows(agent, config.agent, init_key, row_ids, *context["examples"])
    if "kl_budget" in states.hparams:
        budgets = jnp.asarray(context["budgets"])
        states = states.replace(hparams=dict(states.hparams, kl_budget=budgets))
    resuming = context["offline_ckpt"].latest_step() is not None
    base = None if resuming else pretrained_base(config, context, bc_key)
    if base is not None:
        states = jax.vmap(agent.with_pretrained_base)(states, base)
    return train.shard_rows(states, context["mesh"])


def run_online_stage(config, agent, states, data, context, key, evaluate_fn):
    """Offline-to-online: one environment per row, replay initialised with the whole dataset.

    Steps continue from the end of the offline stage. Environments cannot be checkpointed, so an
    interrupted online stage restarts from its beginning (the offline checkpoint is kept).
    """
    seeds, budgets, out = context["seeds"], context["budgets"], context["out"]
    offset = config.offline_steps
    ckpt = checkpoint.manager(os.path.join(out, "checkpoints", "online"))
    run_dir.truncate_jsonl(
        os.path.join(out, "train_metrics.jsonl"), lambda r: r["stage"] != "online"
    )
    run_dir.truncate_jsonl(os.path.join(out, "eval.jsonl"), lambda r: r["stage"] != "online")
    last = {}

    def on_log(step, values):
        record = {"step": offset + step, "stage": "online"}
        run_dir.append_rows(
            os.path.join(out, "train_metrics.jsonl"), values, record, seeds, budgets
        )

    def on_interval(step, states, _replays):
        record = {"step": offset + step, "stage": "online"}
        if evaluate_fn is not None:
            last["results"] = evaluate_fn(states)
            run_dir.append_rows(
                os.path.join(out, "eval.jsonl"), last["results"], record, seeds, budgets
            )
        checkpoint.save(ckpt, offset + step, states)

    result = run_online(
        agent.update,
        agent.act,
        states,
        data.train,
        env_name_of(config),
        total_steps=config.online_steps,
        batch_size=config.agent.batch_size,
        horizon=config.agent.horizon,
        discount=config.agent.discount,
        key=jax.random.fold_in(key, 1),
        seed=config.seed,
        row_seeds=seeds,
        start_training=config.start_training,
        utd=config.utd,
        sparse=config.sparse,
        log_every=config.log_interval,
        on_log=on_log,
        interval=config.eval_interval,
        on_interval=on_interval,
        progress=True,
    )
    return result.states, last.get("results")


def run(config) -> dict:
    """Run every stage of `config`; returns the summary also written to summary.json."""
    check_config(config)
    agent = get_agent(config.agent.agent_name)
    if jax.process_count() > 1 and config.rows_parts == 1:
        # Multi-host (jax.distributed): each process runs its own block of independent rows.
        config.rows_part, config.rows_parts = jax.process_index(), jax.process_count()
    all_budgets = train.row_budgets(
        config.kl_budgets, config.agent.get("kl_budget", float("nan")), config.seeds
    )
    row_ids = train.part_rows(len(all_budgets), config.rows_part, config.rows_parts)
    budgets = all_budgets[row_ids]
    seeds = train.row_seeds(len(all_budgets), config.seeds)[row_ids]
    rows = len(row_ids)
    mesh = train.make_mesh(rows)  # fails early if rows do not divide among devices
    out = config.run_dir or os.path.join(
        "runs", f"{config.agent.agent_name}-{config.domain}-task{config.task}"
    )
    if config.rows_parts > 1:
        out = os.path.join(out, f"part{config.rows_part}")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()

    data = load_data(config)
    label = data.provenance["data_source"]
    print(f"Data: {data.provenance['dataset_name']} ({label.upper()}), run directory {out}")
    # env_name is derived, but tools reading the run directory rely on it (docs/run_directory.md).
    run_dir.write_json(
        os.path.join(out, "config.json"), dict(config.to_dict(), env_name=env_name_of(config))
    )
    provenance = dict(
        data.provenance,
        versions=run_dir.versions(),
        devices=[str(d) for d in jax.devices()],
        rows={
            "seeds": config.seeds,
            "kl_budgets": budgets.tolist(),
            "row_ids": row_ids.tolist(),
        },
    )
    run_dir.write_json(os.path.join(out, "provenance.json"), provenance)

    if data.shard_paths:
        loader = shard_loader(env_name_of(config), config.sparse)
        put = lambda tree: train.replicate(tree, mesh)
        source = ShardRotator(data.shard_paths, loader, first=data.train, put=put)
    else:
        size = jnp.int32(len(data.train["rewards"]))
        source = StaticData(train.replicate(data.train, mesh), size)
    stage = Stage("offline", agent, config, out)
    context = {
        "row_ids": row_ids,
        "seeds": seeds,
        "budgets": budgets,
        "mesh": mesh,
        "out": out,
        "data": source,
        "offline_ckpt": stage.ckpt,
        "examples": (
            jnp.zeros(data.train["observations"].shape[1]),
            jnp.zeros((config.agent.horizon, data.train["actions"].shape[1])),
        ),
    }
    init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    states = initial_states(config, agent, context, init_key)
    evaluate_fn = None
    if config.eval_episodes:
        envs = make_eval_envs(env_name_of(config), rows * min(config.eval_episodes, 10))
        evaluate_fn = make_evaluator(config, envs, agent.act, eval_key, row_ids, len(all_budgets))
    states, final = run_stage(
        stage, states, config.offline_steps, source, train_key, evaluate_fn, seeds, budgets
    )
    if config.online_steps:
        states, online_final = run_online_stage(
            config, agent, states, data, context, train_key, evaluate_fn
        )
        final = online_final if online_final is not None else final
    summary = {
        "wall_clock_s": time.perf_counter() - start,
        "data_source": label,
        "rows": rows,
        "seeds": seeds.tolist(),
        "kl_budgets": budgets.tolist(),
        "final_success": None if final is None else final["success"].tolist(),
        "final_return": None if final is None else final["return"].tolist(),
    }
    run_dir.write_json(os.path.join(out, "summary.json"), summary)
    print_summary(config, summary)
    return summary


def print_summary(config, summary) -> None:
    """A table of the final evaluation per row, with the data label."""
    tag = " [GENERATED data]" if summary["data_source"] == "generated" else ""
    print(f"\n{config.agent.agent_name} on {env_name_of(config)}{tag}")
    if summary["final_success"] is None:
        print("(no evaluation: config.eval_episodes = 0)")
        return
    print(f"{'seed':>5} {'kl_budget':>10} {'success':>8} {'return':>9}")
    for seed, budget, success, ret in zip(
        summary["seeds"],
        summary["kl_budgets"],
        summary["final_success"],
        summary["final_return"],
        strict=True,
    ):
        print(f"{seed:>5} {budget:>10.3g} {success:>8.2f} {ret:>9.1f}")
    mean = np.mean(summary["final_success"])
    print(f"mean success {mean:.3f}; wall clock {summary['wall_clock_s']:.0f} s")


def main(_):
    logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines off the console
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        # Multi-host: each process drives its local devices; the env vars name the cluster.
        jax.distributed.initialize()
    try:
        run(FLAGS.config)
    except (ConfigError, DataError, checkpoint.CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
