"""Offline-to-online fine-tuning (ALGORITHM.md §12): environment interaction + compiled updates.

One environment per agent row (R rows = kl_budgets x seeds, stacked on a leading axis, as in
`train.py`), all stepped in lockstep on the host. Per row:
  - at a chunk boundary (start of an episode, or the previous chunk used up) the policy plans H
    actions from the current observation; they are executed open loop, as at evaluation. All rows
    that need a plan at a step get it from one batched `vmap(act)` call;
  - every env step is stored as one single-step transition in the row's own on-device replay
    buffer (`data/replay.py`), initialised with the whole offline dataset; `terminals` = terminated
    or truncated (the chunk sampler stops returns there), `masks` = 1 - terminated (success);
    rewards are the environment's, made sparse like the offline data when asked;
  - after `start_training` env steps, every env step also runs `utd` updates on chunk batches
    sampled from that buffer.
Insert + utd x (sample + update) for all rows is one jitted call per env step (buffers and agent
states donated, so updated in place); the host only steps environments and, at chunk boundaries,
waits for the plan. Calls are dispatched asynchronously, so environments step while the device
updates, except at chunk boundaries.

Order within env step t (1-indexed), as in the reference QAM online loop: plan with the current
parameters if needed, step the environments, insert, then update when t > start_training. So the
first `start_training` steps only collect data, and a plan at step t + 1 sees the update of step t.

Randomness is a pure function of (key, step, row seed) for the agent and of (seed, row seed,
episode number) for the environment resets, so equal inputs give equal runs. Rows that share a
seed (different kl_budgets) share keys and reset seeds, like `train.call_keys`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from trqam_jax.data import replay
from trqam_jax.data.datasets import sparsify_rewards
from trqam_jax.envs import make_envs, progress_bar, reset_env
from trqam_jax.seeds import hash_seed
from trqam_jax.train import LAST_VALUE_METRICS

# Mixed into the reset seeds so that online episodes never start where evaluation episodes do
# (evaluation hashes (base_seed, seed index, episode) with the same `hash_seed`).
_RESET_SALT = 0x0E11E


class OnlineResult(NamedTuple):
    """What `run_online` returns.

    states: the stacked agent states after the last step (leading axis R).
    replays: the stacked `ReplayState`s (data leaves (R, capacity, ...), size and pointer (R,)).
    episodes: per finished online episode, numpy arrays of equal length E: `row` (int), `episode`
      (the row's episode number, from 0), `step` (the env step, 1-indexed, at which it ended),
      `success` (float, info["success"] of its last step), `return` (sum of the stored rewards,
      i.e. sparse when `sparse`), `length` (int).
    """

    states: Any
    replays: replay.ReplayState
    episodes: dict[str, np.ndarray]


def reset_seed(seed: int, row_seed: int, episode: int) -> int:
    """The integer an online episode's environment is reset with (deterministic, no overlap)."""
    return hash_seed(_RESET_SALT, seed, row_seed, episode)


def row_keys(key: jax.Array, step, row_seeds: jax.Array) -> jax.Array:
    """Per-row keys of one env step: fold_in(fold_in(key, step), row seed); (R, 2) raw keys.

    Jittable (`step` may be traced); the update and the planning streams use different `key`s.
    """
    step_key = jax.random.fold_in(key, step)
    return jax.vmap(lambda s: jax.random.fold_in(step_key, s))(row_seeds)


def stack_replays(offline: dict, capacity: int, rows: int, sharding=None) -> replay.ReplayState:
    """R identical buffers holding `offline`, stacked on a leading row axis.

    Args:
      offline: dict of numpy arrays with the replay FIELDS, leading dimension N.
      capacity: rows per buffer (>= N).
      rows: R.
      sharding: optional `NamedSharding` of the row axis (e.g. the agent states'); the stacked
        buffers are then built shard by shard on their devices instead of all on one.
    Returns:
      ReplayState whose data leaves are (R, capacity, ...) and size / pointer (R,).
    """
    single = replay.init_replay(offline, capacity)
    tile = jax.jit(
        lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (rows, *x.shape)), tree),
        out_shardings=sharding,
    )
    return tile(single)


@functools.lru_cache(maxsize=16)
def _compiled(update: Callable, act: Callable, batch_size: int, horizon: int, discount, utd: int):
    """The jitted plan / insert / insert-and-update functions, cached so that repeated runs with
    the same agent and sizes (tests, resumed stages) do not recompile."""

    def plan(states, observations, key, step, row_seeds):
        keys = row_keys(key, step, row_seeds)
        # Each row plans for its own observation with its own key, so a row's plan does not
        # depend on how many rows run beside it.
        chunks = jax.vmap(lambda s, o, k: act(s, o[None], k)[0])(states, observations, keys)
        return jnp.clip(chunks, -1.0, 1.0)

    def insert(replays, transitions):
        return jax.vmap(replay.insert)(replays, transitions)

    def one_row(state, buffer, key):
        def body(state, step_key):
            sample_key, update_key = jax.random.split(step_key)
            batch = replay.sample(sample_key, buffer, batch_size, horizon, discount)
            return update(state, batch, update_key)

        if utd == 1:  # no scan: a third less compile time for the common case
            state, metrics = body(state, key)
            return state, jax.tree.map(lambda x: x[None], metrics)
        return jax.lax.scan(body, state, jax.random.split(key, utd))

    def accumulate(acc, metrics):
        # Sums over the logging window (last value for the dual state), so the host reads the
        # metrics once per log instead of once per step.
        return {
            name: values[:, -1]
            if name in LAST_VALUE_METRICS
            else acc[name] + jnp.sum(values.astype(jnp.float32), axis=1)
            for name, values in metrics.items()
        }

    def insert_and_update(states, replays, acc, transitions, key, step, row_seeds):
        replays = insert(replays, transitions)
        keys = row_keys(key, step, row_seeds)
        states, metrics = jax.vmap(one_row)(states, replays, keys)
        return states, replays, accumulate(acc, metrics)

    def empty_acc(states, replays, key, row_seeds):
        # Only the metric names and the row count are needed: trace, do not run.
        _, metrics = jax.eval_shape(jax.vmap(one_row), states, replays, row_keys(key, 0, row_seeds))
        return {name: jnp.zeros(v.shape[:1], jnp.float32) for name, v in metrics.items()}

    return (
        jax.jit(plan),
        jax.jit(insert, donate_argnums=0),
        jax.jit(insert_and_update, donate_argnums=(0, 1, 2)),
        empty_acc,
    )


def run_online(
    update: Callable,
    act: Callable,
    states,
    offline_train: dict,
    env_name: str,
    *,
    total_steps: int,
    batch_size: int,
    horizon: int,
    discount: float,
    key: jax.Array,
    seed: int = 0,
    row_seeds: np.ndarray | None = None,
    start_training: int = 5000,
    utd: int = 1,
    sparse: bool = False,
    max_episode_steps: int | None = None,
    envs: list | None = None,
    log_every: int = 1000,
    on_log: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    interval: int = 0,
    on_interval: Callable[[int, Any, replay.ReplayState], None] | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> OnlineResult:
    """Online fine-tuning of R stacked agents, one environment each (see the module docstring).

    Args:
      update: agent update `(state, batch, key) -> (state, metrics)` (e.g. `trqam.update`).
      act: agent policy `(state, observations (N, D), key) -> (N, H, A)` in [-1, 1].
      states: stacked agent states, leading axis R (from `train.init_rows` / the offline stage);
        copied once, so the passed-in value stays valid. A `NamedSharding` of their row axis is
        reused for the replay buffers.
      offline_train: the offline training set (numpy dict with the replay FIELDS, N rows, already
        post-processed: sparse rewards when `sparse`); every row's buffer starts with all of it.
      env_name: OGBench single-task name, env id or dataset style
        (`cube-double-play-singletask-task1-v0`).
      total_steps: T env steps per row; buffer capacity is N + T, so nothing is overwritten.
      batch_size, horizon, discount: chunk-batch sampling (B, H, gamma) as in offline training.
      key: PRNG key; update and planning keys derive from it, the step and the row seed.
      seed: run seed, for the environment reset seeds (`reset_seed`).
      row_seeds: (R,) int seed index of every row (`train.row_seeds`); default 0..R-1.
      start_training: env steps collected before the first update (5,000 in the paper).
      utd: updates per env step after that.
      sparse: store sparse rewards (-1 until success, 0 at success), like the offline option.
      max_episode_steps: time limit override (None keeps OGBench's).
      envs: optional R ready environments of `env_name` (reused to skip MuJoCo compilation).
      log_every: call `on_log` every this many env steps (and at the end).
      on_log: callback(step, metrics) with per-row numpy (R,) values: the update metrics averaged
        over the window (only once updates run), plus `online/success`, `online/return`,
        `online/length` (means over the episodes that ended in the window; NaN for a row with
        none), `online/episodes` (that count), `replay/size` and `online/steps_per_s` (env steps
        per second over the window, compilation included).
      interval: call `on_interval` every this many env steps (0: never); e.g. evaluation and
        checkpoints. It gets (step, states, replays); copy what it keeps, they are donated next.
      progress: True for a tqdm bar, or callback(step, total).
    Returns:
      OnlineResult(states, replays, episodes).
    """
    leaves = jax.tree.leaves(states)
    rows = int(leaves[0].shape[0])
    row_seeds = np.arange(rows) if row_seeds is None else np.asarray(row_seeds)
    if row_seeds.shape != (rows,):
        raise ValueError(f"row_seeds has shape {row_seeds.shape}, expected ({rows},)")
    if total_steps < 0 or start_training < 0 or utd < 1:
        raise ValueError("need total_steps >= 0, start_training >= 0 and utd >= 1")
    if envs is None:
        envs = make_envs(env_name, rows, max_episode_steps).envs
    if len(envs) != rows:
        raise ValueError(f"{len(envs)} environments for {rows} agent rows")

    # The donated step needs every leaf in its own buffer; fresh or BC-initialised states share
    # some (target_critic is critic, fine is base), so copy them once, leaf by leaf.
    states = jax.tree.map(jnp.copy, states)
    sharding = leaves[0].sharding if isinstance(leaves[0].sharding, NamedSharding) else None
    capacity = int(np.shape(offline_train["rewards"])[0]) + total_steps
    replays = stack_replays(offline_train, capacity, rows, sharding)
    plan, insert, insert_and_update, empty_acc = _compiled(
        update, act, batch_size, horizon, discount, utd
    )
    update_key, plan_key = jax.random.split(key)
    row_seeds_dev = jnp.asarray(row_seeds, jnp.int32)
    acc = None  # made at the first update, when the metric names are known
    acc_steps = 0

    obs_dtype = np.float32
    episode_count = np.zeros(rows, np.int64)
    obs = np.stack([reset_env(envs[r], reset_seed(seed, row_seeds[r], 0)) for r in range(rows)])
    action_dim = int(np.prod(envs[0].action_space.shape))
    chunks = np.zeros((rows, 1, action_dim), np.float32)
    position = np.full(rows, np.iinfo(np.int64).max)  # past the chunk end: plan at step 1
    ep_return = np.zeros(rows, np.float64)
    ep_length = np.zeros(rows, np.int64)
    episodes: dict[str, list] = {k: [] for k in ("row", "episode", "step", "success", "return")}
    episodes["length"] = []
    window_start = 0  # index into the episode lists where the current logging window begins

    bar, report = progress_bar(
        progress, total_steps, unit="step", desc="online", dynamic_ncols=True
    )
    window_step, window_time = 0, time.perf_counter()
    for step in range(1, total_steps + 1):
        need = position >= chunks.shape[1]
        if need.any():
            planned = np.asarray(plan(states, obs, plan_key, step, row_seeds_dev))
            if planned.shape[1] != chunks.shape[1]:
                chunks = np.zeros_like(planned)
            chunks[need] = planned[need]
            position[need] = 0
        actions = chunks[np.arange(rows), position]
        position += 1

        next_obs = np.empty_like(obs)
        rewards = np.empty(rows, np.float32)
        terminated = np.zeros(rows, np.float32)
        ended = np.zeros(rows, np.float32)
        reset_obs = {}
        for r, env in enumerate(envs):
            ob, reward, term, trunc, info = env.step(actions[r])
            next_obs[r] = np.asarray(ob, obs_dtype)
            rewards[r] = float(sparsify_rewards(reward)) if sparse else reward
            terminated[r], ended[r] = float(term), float(term or trunc)
            ep_return[r] += rewards[r]
            ep_length[r] += 1
            if term or trunc:
                for name, value in (
                    ("row", r),
                    ("episode", episode_count[r]),
                    ("step", step),
                    ("success", float(info.get("success", 0.0))),
                    ("return", ep_return[r]),
                    ("length", ep_length[r]),
                ):
                    episodes[name].append(value)
                episode_count[r] += 1
                ep_return[r], ep_length[r] = 0.0, 0
                reset_obs[r] = reset_env(env, reset_seed(seed, row_seeds[r], episode_count[r]))
                position[r] = np.iinfo(np.int64).max  # a new episode starts a new chunk

        transitions = {
            "observations": obs,
            "actions": actions,
            "rewards": rewards,
            "terminals": ended,
            "masks": 1.0 - terminated,
            "next_observations": next_obs,
        }
        if step > start_training:
            if acc is None:
                acc = empty_acc(states, replays, update_key, row_seeds_dev)
            states, replays, acc = insert_and_update(
                states, replays, acc, transitions, update_key, step, row_seeds_dev
            )
            acc_steps += utd
        else:
            replays = insert(replays, transitions)

        obs = next_obs.copy()
        for r, ob in reset_obs.items():
            obs[r] = ob

        if on_log is not None and (step % log_every == 0 or step == total_steps):
            metrics = _window_metrics(acc, acc_steps, episodes, window_start, rows, replays)
            now = time.perf_counter()
            rate = (step - window_step) / max(now - window_time, 1e-9)
            metrics["online/steps_per_s"] = np.full(rows, rate)
            on_log(step, metrics)
            window_step, window_time = step, now
            window_start = len(episodes["row"])
            if acc is not None:
                acc = jax.tree.map(jnp.zeros_like, acc)
            acc_steps = 0
        if on_interval is not None and interval and step % interval == 0:
            on_interval(step, states, replays)
        if report is not None:
            report(step, total_steps)
    if bar is not None:
        bar.close()
    arrays = {
        name: np.asarray(values, np.float64 if name in ("success", "return") else np.int64)
        for name, values in episodes.items()
    }
    return OnlineResult(states, replays, arrays)


def _window_metrics(acc, acc_steps, episodes, start, rows, replays) -> dict[str, np.ndarray]:
    """Per-row (R,) numpy metrics of one logging window (see `run_online`'s `on_log`)."""
    out = {}
    if acc is not None and acc_steps:
        for name, value in jax.device_get(acc).items():
            value = np.asarray(value, np.float64)
            out[name] = value if name in LAST_VALUE_METRICS else value / acc_steps
    ended_rows = np.asarray(episodes["row"][start:], np.int64)
    count = np.bincount(ended_rows, minlength=rows).astype(np.float64)
    for name in ("success", "return", "length"):
        values = np.asarray(episodes[name][start:], np.float64)
        total = np.bincount(ended_rows, weights=values, minlength=rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"online/{name}"] = np.where(count > 0, total / count, math.nan)
    out["online/episodes"] = count
    out["replay/size"] = np.asarray(jax.device_get(replays.size), np.float64)
    return out
