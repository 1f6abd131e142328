"""The online stage: replay growth, stored transitions vs the environment, update schedule,
open-loop chunks, sparse rewards and reproducibility, on a tiny TRQAM and a generated dataset."""

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.trqam import get_config
from tests.tiny import tiny_config
from trqam_jax import loop, online, train
from trqam_jax.agents import trqam
from trqam_jax.data import load_offline_data, sparsify_rewards
from trqam_jax.envs import make_envs

ENV = "cube-double-play-singletask-task1-v0"
ROWS, HORIZON, MAX_STEPS = 2, 3, 12  # short episodes so that resets happen inside a test
START, TOTAL, UTD = 8, 14, 2
SEED = 3


@pytest.fixture(scope="module")
def setup(tiny_dataset_dir):
    """(offline train dict, reusable envs, init states factory)."""
    data = load_offline_data(ENV, tiny_dataset_dir)
    envs = make_envs(ENV, ROWS, max_episode_steps=MAX_STEPS).envs
    obs_dim = envs[0].observation_space.shape[0]
    action_dim = envs[0].action_space.shape[0]
    assert data.train["observations"].shape[1] == obs_dim
    config = tiny_config("trqam", horizon=HORIZON, batch_size=8)

    init = jax.jit(
        jax.vmap(
            lambda k: trqam.init(k, config, jnp.zeros(obs_dim), jnp.zeros((HORIZON, action_dim)))
        )
    )
    keys = jax.random.split(jax.random.PRNGKey(0), ROWS)
    return data.train, envs, lambda: init(keys)


class Result(NamedTuple):
    states: object
    replays: object
    offline: dict  # the stage's one device copy of the offline data
    episodes: dict
    logs: list  # (step, {metric: (R,) values}) of train_metrics.jsonl


class Recording(loop.OnlineStage):
    """The online stage, recording the replay sizes and parameters after every env step."""

    def start(self, states, step):
        self.seen = {}
        return super().start(states, step)

    def step(self, states, step):
        states, metrics, health = super().step(states, step)
        self.seen[step + 1] = (
            np.asarray(self.replays.size),
            (np.asarray(states.step), jax.tree.map(np.asarray, states.params)),
        )
        return states, metrics, health


def _run(setup, out, key=1, sparse=False, total=TOTAL, start=START, log_interval=5):
    """The online stage through the host loop (`loop.run_stage`), logging to `out`."""
    offline, envs, init_states = setup
    config = get_config("cube-double-play")
    config.agent = tiny_config("trqam", horizon=HORIZON, batch_size=8, discount=0.99)
    config.update(
        seed=SEED, sparse=sparse, start_training=start, utd=UTD, offline_steps=0,
        online_steps=total, log_interval=log_interval, eval_interval=total, save_interval=total,
    )  # fmt: skip
    rows = train.make_rows(ROWS, {})
    stage = Recording(trqam, config, offline, envs, jax.random.PRNGKey(key), rows)
    states, _ = loop.run_stage(stage, init_states(), total, config, str(out), rows)
    logs = {}
    with open(out / "train_metrics.jsonl") as f:
        for line in f:
            record = json.loads(line)
            logs.setdefault(record.pop("step"), []).append(record)
    table = [
        (step, {k: np.asarray([r.get(k, np.nan) for r in recs]) for k in recs[0] if k != "stage"})
        for step, recs in logs.items()
    ]
    result = Result(states, stage.replays, stage.offline, stage.interaction.episode_arrays(), table)
    return result, stage.seen


def _online_rows(result, r):
    """Row r's online transitions (numpy), in insertion order (the buffers never wrap here)."""
    return {k: np.asarray(v[r]) for k, v in result.replays.data.items()}


def _replay_env(env, stored, row, sparse):
    """Re-runs row `row`'s episodes from their reset seeds with the stored actions and checks
    every stored field against what the environment returns; returns the episode summaries."""
    episode, t, summaries = 0, 0, []
    total = len(stored["rewards"])
    while t < total:
        ob, _ = env.reset(seed=online.reset_seed(SEED, row, episode))
        ret = 0.0
        while True:
            np.testing.assert_array_equal(stored["observations"][t], np.float32(ob))
            ob, reward, term, trunc, info = env.step(stored["actions"][t])
            reward = float(sparsify_rewards(reward)) if sparse else reward
            np.testing.assert_array_equal(stored["next_observations"][t], np.float32(ob))
            assert stored["rewards"][t] == np.float32(reward)
            assert stored["terminals"][t] == float(term or trunc)
            assert stored["masks"][t] == 1.0 - float(term)
            ret += np.float32(reward)
            t += 1
            if term or trunc or t == total:
                break
        if term or trunc:
            summaries.append((float(info["success"]), ret, episode))
        episode += 1
    return summaries


def test_online_run_stores_env_transitions_and_updates_after_start(setup, tmp_path):
    offline, envs, init_states = setup
    n = len(offline["rewards"])
    initial = jax.tree.map(np.asarray, init_states().params)
    result, seen = _run(setup, tmp_path / "run")
    sizes = {step: size for step, (size, _) in seen.items()}
    params_at = {step: params for step, (_, params) in seen.items()}
    logs = result.logs

    # One online transition per env step per row, next to one untouched copy of the offline data.
    for step, size in sizes.items():
        np.testing.assert_array_equal(size, [step] * ROWS)
    assert result.replays.data["rewards"].shape[:2] == (ROWS, TOTAL)
    for k, v in offline.items():
        np.testing.assert_array_equal(np.asarray(result.offline[k]), v)

    # No update during the first START steps, UTD updates per step afterwards.
    for step, (counter, params) in params_at.items():
        np.testing.assert_array_equal(counter, [max(0, step - START) * UTD] * ROWS)
        changed = jax.tree.leaves(
            jax.tree.map(lambda a, b: not np.array_equal(a, b), initial, params)
        )
        assert any(changed) == (step > START)
    assert np.all(np.asarray(result.states.step) == (TOTAL - START) * UTD)
    for leaf in jax.tree.leaves(result.states):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))

    # Every stored online transition is what the environment returns from the seeded reset, and
    # the reported episodes are those of the environment.
    episodes = result.episodes
    assert len(episodes["row"]) >= ROWS  # MAX_STEPS < TOTAL: every row reset at least once
    for r in range(ROWS):
        summaries = _replay_env(envs[0], _online_rows(result, r), r, sparse=False)
        mine = episodes["row"] == r
        np.testing.assert_array_equal(episodes["episode"][mine], [s[2] for s in summaries])
        np.testing.assert_array_equal(episodes["success"][mine], [s[0] for s in summaries])
        np.testing.assert_allclose(episodes["return"][mine], [s[1] for s in summaries], rtol=1e-6)

    # Logs: windows of 5 steps; update metrics only once updates ran, everything per row.
    assert [step for step, _ in logs] == [5, 10, TOTAL]
    assert "critic_loss" not in logs[0][1] and "critic_loss" in logs[1][1]
    for step, metrics in logs:
        np.testing.assert_array_equal(metrics.pop("seed"), np.arange(ROWS))
        np.testing.assert_array_equal(metrics.pop("task"), np.ones(ROWS))
        np.testing.assert_array_equal(metrics["replay/size"], [n + step] * ROWS)
        for name, values in metrics.items():
            assert values.shape == (ROWS,), name
            if not name.startswith("online/") or name == "online/episodes":
                assert np.all(np.isfinite(values)), name
    assert sum(m["online/episodes"].sum() for _, m in logs) == len(episodes["row"])

    # Same key, same run, bit for bit; another key plans differently.
    again, _ = _run(setup, tmp_path / "again")
    jax.tree.map(np.testing.assert_array_equal, (again.states, again.replays), result[:2])
    other, _ = _run(setup, tmp_path / "other", key=2)
    assert not np.array_equal(
        np.asarray(other.replays.data["actions"][0]), np.asarray(result.replays.data["actions"][0])
    )


def test_open_loop_chunks_and_sparse_rewards(setup, tmp_path):
    """Without updates the policy is fixed, so every stored action is the planned chunk's: a new
    chunk from the current observation at each episode start and every H steps within it."""
    offline, envs, init_states = setup
    total = 2 * MAX_STEPS + 2
    result, _ = _run(setup, tmp_path, key=5, sparse=True, total=total, start=total)
    states = init_states()
    act = jax.jit(trqam.act)
    plan_key = jax.random.split(jax.random.PRNGKey(5))[1]
    for r in range(ROWS):
        stored = _online_rows(result, r)
        _replay_env(envs[0], stored, r, sparse=True)
        assert set(np.unique(stored["rewards"])) <= {-1.0, 0.0}
        state = jax.tree.map(lambda x, r=r: x[r], states)
        t = 0
        while t < total:
            episode_start = t
            while t < total:
                if (t - episode_start) % HORIZON == 0:
                    key = train.call_keys(plan_key, jnp.arange(ROWS), t + 1)[r]
                    chunk = np.clip(
                        np.asarray(act(state, stored["observations"][t][None], key)[0]), -1, 1
                    )
                np.testing.assert_allclose(
                    stored["actions"][t], chunk[(t - episode_start) % HORIZON], atol=1e-6
                )
                t += 1
                if stored["terminals"][t - 1]:
                    break
