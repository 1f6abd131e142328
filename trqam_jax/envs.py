"""OGBench environments: creation, seeded resets, open-loop chunks and a reusable pool.

Evaluation (`evaluation.py`) and online fine-tuning (`online.py`) both step single-task OGBench
environments made here. MuJoCo compiles the model once per environment (about a second), so
environments are made once (`make_envs`) and reused; every episode is reset with its own integer
seed, which makes rollouts deterministic given the seeds and the actions.

`EnvPool` keeps its N environments in this process or spreads them over worker processes that step
them in parallel, one message per chunk. The module needs no JAX, so those workers stay light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence

import numpy as np


def headless_mujoco() -> None:
    """Selects MuJoCo's no-GL mode (MUJOCO_GL=disable) unless MuJoCo is imported or it is set.

    mujoco picks its GL backend at import; without a display the default (GLFW) only warns, but
    an explicit "disable" avoids touching GL libraries at all. State-based tasks need no GL.
    """
    if "mujoco" not in sys.modules:
        os.environ.setdefault("MUJOCO_GL", "disable")


def ignore_box_precision_warnings() -> None:
    """Silences gymnasium's warning that a Box's float64 bounds are cast to float32.

    OGBench declares its spaces with float64 bounds and float32 dtype, so every environment made
    warns twice; the cast is intended and nothing can be fixed by the user.
    """
    warnings.filterwarnings("ignore", r".*precision lowered by casting to float32", UserWarning)


def make_env(name: str, max_episode_steps: int | None = None):
    """One gymnasium environment (with its time limit) of an OGBench task.

    Args:
      name: an environment id (`cube-double-singletask-task1-v0`) or the dataset-style name the
        configs use (`cube-double-play-singletask-task1-v0`).
      max_episode_steps: overrides the registered time limit (None keeps OGBench's).
    """
    import gymnasium
    import ogbench  # noqa: F401  (registers the OGBench environments with gymnasium)

    ignore_box_precision_warnings()
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if name in gymnasium.envs.registry:
        return gymnasium.make(name, **kwargs)
    # Dataset-style names (e.g. cube-double-play-singletask-task1-v0): ogbench maps them to the
    # environment id; env_only skips the dataset files, which need not exist here.
    return ogbench.make_env_and_datasets(name, env_only=True, **kwargs)


def reset_env(env, seed) -> np.ndarray:
    """Resets `env` with the integer `seed`; returns the first observation as float32."""
    ob, _ = env.reset(seed=int(seed))
    return np.asarray(ob, np.float32)


def run_chunk(env, chunk: np.ndarray) -> tuple:
    """Steps `env` with the actions of `chunk` (H, A) until they run out or the episode ends.

    Returns (last observation (D,) float32, rewards (list of the steps taken), done, success):
    success is `info["success"]` of the last step when the episode ended, else 0.
    """
    rewards = []
    for action in chunk:
        ob, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        if terminated or truncated:
            return np.asarray(ob, np.float32), rewards, True, float(info.get("success", 0.0))
    return np.asarray(ob, np.float32), rewards, False, 0.0


@dataclasses.dataclass
class EnvPool:
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
                [reset_env(self.envs[i], seed) for i, seed in zip(indices, seeds, strict=True)]
            )
        jobs = [(i, int(seed)) for i, seed in zip(indices, seeds, strict=True)]
        return np.stack(self._scatter_gather("reset", jobs, indices))

    def run_chunks(self, indices: Sequence[int], chunks: np.ndarray) -> list[tuple]:
        """Executes chunk n (H, A) open loop in environment indices[n], stopping at episode end.

        Returns, per environment, what `run_chunk` returns. Environments are independent, so
        running each one's chunk in turn (here or in a worker process) gives the same episodes as
        stepping all of them one step at a time.
        """
        if not self.workers:
            return [
                run_chunk(self.envs[i], chunk) for i, chunk in zip(indices, chunks, strict=True)
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


def _worker_main(conn, env_names, max_episode_steps, indices, headless) -> None:
    """Worker process: owns the environments `indices` and serves reset / chunk commands."""
    try:
        if headless:
            headless_mujoco()
        envs = {i: make_env(env_names[i], max_episode_steps) for i in indices}
        conn.send(("ok", None))
        while True:
            command, jobs = conn.recv()
            if command == "close":
                return
            if command == "reset":
                conn.send(("ok", [reset_env(envs[i], seed) for i, seed in jobs]))
            else:
                conn.send(("ok", [run_chunk(envs[i], chunk) for i, chunk in jobs]))
    except Exception as error:  # hand the failure to the parent instead of dying silently
        import traceback

        conn.send(("error", f"{error!r}\n{traceback.format_exc()}"))


def _receive(conn):
    status, payload = conn.recv()
    if status != "ok":
        raise RuntimeError(f"environment worker failed: {payload}")
    return payload


def make_envs(
    env_name: str | Sequence[str],
    num_envs: int,
    max_episode_steps: int | None = None,
    headless: bool = True,
    num_workers: int = 0,
) -> EnvPool:
    """Creates `num_envs` environments of OGBench tasks, to be reused by every rollout.

    Args:
      env_name: an environment id or a dataset-style name (see `make_env`), or one such name
        per environment (e.g. the tasks of one domain: they share observation and action
        spaces).
      num_envs: N; e.g. `evaluate` runs N episodes at a time (N >= number of seeds, best S x M),
        online training steps one environment per agent row.
      max_episode_steps: overrides the registered time limit (None keeps OGBench's).
      headless: call `headless_mujoco` first (here and in the workers).
      num_workers: 0 keeps the environments in this process; W > 0 spreads them over W worker
        processes (spawned, so the parent's JAX threads are not forked) that step their
        environments in parallel, one message per chunk. Call `.close()` when done.
    Returns:
      EnvPool holding the environments (or handles to the workers).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    env_names = [env_name] * num_envs if isinstance(env_name, str) else list(env_name)
    if len(env_names) != num_envs:
        raise ValueError(f"{len(env_names)} environment names for num_envs={num_envs}")
    if headless:
        headless_mujoco()
    # One local env also tells the dimensions and time limit in worker mode.
    probe = make_env(env_names[0], max_episode_steps)
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    if len(obs_shape) != 1 or len(act_shape) != 1:
        raise ValueError(
            f"{env_name}: expected flat observations and actions, got {obs_shape} and {act_shape}"
        )
    spec = getattr(probe, "spec", None)
    pool = EnvPool(
        envs=[],
        name=env_name,
        obs_dim=obs_shape[0],
        action_dim=act_shape[0],
        num_envs=num_envs,
        max_episode_steps=spec.max_episode_steps if spec is not None else max_episode_steps,
    )
    if num_workers <= 0:
        pool.envs = [probe] + [make_env(name, max_episode_steps) for name in env_names[1:]]
        return pool
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for w in range(min(num_workers, num_envs)):
        owned = list(range(w, num_envs, num_workers))  # round robin balances partial waves
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(child, env_names, max_episode_steps, owned, headless),
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


def progress_bar(progress, total: int, unit: str, desc: str, **tqdm_options):
    """(tqdm bar or None, callback(done, total) or None) for a rollout's `progress` argument.

    `progress` is a callback(done, total), True for a tqdm bar over `total` units, or False.
    """
    if callable(progress):
        return None, progress
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit=unit, desc=desc, **tqdm_options)

        def update(done, _total):
            bar.update(done - bar.n)

        return bar, update
    return None, None
