"""The environment side of offline-to-online fine-tuning.

One environment per agent row (R rows stacked on a leading axis, as in `train.py`), all stepped
in lockstep on the host. Per row:
  - at a chunk boundary (start of an episode, or the previous chunk used up) the policy plans H
    actions from the current observation; they are executed open loop, as at evaluation. All rows
    that need a plan at a step get it from one batched `vmap(act)` call (`make_planner`);
  - every env step gives one single-step transition for the row's own on-device replay buffer
    (`stack_replays`, initialised with the whole offline dataset): `terminals` = terminated or
    truncated (the chunk sampler stops returns there), `masks` = 1 - terminated (success);
    rewards are the environment's, made sparse like the offline data when asked.
The updates (insert + `utd` x (sample + update) per env step) are `train.make_replay_calls`; the
host loop that runs both is `loop.OnlineStage`.

Order within env step t (1-indexed), as in the reference QAM online loop: plan with the current
parameters if needed, step the environments, insert, then update when t > start_training. So a
plan at step t + 1 sees the update of step t.

Randomness is a pure function of (key, step, row seed) for the plans and of (seed, row seed,
episode number) for the environment resets, so equal inputs give equal runs. Rows that share a
seed (different swept values) share keys and reset seeds, like `train.call_keys`.

Resuming (`Interaction.state` / `Interaction.resume`, `filled_replays` / `restored_replays`): the
buffers' filled part and the host state are checkpointed; an environment is not, but MuJoCo is
deterministic, so a row's env is reset with its current episode's seed and re-stepped with the
episode's stored actions, which brings it to the saved state bit for bit.
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax import checkpoint, train
from trqam_jax.data import replay
from trqam_jax.data.options import sparsify_rewards
from trqam_jax.envs import reset_env
from trqam_jax.seeds import hash_seed

# Mixed into the reset seeds so that online episodes never start where evaluation episodes do
# (evaluation hashes (base_seed, seed index, episode) with the same `hash_seed`).
_RESET_SALT = 0x0E11E
EPISODE_FIELDS = ("row", "episode", "step", "success", "return", "length")
# Host state of an `Interaction` (`state`, `resume`): per-row counters and pending chunks.
ROW_STATE = ("episode_count", "chunks", "position", "ep_return", "ep_length")


def reset_seed(seed: int, row_seed: int, episode: int) -> int:
    """The integer an online episode's environment is reset with (deterministic, no overlap)."""
    return hash_seed(_RESET_SALT, seed, row_seed, episode)


def stack_replays(like: dict, capacity: int, rows: int, sharding=None) -> replay.ReplayState:
    """R empty online buffers of `capacity` transitions, stacked on a leading row axis.

    The offline dataset is not copied into them: `replay.sample` reads it, shared, next to them.

    Args:
      like: dict of arrays with the replay FIELDS (e.g. the offline dataset), for the shapes.
      capacity: online transitions per buffer (the online steps, to keep all of them).
      rows: R.
      sharding: optional `NamedSharding` of the row axis (e.g. the agent states'); the stacked
        buffers are then built shard by shard on their devices instead of all on one.
    Returns:
      ReplayState whose data leaves are (R, capacity, ...) and size / pointer (R,).
    """
    single = jax.eval_shape(lambda: replay.init_replay(like, capacity))
    zeros = jax.jit(
        lambda: jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), single),
        out_shardings=sharding,
    )
    return zeros()


def filled_replays(replays: replay.ReplayState) -> dict:
    """The online transitions of the stage's stacked buffers: leaves (R, size, ...).

    The rows step in lockstep and the buffers hold every online step (their capacity is the
    stage's steps), so every buffer holds `size` transitions in insertion order from row 0.
    """
    size = int(np.max(jax.device_get(replays.size)))
    return {name: values[:, :size] for name, values in replays.data.items()}


def restored_replays(filled: dict, capacity: int, sharding=None) -> replay.ReplayState:
    """Stacked buffers of `capacity` holding `filled` (`filled_replays`' layout, on the host).

    Args:
      filled: the replay FIELDS, numpy leaves (R, n, ...), n <= capacity.
      capacity: online transitions per buffer.
      sharding: optional `NamedSharding` of the row axis.
    Returns:
      ReplayState of size n and pointer n mod capacity in every row, as `n` inserts leave it.
    """
    rows, size = filled["terminals"].shape[:2]

    def pad(values):
        buffer = np.zeros((rows, capacity, *values.shape[2:]), values.dtype)
        buffer[:, :size] = values
        return buffer

    counters = np.full(rows, size, np.int32), np.full(rows, size % capacity, np.int32)
    state = replay.ReplayState({name: pad(filled[name]) for name in replay.FIELDS}, *counters)
    return jax.device_put(state, sharding)


def online_hparams(agent_config, rows: train.Rows) -> dict[str, np.ndarray]:
    """The traced values the online stage sets on the rows, name -> (R,) float32.

    `kl_budget`: `agent.kl_budget_online` for every row, or, where it is None, each row's own
    offline budget (its swept value, else `agent.kl_budget`). Empty for agents without one.
    """
    if "kl_budget_online" not in agent_config:
        return {}
    online = agent_config.kl_budget_online
    offline = rows.swept.get("kl_budget", agent_config.kl_budget)
    budget = offline if online is None else online
    return {"kl_budget": np.broadcast_to(np.asarray(budget, np.float32), (len(rows),)).copy()}


@functools.lru_cache(maxsize=16)
def make_planner(act: Callable) -> Callable:
    """Jitted `(states, observations (R, D), key, step, seeds (R,)) -> (R, H, A)` chunks.

    Each row plans for its own observation with its own key (`train.call_keys`), so a row's plan
    does not depend on how many rows run beside it.
    """

    def plan(states, observations, key, step, seeds):
        keys = train.call_keys(key, seeds, step)
        chunks = jax.vmap(lambda s, o, k: act(s, o[None], k)[0])(states, observations, keys)
        return jnp.clip(chunks, -1.0, 1.0)

    return jax.jit(plan)


class Interaction:
    """R environments in lockstep, one per row: open-loop chunks, transitions, episode statistics.

    Args:
      envs: R environments of one task.
      seed: the run seed (reset seeds, `reset_seed`).
      row_seeds: (R,) seed index of every row.
      sparse: store sparse rewards (-1 until success, 0 at success), like the offline option.
    """

    def __init__(self, envs, seed: int, row_seeds: np.ndarray, sparse: bool):
        self.envs, self.seed, self.sparse = envs, seed, sparse
        self.row_seeds = np.asarray(row_seeds)
        rows = len(envs)
        if self.row_seeds.shape != (rows,):
            raise ValueError(f"row_seeds has shape {self.row_seeds.shape}, expected ({rows},)")
        self.episode_count = np.zeros(rows, np.int64)
        self.obs = np.stack(
            [
                reset_env(env, reset_seed(seed, s, 0))
                for env, s in zip(envs, self.row_seeds, strict=True)
            ]
        )
        action_dim = int(np.prod(envs[0].action_space.shape))
        self.chunks = np.zeros((rows, 1, action_dim), np.float32)
        self.position = np.full(rows, np.iinfo(np.int64).max)  # past the chunk end: plan first
        self.ep_return = np.zeros(rows, np.float64)
        self.ep_length = np.zeros(rows, np.int64)
        self.episodes: dict[str, list] = {name: [] for name in EPISODE_FIELDS}
        self.window_start = 0  # index into the episode lists where the logging window begins

    def step(self, plan: Callable, step: int) -> dict[str, np.ndarray]:
        """Plan where a chunk ended (`plan(observations (R, D)) -> (R, H, A)`), step every env.

        Args:
          step: the env step, 1-indexed (recorded with each finished episode).
        Returns:
          the transitions of this step, numpy leaves (R, ...) with the replay FIELDS.
        """
        rows = len(self.envs)
        need = self.position >= self.chunks.shape[1]
        if need.any():
            planned = np.asarray(plan(self.obs))
            if planned.shape[1] != self.chunks.shape[1]:
                self.chunks = np.zeros_like(planned)
            self.chunks[need] = planned[need]
            self.position[need] = 0
        actions = self.chunks[np.arange(rows), self.position]
        self.position += 1

        next_obs = np.empty_like(self.obs)
        rewards = np.empty(rows, np.float32)
        terminated = np.zeros(rows, np.float32)
        ended = np.zeros(rows, np.float32)
        reset_obs = {}
        for r, env in enumerate(self.envs):
            ob, reward, term, trunc, info = env.step(actions[r])
            next_obs[r] = np.asarray(ob, np.float32)
            rewards[r] = float(sparsify_rewards(reward)) if self.sparse else reward
            terminated[r], ended[r] = float(term), float(term or trunc)
            self.ep_return[r] += rewards[r]
            self.ep_length[r] += 1
            if term or trunc:
                reset_obs[r] = self._end_episode(r, step, float(info.get("success", 0.0)))
        transitions = {
            "observations": self.obs,
            "actions": actions,
            "rewards": rewards,
            "terminals": ended,
            "masks": 1.0 - terminated,
            "next_observations": next_obs,
        }
        self.obs = next_obs.copy()
        for r, ob in reset_obs.items():
            self.obs[r] = ob
        return transitions

    def _end_episode(self, row: int, step: int, success: float) -> np.ndarray:
        """Record row `row`'s finished episode and reset its env; returns the new observation."""
        values = (row, self.episode_count[row], step, success)
        values += (self.ep_return[row], self.ep_length[row])
        for name, value in zip(EPISODE_FIELDS, values, strict=True):
            self.episodes[name].append(value)
        self.episode_count[row] += 1
        self.ep_return[row], self.ep_length[row] = 0.0, 0
        self.position[row] = np.iinfo(np.int64).max  # a new episode starts a new chunk
        seed = reset_seed(self.seed, self.row_seeds[row], self.episode_count[row])
        return reset_env(self.envs[row], seed)

    def state(self) -> dict:
        """The host state to resume from (JSON-able): per-row counters and pending chunks
        (`ROW_STATE`, lists of R), every finished episode (`episode_arrays`' lists) and the
        logging window's start. The environments' state is the episodes' (see `resume`)."""
        rows = {name: np.asarray(getattr(self, name)).tolist() for name in ROW_STATE}
        episodes = {name: values.tolist() for name, values in self.episode_arrays().items()}
        return dict(rows, episodes=episodes, window_start=self.window_start)

    def resume(self, saved: dict, online: dict) -> None:
        """Continue from `saved` (`state()`), with every row's env in its saved state.

        Each row's env is reset with its current episode's seed and re-stepped with that
        episode's actions, the last `ep_length` transitions of the row; MuJoCo is deterministic,
        so this reaches the saved state, which the episode's last stored observation confirms.

        Args:
          saved: a `state()`.
          online: the rows' online transitions in insertion order, numpy leaves (R, n, ...)
            (`filled_replays`).
        Raises:
          CheckpointError when a re-stepped environment does not give the stored observation.
        """
        for name in ROW_STATE:
            setattr(self, name, np.asarray(saved[name], getattr(self, name).dtype))
        self.episodes = {name: list(saved["episodes"][name]) for name in EPISODE_FIELDS}
        self.window_start = saved["window_start"]
        size = online["actions"].shape[1]
        for r, env in enumerate(self.envs):
            self.obs[r] = reset_env(
                env, reset_seed(self.seed, self.row_seeds[r], self.episode_count[r])
            )
            for t in range(size - self.ep_length[r], size):
                ob = env.step(online["actions"][r, t])[0]
                self.obs[r] = np.asarray(ob, np.float32)
            if self.ep_length[r] and not np.array_equal(
                self.obs[r], online["next_observations"][r, size - 1]
            ):
                raise checkpoint.CheckpointError(
                    f"row {r}'s environment does not reproduce its stored episode (replaying its "
                    f"{self.ep_length[r]} actions gives another observation): the checkpoint was "
                    "written with other MuJoCo / OGBench versions (provenance.json); use those, "
                    "or delete the run's checkpoints/online to run the online stage anew"
                )

    def window_statistics(self) -> dict[str, np.ndarray]:
        """Per-row (R,) means over the episodes that ended since the last call, then a new window.

        `online/success`, `online/return`, `online/length` (NaN for a row with none) and
        `online/episodes` (that count).
        """
        start, rows = self.window_start, len(self.envs)
        ended_rows = np.asarray(self.episodes["row"][start:], np.int64)
        count = np.bincount(ended_rows, minlength=rows).astype(np.float64)
        out = {}
        for name in ("success", "return", "length"):
            values = np.asarray(self.episodes[name][start:], np.float64)
            total = np.bincount(ended_rows, weights=values, minlength=rows)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"online/{name}"] = np.where(count > 0, total / count, math.nan)
        out["online/episodes"] = count
        self.window_start = len(self.episodes["row"])
        return out

    def episode_arrays(self) -> dict[str, np.ndarray]:
        """Every finished episode, numpy arrays of equal length E: `row`, `episode` (the row's
        episode number, from 0), `step` (the env step at which it ended), `success`
        (info["success"] of its last step), `return` (sum of the stored rewards), `length`."""
        return {
            name: np.asarray(values, np.float64 if name in ("success", "return") else np.int64)
            for name, values in self.episodes.items()
        }
