"""The one host loop around the compiled calls, and the stages it runs.

A stage is a sequence of compiled calls of `stride` steps each (`OfflineStage`: `lax.scan`ned
updates on a dataset; `OnlineStage`: one env step and its updates). `run_stage` drives any stage:
resume from the stage's checkpoint, then per call log (a call's metrics are fetched while the next
call runs), evaluate and checkpoint on their cadences. `experiment.run` plans the stages.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from tqdm import tqdm

from trqam_jax import checkpoint, online, run_dir, train
from trqam_jax.evaluation import default_reset_seeds, evaluate


class StaticData:
    """A dataset that fits on the device: the `ShardRotator` interface with nothing to rotate."""

    def __init__(self, data, size):
        self.current = (data, size)

    def advance(self):
        return self.current

    def seek(self, _index):
        return self.current


class OfflineStage:
    """`steps_per_call` updates per call on the dataset `data` (static or rotating shards).

    Args:
      name: the stage's name in logs and checkpoints ("bc", "offline").
      agent: the agent module whose `update` the stage runs.
      config: the run config (batch, chunking and cadences).
      data: `StaticData` or `ShardRotator`; `data.current` is (device arrays, size).
      key: the stage's PRNG key; call c of row r uses `train.call_keys(key, seeds, c)[r]`.
      rows: the `train.Rows` being trained.
    """

    offset = 0  # step of the run at which the stage's step 0 lies
    resumable = True
    evaluate_at_start = True

    def __init__(self, name, agent, config, data, key, rows):
        self.name, self.data, self.key, self.seeds = name, data, key, rows.seeds
        self.tasks = jnp.asarray(rows.task_columns)
        self.stride, self.shard_interval = config.steps_per_call, config.shard_interval
        cfg = config.agent
        self.call = train.make_train_call(
            agent.update, cfg.batch_size, cfg.horizon, cfg.discount, config.steps_per_call
        )

    def start(self, states, step):
        self.data.seek(step // self.shard_interval)
        return states

    def step(self, states, step):
        """Updates [step, step + stride): -> (states, per-row summaries, per-row health), both
        on the device (`train.make_train_call`)."""
        keys = train.call_keys(self.key, self.seeds, step // self.stride)
        states, summary, health = self.call(states, *self.data.current, keys, self.tasks)
        if (step + self.stride) % self.shard_interval == 0:
            self.data.advance()
        return states, summary, health

    def window(self, summary):
        return summary  # fetched by the host loop once the next call runs


class OnlineStage:
    """One environment per row (of the row's task), one env step per call, `utd` updates per
    step after `start_training` steps, on the offline dataset (one copy, shared by the rows)
    followed by each row's own online transitions (`replay.sample`).

    Environments cannot be checkpointed, so an interrupted online stage restarts from its
    beginning (`resumable = False`; the offline checkpoint is kept). Step t of the stage is step
    `offset + t` of the run.
    """

    name = "online"
    stride = 1
    resumable = False
    evaluate_at_start = False  # the offline stage's final evaluation is its start

    def __init__(self, agent, config, offline_train, envs, key, rows):
        self.offset = config.offline_steps
        self.config, self.offline_train, self.envs = config, offline_train, envs
        self.seed, self.row_seeds = config.seed, rows.seeds
        self.seeds_dev = jnp.asarray(rows.seeds, jnp.int32)
        self.tasks = jnp.asarray(rows.task_columns)
        self.update_key, self.plan_key = jax.random.split(key)
        cfg = config.agent
        self.insert, self.insert_and_update = train.make_replay_calls(
            agent.update, cfg.batch_size, cfg.horizon, cfg.discount, config.utd
        )
        self.plan = online.make_planner(agent.act)

    def start(self, states, step):
        # The donated step needs every leaf in its own buffer; fresh or BC-initialised states
        # share some (target_critic is critic, fine is base), so copy them once, leaf by leaf.
        states = jax.tree.map(jnp.copy, states)
        leaf = jax.tree.leaves(states)[0]
        sharding = leaf.sharding if isinstance(leaf.sharding, NamedSharding) else None
        # The offline dataset once per device, read by every row next to its own buffer.
        put = jax.device_put if sharding is None else lambda x: train.replicate(x, sharding.mesh)
        self.offline = put(self.offline_train)
        self.replays = online.stack_replays(
            self.offline_train, self.config.online_steps, len(self.envs), sharding
        )
        self.interaction = online.Interaction(
            self.envs, self.seed, self.row_seeds, self.config.sparse
        )
        self.totals, self.updates, self.env_steps = None, 0, step
        self.window_step, self.window_time = step, time.perf_counter()
        return states

    def step(self, states, step):
        """Env step t = step + 1: plan where needed, step, insert, update if t > start_training."""
        t = self.env_steps = step + 1
        plan = lambda obs: self.plan(states, obs, self.plan_key, t, self.seeds_dev)
        transitions = self.interaction.step(plan, t)
        if t <= self.config.start_training:
            self.replays = self.insert(self.replays, transitions)
            return states, None, None
        if self.totals is None:  # zeros of the metrics' shapes, so the call compiles once
            shapes = jax.eval_shape(
                self.insert_and_update, states, self.replays, None, transitions,
                self.update_key, t, self.seeds_dev, self.offline, self.tasks,
            )[2]  # fmt: skip
            self.totals = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        states, self.replays, self.totals = self.insert_and_update(
            states, self.replays, self.totals, transitions, self.update_key, t, self.seeds_dev,
            self.offline, self.tasks,
        )  # fmt: skip
        self.updates += self.config.utd
        return states, None, None  # divergence shows in the window's metrics and the states

    def window(self, _):
        """Host (R,) metrics of the window since the last log: update metrics (once updates
        ran), episode statistics, `replay/size` and `online/steps_per_s`; starts a new window."""
        out = {}
        if self.updates:
            out.update(train.mean_metrics(train.to_host(self.totals), self.updates))
            self.totals = jax.tree.map(jnp.zeros_like, self.totals)
            self.updates = 0
        out.update(self.interaction.window_statistics())
        offline_size = len(self.offline_train["rewards"])
        out["replay/size"] = offline_size + np.asarray(
            jax.device_get(self.replays.size), np.float64
        )
        now = time.perf_counter()
        rate = (self.env_steps - self.window_step) / max(now - self.window_time, 1e-9)
        out["online/steps_per_s"] = np.full(len(self.envs), rate)
        self.window_step, self.window_time = self.env_steps, now
        return out


class DivergenceError(RuntimeError):
    """Training produced non-finite values; the message names the step, the rows and the metric."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; the message says where and how to resume."""


def resume(stage, ckpt, states, out: str):
    """(states, step) from the stage's latest checkpoint, or (states, 0) if it has none or
    cannot resume; rows this stage logged after that step are dropped, so none is written twice.
    """
    step = ckpt.latest_step() if stage.resumable else None
    if step is not None:
        states = checkpoint.restore(ckpt, step, states)
        print(f"[{stage.name}] resuming from step {step - stage.offset}")
    local = 0 if step is None else step - stage.offset
    # Without a checkpoint nothing of this stage survives (its step-0 evaluation included).
    last_kept = stage.offset + local if step is not None else -1
    for name in (run_dir.TRAIN_METRICS_FILE, run_dir.EVAL_FILE):
        run_dir.truncate_jsonl(
            os.path.join(out, name),
            lambda row: row["stage"] != stage.name or row["step"] <= last_kept,
        )
    return states, local


_all_finite = jax.jit(jax.vmap(train.all_finite))


def _divergence(stage, rows, ckpt, start: int, health=None, values=None, finite=None) -> str:
    """The message for rows that went non-finite in the call starting at step `start`, or "".

    From the call's `train.nonfinite` health, its logged values (metrics other than episode
    statistics), or the rows' state check `finite` (R,) bool.
    """
    where = np.zeros(len(rows), bool)
    detail = ""
    if health is not None:
        bad_step = np.asarray(health["bad_step"])
        where = bad_step >= 0
        if where.any():
            first = int(np.argmax(where))
            start += int(bad_step[first])
            index = int(np.asarray(health["bad_metric"])[first])
            detail = f"a non-finite {stage.metric_names[index]!r}" if index >= 0 else ""
    elif values is not None:
        names = [n for n in sorted(values) if not n.startswith("online/")]
        bad = {n: ~np.isfinite(np.asarray(values[n], np.float64)) for n in names}
        where = np.any([bad[n] for n in names], axis=0) if names else where
        detail = next((f"a non-finite {n!r}" for n in names if bad[n].any()), "")
    elif finite is not None:
        where = ~np.asarray(finite)
    if not where.any():
        return ""
    described = ", ".join(
        f"row {rows.ids[r]} ("
        + ", ".join(f"{k} {v[r].item():g}" for k, v in rows.columns().items())
        + ")"
        for r in np.flatnonzero(where)
    )
    latest = ckpt.latest_step()
    kept = (
        f"the latest checkpoint (finite) is {ckpt.directory}/{latest}"
        if latest is not None
        else "no checkpoint of this stage was saved"
    )
    return (
        f"[{stage.name}] training diverged at step {stage.offset + start + 1}: {described} "
        f"{'went non-finite' if not detail else 'logged ' + detail} (parameters, losses or dual "
        f"state); nothing non-finite was saved, {kept}. Lower agent.lr (or clip harder with a "
        "smaller agent.grad_clip), then rerun with another --config.run_dir (or "
        "--config.allow_config_change=True)."
    )


def run_stage(stage, states, total: int, config, out: str, rows, evaluate_fn=None, log=None):
    """Run `stage` for `total` steps: resume, then per call log, evaluate and checkpoint.

    Cadences (in the stage's own steps): metrics every `config.log_interval` and at the end,
    evaluation (if `evaluate_fn`) at the start (`stage.evaluate_at_start`, on a fresh start),
    every `eval_interval` and at the end, a checkpoint every
    `save_interval` and at the end. Every call's per-row health is checked (one call late, so
    the device never waits for the host) and the states before any checkpoint or evaluation:
    non-finite values raise `DivergenceError` and are never saved. `log`, if given, is
    called as `log(file name, records)` with the records of every append to train_metrics.jsonl
    and eval.jsonl (`loggers.Loggers.write`).
    Returns:
      (states, the last evaluation's per-row results or None).
    Raises:
      DivergenceError, or Interrupted on Ctrl-C (the last checkpoint stays the latest).
    """

    def append(name, values, record):
        records = run_dir.append_rows(os.path.join(out, name), values, record, rows.columns())
        if log is not None:
            log(name, records)  # the loggers get exactly what the file got

    ckpt = checkpoint.manager(os.path.join(out, "checkpoints", stage.name))
    states, step = resume(stage, ckpt, states, out)
    states = stage.start(states, step)
    if evaluate_fn is not None and step == 0 and stage.evaluate_at_start:
        # The policy fine-tuning starts from (for TRQAM / QAM the BC policy: fine = base).
        start_record = {"step": stage.offset, "stage": stage.name}
        append(run_dir.EVAL_FILE, evaluate_fn(states), start_record)
    bar = tqdm(total=total, initial=step, desc=stage.name, unit="step", dynamic_ncols=True)
    results, start_time, start_step = None, time.perf_counter(), step
    pending = []  # (first step, record or None, values or None, health) not yet on the host

    def write_pending():
        for first, record, values, health in pending:
            values = None if values is None else train.to_host(values)
            if record is not None:
                append(run_dir.TRAIN_METRICS_FILE, values, record)
            message = _divergence(stage, rows, ckpt, first, health=train.to_host(health))
            message = message or _divergence(stage, rows, ckpt, first, values=values)
            if message:
                bar.close()
                raise DivergenceError(message)
        pending.clear()

    try:
        while step < total:
            called = time.perf_counter()
            states, metrics, health = stage.step(states, step)
            if step == start_step and health is not None:
                jax.block_until_ready(health)
                stage.metric_names = sorted(metrics)
                print(f"[{stage.name}] compiled and ran the first call in "
                      f"{time.perf_counter() - called:.1f} s")  # fmt: skip
            write_pending()  # the previous call's metrics, while this call runs on the device
            first, step = step, step + stage.stride
            bar.update(stage.stride)
            record = {"step": stage.offset + step, "stage": stage.name}
            end = step == total
            logged = step % config.log_interval == 0 or end
            values = stage.window(metrics) if logged else None
            pending.append((first, record if logged else None, values, health))
            evaluate_now = evaluate_fn is not None and (step % config.eval_interval == 0 or end)
            save_now = step % config.save_interval == 0 or end
            if evaluate_now or save_now:
                write_pending()  # a checkpoint never gets ahead of the metrics logged before it
                message = _divergence(stage, rows, ckpt, first, finite=_all_finite(states))
                if message:
                    raise DivergenceError(message)
            if evaluate_now:
                results = evaluate_fn(states)
                append(run_dir.EVAL_FILE, results, record)
            if save_now:
                checkpoint.save(ckpt, stage.offset + step, states)
            rate = (step - start_step) / max(time.perf_counter() - start_time, 1e-9)
            postfix = {"steps/s": f"{rate:.1f}"}
            if results is not None:
                postfix["success"] = f"{np.mean(results['success']):.2f}"
            bar.set_postfix(postfix, refresh=False)
        write_pending()
    except KeyboardInterrupt:
        bar.close()
        latest = ckpt.latest_step()
        raise Interrupted(
            f"interrupted at step {stage.offset + step} of the {stage.name} stage; rerun the same "
            f"command to resume from its checkpoint at step {latest}"
            if latest is not None
            else f"interrupted at step {stage.offset + step} of the {stage.name} stage, before "
            "its first checkpoint; rerun the same command to start it again"
        ) from None
    bar.close()
    return states, results


def make_evaluator(config, envs, act, key, rows):
    """`states -> per-row results`: batched lockstep episodes, one policy call per chunk.

    Reset seeds follow the rows' `key_ids`, so a part of a split sweep evaluates its rows on the
    same episodes as the whole sweep would, and a task's rows as its single-task run would.
    """
    policy = jax.jit(jax.vmap(act, in_axes=(0, 0, None)))
    episodes = config.eval_episodes
    reset_seeds = default_reset_seeds(rows.total, episodes, config.seed)[rows.key_ids]

    def run(states):
        result = evaluate(
            envs,
            lambda obs, k: np.asarray(policy(states, jnp.asarray(obs), k)),
            key,
            num_seeds=len(rows),
            episodes_per_seed=episodes,
            reset_seeds=reset_seeds,
        )
        return result.per_seed()

    return run
