"""Evaluation rollouts on OGBench single-task environments (ALGORITHM.md §12).

Protocol: the deployed policy is the deterministic sampler; at a chunk boundary it is called once
and the H actions it returns are executed open loop before re-planning. An episode ends when the
environment terminates (OGBench single-task envs terminate at success) or truncates (time limit).
The episode's success is `info["success"]` of its last step, as in the reference evaluators.

Two evaluators with the same semantics:
- `evaluate`: all episodes of all seeds run in lockstep, one batched policy call per chunk boundary
  for every running environment. This is the one the launcher uses.
- `evaluate_sequential`: one episode at a time, one policy call per chunk; the simple baseline for
  the speed benchmark and the independent reference in the tests.

Environments are created once (`make_eval_envs`; MuJoCo model compilation takes about a second per
environment) and reused across evaluations. Every episode is reset with its own integer seed, so
results are deterministic given the seeds and a deterministic policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

# (S, E, D) observations, key -> (S, E, H, A) action chunks.
BatchedPolicy = Callable[[np.ndarray, jax.Array], Any]
# seed index, (D,) observation, key -> (H, A) action chunk.
SinglePolicy = Callable[[int, np.ndarray, jax.Array], Any]


@dataclasses.dataclass
class EvalEnvs:
    """A reusable pool of N environments of one task, in this process or in worker processes.

    Attributes:
      envs: the gymnasium environments (each with a time limit) when they live in this process;
        empty when worker processes own them.
      name: the environment name they were made from.
      obs_dim: D, flat observation dimension.
      action_dim: A, action dimension (per step, not per chunk).
      num_envs: N.
      max_episode_steps: the time limit of every episode.
      workers: (process, connection, global indices of its envs) per worker process.
    """

    envs: list
    name: str
    obs_dim: int
    action_dim: int
    num_envs: int
    max_episode_steps: int | None
    workers: list = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return self.num_envs

    def reset(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Resets environments `indices` with `seeds`; returns their observations (n, D)."""
        if not self.workers:
            return np.stack(
                [_reset(self.envs[i], seed) for i, seed in zip(indices, seeds, strict=True)]
            )
        jobs = [(i, int(seed)) for i, seed in zip(indices, seeds, strict=True)]
        return np.stack(self._scatter_gather("reset", jobs, indices))

    def run_chunks(self, indices: Sequence[int], chunks: np.ndarray) -> list[tuple]:
        """Executes chunk n (H, A) open loop in environment indices[n], stopping at episode end.

        Returns, per environment: (last observation (D,), rewards (list of the steps taken), done,
        success). Environments are independent, so running each one's chunk in turn (here or in
        a worker process) gives the same episodes as stepping all of them one step at a time.
        """
        if not self.workers:
            return [
                _run_chunk(self.envs[i], chunk) for i, chunk in zip(indices, chunks, strict=True)
            ]
        return self._scatter_gather("chunk", list(zip(indices, chunks, strict=True)), indices)

    def _scatter_gather(self, command: str, jobs: list, indices: Sequence[int]) -> list:
        # All workers get their jobs before any answer is read, so they run concurrently.
        owner = {i: w for w, (_, _, owned) in enumerate(self.workers) for i in owned}
        per_worker: dict[int, list] = {}
        for job, i in zip(jobs, indices, strict=True):
            per_worker.setdefault(owner[i], []).append(job)
        for w, batch in per_worker.items():
            self.workers[w][1].send((command, batch))
        answers = {}
        for w, batch in per_worker.items():
            for job, answer in zip(batch, _receive(self.workers[w][1]), strict=True):
                answers[job[0]] = answer
        return [answers[i] for i in indices]

    def close(self) -> None:
        """Stops the worker processes (environments in this process need no closing)."""
        for process, conn, _ in self.workers:
            with contextlib.suppress(BrokenPipeError, OSError):  # the worker may be gone
                conn.send(("close", None))
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        self.workers = []


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


def _make_env(name: str, max_episode_steps: int | None):
    import gymnasium
    import ogbench  # noqa: F401  (registers the OGBench environments with gymnasium)

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if name in gymnasium.envs.registry:
        return gymnasium.make(name, **kwargs)
    # Dataset-style names (e.g. cube-double-play-singletask-task1-v0): ogbench maps them to the
    # environment id; env_only skips the dataset files, which need not exist here.
    return ogbench.make_env_and_datasets(name, env_only=True, **kwargs)


def _headless() -> None:
    if "mujoco" not in sys.modules:
        # mujoco picks its GL backend at import; without a display the default (GLFW) only warns,
        # but an explicit "disable" avoids touching GL libraries at all.
        os.environ.setdefault("MUJOCO_GL", "disable")


def _reset(env, seed) -> np.ndarray:
    ob, _ = env.reset(seed=int(seed))
    return np.asarray(ob, np.float32)


def _run_chunk(env, chunk: np.ndarray) -> tuple:
    """Steps `env` with the actions of `chunk` (H, A) until they run out or the episode ends."""
    rewards = []
    for action in chunk:
        ob, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return np.asarray(ob, np.float32), rewards, True, float(info.get("success", 0.0))
    return np.asarray(ob, np.float32), rewards, False, 0.0


def _worker_main(conn, env_name, max_episode_steps, indices, headless) -> None:
    """Worker process: owns the environments `indices` and serves reset / chunk commands."""
    try:
        if headless:
            _headless()
        envs = {i: _make_env(env_name, max_episode_steps) for i in indices}
        conn.send(("ok", None))
        while True:
            command, jobs = conn.recv()
            if command == "close":
                return
            if command == "reset":
                conn.send(("ok", [_reset(envs[i], seed) for i, seed in jobs]))
            else:
                conn.send(("ok", [_run_chunk(envs[i], chunk) for i, chunk in jobs]))
    except Exception as error:  # hand the failure to the parent instead of dying silently
        import traceback

        conn.send(("error", f"{error!r}\n{traceback.format_exc()}"))


def _receive(conn):
    status, payload = conn.recv()
    if status != "ok":
        raise RuntimeError(f"evaluation worker failed: {payload}")
    return payload


def make_eval_envs(
    env_name: str,
    num_envs: int,
    max_episode_steps: int | None = None,
    headless: bool = True,
    num_workers: int = 0,
) -> EvalEnvs:
    """Creates `num_envs` environments of one OGBench task, to be reused by every evaluation.

    Args:
      env_name: an environment id (`cube-double-singletask-task1-v0`) or the dataset-style name
        the configs use (`cube-double-play-singletask-task1-v0`).
      num_envs: N; `evaluate` runs N episodes at a time (N >= number of seeds, best S x M).
      max_episode_steps: overrides the registered time limit (None keeps OGBench's).
      headless: select MuJoCo's no-GL mode when MuJoCo was not yet imported and MUJOCO_GL is
        unset, so state-based tasks need no display or GL libraries.
      num_workers: 0 keeps the environments in this process; W > 0 spreads them over W worker
        processes (spawned, so the parent's JAX threads are not forked) that step their
        environments in parallel, one message per chunk. Call `.close()` when done.
    Returns:
      EvalEnvs holding the environments (or handles to the workers).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if headless:
        _headless()
    # One local env also tells the dimensions and time limit in worker mode.
    probe = _make_env(env_name, max_episode_steps)
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    if len(obs_shape) != 1 or len(act_shape) != 1:
        raise ValueError(
            f"{env_name}: expected flat observations and actions, got {obs_shape} and {act_shape}"
        )
    spec = getattr(probe, "spec", None)
    pool = EvalEnvs(
        envs=[],
        name=env_name,
        obs_dim=obs_shape[0],
        action_dim=act_shape[0],
        num_envs=num_envs,
        max_episode_steps=spec.max_episode_steps if spec is not None else max_episode_steps,
    )
    if num_workers <= 0:
        pool.envs = [probe] + [_make_env(env_name, max_episode_steps) for _ in range(num_envs - 1)]
        return pool
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for w in range(min(num_workers, num_envs)):
        owned = list(range(w, num_envs, num_workers))  # round robin balances partial waves
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(child, env_name, max_episode_steps, owned, headless),
            daemon=True,
        )
        process.start()
        pool.workers.append((process, parent, owned))
    try:
        for _, conn, _ in pool.workers:
            _receive(conn)
    except BaseException:
        pool.close()
        raise
    return pool


def default_reset_seeds(num_seeds: int, episodes_per_seed: int, base_seed: int = 0) -> np.ndarray:
    """Distinct reset seeds for every (seed, episode), shape (S, M), int64.

    Hashing (base_seed, s, m) with numpy's SeedSequence keeps the seeds of different evaluation
    rounds (different `base_seed`) from overlapping, unlike consecutive integers.
    """
    seeds = np.empty((num_seeds, episodes_per_seed), dtype=np.int64)
    for s in range(num_seeds):
        for m in range(episodes_per_seed):
            seeds[s, m] = np.random.SeedSequence([base_seed, s, m]).generate_state(1)[0]
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
    envs: EvalEnvs,
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
      envs: the pool from `make_eval_envs`; needs N >= S.
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
    bar, callback = _progress(progress, total)
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
    envs: EvalEnvs,
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
      envs: the pool from `make_eval_envs`; only envs.envs[0] is used.
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
    bar, callback = _progress(progress, total)
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


def _progress(progress, total):
    """(tqdm bar or None, callback(done, total) or None) for the `progress` argument."""
    if callable(progress):
        return None, progress
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="episode", desc="eval")

        def update(done, _total):
            bar.update(done - bar.n)

        return bar, update
    return None, None


def per_seed_single_policy(act_fns: Sequence[Callable]) -> SinglePolicy:
    """Adapts per-seed `act(observations (1, D), key) -> (1, H, A)` to `evaluate_sequential`."""

    def policy(s, obs, key):
        return np.asarray(act_fns[s](obs[None], key))[0]

    return policy
