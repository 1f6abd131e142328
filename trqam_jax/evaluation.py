"""Evaluation rollouts on OGBench single-task environments, as in the paper's protocol.

Protocol: the deployed policy is the deterministic sampler; at a chunk boundary it is called once
and the H actions it returns are executed open loop before re-planning. An episode ends when the
environment terminates (OGBench single-task envs terminate at success) or truncates (time limit).
The episode's success is `info["success"]` of its last step, as in the reference evaluators.

Two evaluators with the same semantics:
- `evaluate`: all episodes of all seeds run in lockstep, one batched policy call per chunk boundary
  for every running environment. This is the one the launcher uses.
- `evaluate_sequential`: one episode at a time, one policy call per chunk; the simple baseline for
  the speed benchmark and the independent reference in the tests.

Environments come from `envs.make_envs` (made once, reused across evaluations, in this process or
in worker processes). Every episode is reset with its own integer seed (`default_reset_seeds`), so
results are deterministic given the seeds and a deterministic policy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from trqam_jax.envs import EnvPool, progress_bar
from trqam_jax.seeds import hash_seed

# (S, E, D) observations, key -> (S, E, H, A) action chunks.
BatchedPolicy = Callable[[np.ndarray, jax.Array], Any]
# seed index, (D,) observation, key -> (H, A) action chunk.
SinglePolicy = Callable[[int, np.ndarray, jax.Array], Any]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-episode outcomes, arranged (S, M): S seeds x M episodes per seed.

    Attributes:
      success: (S, M) float, 1.0 where the episode ended in success.
      episode_return: (S, M) float, undiscounted sum of rewards.
      length: (S, M) int, environment steps taken.
      policy_calls: (S, M) int, how many action chunks were planned for the episode.
      reset_seeds: (S, M) int, the seed each episode was reset with.
    """

    success: np.ndarray
    episode_return: np.ndarray
    length: np.ndarray
    policy_calls: np.ndarray
    reset_seeds: np.ndarray

    def per_seed(self) -> dict[str, np.ndarray]:
        """Per-seed means for logging: each value has shape (S,)."""
        return {
            "success": self.success.mean(axis=1),
            "return": self.episode_return.mean(axis=1),
            "length": self.length.mean(axis=1),
            "episodes": np.full(self.success.shape[0], self.success.shape[1], dtype=np.int64),
        }

    @property
    def total_steps(self) -> int:
        """Environment steps over all episodes."""
        return int(self.length.sum())


def default_reset_seeds(num_seeds: int, episodes_per_seed: int, base_seed: int = 0) -> np.ndarray:
    """Distinct reset seeds for every (seed, episode), shape (S, M), int64.

    Hashing (base_seed, s, m) with `seeds.hash_seed` keeps the seeds of different evaluation
    rounds (different `base_seed`) from overlapping, unlike consecutive integers.
    """
    seeds = np.empty((num_seeds, episodes_per_seed), dtype=np.int64)
    for s in range(num_seeds):
        for m in range(episodes_per_seed):
            seeds[s, m] = hash_seed(base_seed, s, m)
    return seeds


def _resolve_seeds(reset_seeds, num_seeds, episodes_per_seed, base_seed) -> np.ndarray:
    if reset_seeds is None:
        return default_reset_seeds(num_seeds, episodes_per_seed, base_seed)
    reset_seeds = np.asarray(reset_seeds, dtype=np.int64)
    if reset_seeds.shape != (num_seeds, episodes_per_seed):
        raise ValueError(
            f"reset_seeds has shape {reset_seeds.shape}, expected {(num_seeds, episodes_per_seed)}"
        )
    return reset_seeds


def _as_chunks(actions, leading: tuple[int, ...], action_dim: int) -> np.ndarray:
    """Policy output -> numpy (*leading, H, A); a single action (*leading, A) counts as H = 1."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.shape == (*leading, action_dim):
        actions = actions[..., None, :]
    if (
        actions.ndim != len(leading) + 2
        or actions.shape[: len(leading)] != leading
        or (actions.shape[-1] != action_dim)
    ):
        raise ValueError(
            f"policy returned shape {actions.shape}, expected {(*leading, 'H', action_dim)}"
        )
    # The agent already clips; clipping again is free and protects the env from stray values.
    return np.clip(actions, -1.0, 1.0)


def evaluate(
    envs: EnvPool,
    policy_fn: BatchedPolicy,
    key: jax.Array,
    *,
    num_seeds: int,
    episodes_per_seed: int,
    base_seed: int = 0,
    reset_seeds: np.ndarray | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> EvalResult:
    """Runs S x M episodes in lockstep with one batched policy call per chunk boundary.

    The pool's N environments are split into S groups of E = N // S (one group per seed). Episodes
    run in waves of E per seed; within a wave all episodes start together, so every running
    environment reaches a chunk boundary at the same step and one call plans all of them.
    Environments whose episode has ended stop stepping; their rows of the batch are filled with
    their last observation and the planned actions are discarded, which keeps the batch shape
    fixed (one compilation of a jitted policy).

    Args:
      envs: the pool from `envs.make_envs`; needs N >= S.
      policy_fn: (observations (S, E, D) float32, key) -> actions (S, E, H, A) in [-1, 1]
        e.g. over stacked per-seed agent states, one compiled call that also splits the key:
        `jax.jit(lambda st, o, k: jax.vmap(act)(st, o, jax.random.split(k, S)))` closed over
        the states. Outputs of shape (S, E, A) are taken as H = 1.
      key: PRNG key (jax.random.PRNGKey). The policy receives, for chunk c of wave w, key c of
        the stream of fold_in(key, w) (see `_KeyStream`), as raw uint32 key data.
      num_seeds: S, the leading axis the policy expects.
      episodes_per_seed: M.
      base_seed: picks the default reset seeds (see `default_reset_seeds`).
      reset_seeds: optional (S, M) integer reset seeds, overriding `base_seed`.
      progress: True for a tqdm bar over episodes, or a callback(done, total); off by default.
    Returns:
      EvalResult with (S, M) per-episode arrays; `.per_seed()` gives the per-seed means.
    """
    num_envs = len(envs)
    if num_seeds < 1 or episodes_per_seed < 1:
        raise ValueError("num_seeds and episodes_per_seed must be >= 1")
    if num_envs < num_seeds:
        raise ValueError(f"{num_envs} environments cannot run {num_seeds} seeds side by side")
    seeds = _resolve_seeds(reset_seeds, num_seeds, episodes_per_seed, base_seed)
    per_seed = min(num_envs // num_seeds, episodes_per_seed)
    # Environment (s, e) of the batch is pool index s * per_seed + e.
    flat = np.arange(num_seeds * per_seed).reshape(num_seeds, per_seed)

    shape = (num_seeds, episodes_per_seed)
    success = np.zeros(shape, np.float64)
    returns = np.zeros(shape, np.float64)
    lengths = np.zeros(shape, np.int64)
    calls = np.zeros(shape, np.int64)

    total = num_seeds * episodes_per_seed
    bar, callback = progress_bar(progress, total, unit="episode", desc="eval")
    done_count = 0
    obs = np.zeros((num_seeds, per_seed, envs.obs_dim), np.float32)

    for wave in range(math.ceil(episodes_per_seed / per_seed)):
        first = wave * per_seed
        count = min(per_seed, episodes_per_seed - first)  # the last wave may be partial
        running = np.zeros((num_seeds, per_seed), dtype=bool)
        running[:, :count] = True
        obs[:, :count] = envs.reset(
            flat[:, :count].ravel(), seeds[:, first : first + count].ravel()
        ).reshape(num_seeds, count, envs.obs_dim)
        keys = _KeyStream(jax.random.fold_in(key, wave))
        chunk = 0
        while running.any():
            # A copy: on CPU, jax may alias a numpy argument, and `obs` changes while the
            # policy's result could still be pending.
            actions = _as_chunks(
                policy_fn(obs.copy(), keys(chunk)), (num_seeds, per_seed), envs.action_dim
            )
            chunk += 1
            calls[:, first : first + count] += running[:, :count]
            rows, cols = np.nonzero(running)
            outcomes = envs.run_chunks(flat[rows, cols], actions[rows, cols])
            for s, e, (ob, rewards, done, succeeded) in zip(rows, cols, outcomes, strict=True):
                obs[s, e] = ob
                m = first + e
                for reward in rewards:  # step by step, as the sequential evaluator sums
                    returns[s, m] += reward
                lengths[s, m] += len(rewards)
                if done:
                    success[s, m] = succeeded
                    running[s, e] = False
                    done_count += 1
                    if callback is not None:
                        callback(done_count, total)
    if bar is not None:
        bar.close()
    return EvalResult(success, returns, lengths, calls, seeds)


def evaluate_sequential(
    envs: EnvPool,
    policy_fn: SinglePolicy,
    key: jax.Array,
    *,
    num_seeds: int,
    episodes_per_seed: int,
    base_seed: int = 0,
    reset_seeds: np.ndarray | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> EvalResult:
    """Runs the S x M episodes one at a time in the first environment of the pool.

    Same semantics as `evaluate` (reset seeds, open-loop chunks, termination and success rule),
    written as plainly as possible: the baseline of the speed benchmark and the reference the
    tests hold `evaluate` to.

    Args:
      envs: the pool from `envs.make_envs`; only envs.envs[0] is used.
      policy_fn: (seed index s, observation (D,) float32, key) -> actions (H, A) (or (A,)).
      key: PRNG key; chunk c of episode (s, m) gets key c of the stream of
        fold_in(fold_in(key, s), m) (see `_KeyStream`).
      num_seeds, episodes_per_seed, base_seed, reset_seeds, progress: as in `evaluate`.
    Returns:
      EvalResult with (S, M) per-episode arrays.
    """
    if not envs.envs:
        raise ValueError("evaluate_sequential needs in-process environments (num_workers=0)")
    env = envs.envs[0]
    seeds = _resolve_seeds(reset_seeds, num_seeds, episodes_per_seed, base_seed)
    shape = (num_seeds, episodes_per_seed)
    success = np.zeros(shape, np.float64)
    returns = np.zeros(shape, np.float64)
    lengths = np.zeros(shape, np.int64)
    calls = np.zeros(shape, np.int64)
    total = num_seeds * episodes_per_seed
    bar, callback = progress_bar(progress, total, unit="episode", desc="eval")
    for s in range(num_seeds):
        for m in range(episodes_per_seed):
            keys = _KeyStream(jax.random.fold_in(jax.random.fold_in(key, s), m))
            ob, _ = env.reset(seed=int(seeds[s, m]))
            queue: list[np.ndarray] = []
            done = False
            while not done:
                if not queue:
                    obs = np.asarray(ob, np.float32)
                    chunk = policy_fn(s, obs, keys(int(calls[s, m])))
                    queue = list(_as_chunks(chunk, (), envs.action_dim))
                    calls[s, m] += 1
                ob, reward, terminated, truncated, info = env.step(queue.pop(0))
                returns[s, m] += float(reward)
                lengths[s, m] += 1
                done = terminated or truncated
            success[s, m] = float(info.get("success", 0.0))
            if callback is not None:
                callback(s * episodes_per_seed + m + 1, total)
    if bar is not None:
        bar.close()
    return EvalResult(success, returns, lengths, calls, seeds)


class _KeyStream:
    """Key number i of a stream: split(fold_in(key, i // 256), 256)[i % 256], as raw key data.

    Keys are made 256 at a time and handed out as numpy uint32 data (the jax.random.PRNGKey
    layout, accepted by every jax.random function): one eager JAX op per key would cost about as
    much as a small policy call on CPU.
    """

    block = 256

    def __init__(self, key: jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        self.key = key
        self.cache: tuple[int, np.ndarray] = (-1, np.empty(0))

    def __call__(self, index: int) -> np.ndarray:
        block, offset = divmod(index, self.block)
        if self.cache[0] != block:
            keys = jax.random.split(jax.random.fold_in(self.key, block), self.block)
            self.cache = (block, np.asarray(keys))
        return self.cache[1][offset]


def per_seed_single_policy(act_fns: Sequence[Callable]) -> SinglePolicy:
    """Adapts per-seed `act(observations (1, D), key) -> (1, H, A)` to `evaluate_sequential`."""

    def policy(s, obs, key):
        return np.asarray(act_fns[s](obs[None], key))[0]

    return policy
