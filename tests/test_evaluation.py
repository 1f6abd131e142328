"""Tests of the lockstep evaluator against the one-episode-at-a-time reference.

Stub environments make success, truncation and the chunk schedule exact and cheap; a short OGBench
cube-single episode checks that the two evaluators agree on a real task.
"""

import math

import jax
import numpy as np
import pytest

from trqam_jax import evaluation
from trqam_jax.envs import EnvPool, make_envs

OGBENCH_ENV = "cube-single-singletask-task1-v0"


class StubEnv:
    """Succeeds (terminates with info['success'] = 1) at step `target` drawn from the reset seed.

    Observation: (steps so far, target, reset seed mod 1000). Reward: action[0] at every step, so
    the return checks which actions were executed. `executed` records (step, action) pairs.
    """

    def __init__(self, time_limit: int, action_dim: int = 2):
        self.time_limit = time_limit
        self.action_dim = action_dim
        self.executed = []

    def reset(self, seed):
        rng = np.random.default_rng(seed)
        self.target = int(rng.integers(3, 2 * self.time_limit))  # some beyond the time limit
        self.steps = 0
        self.seed = seed
        self.done = False
        self.executed = []
        return self._obs(), {}

    def _obs(self):
        return np.array([self.steps, self.target, self.seed % 1000], np.float64)

    def step(self, action):
        assert not self.done, "stepped after the episode ended"
        action = np.asarray(action)
        assert action.shape == (self.action_dim,)
        self.executed.append((self.steps, action.copy()))
        self.steps += 1
        success = self.steps >= self.target
        truncated = self.steps >= self.time_limit
        self.done = success or truncated
        return self._obs(), float(action[0]), success, truncated, {"success": success}


def stub_pool(num_envs, time_limit, action_dim=2):
    envs = [StubEnv(time_limit, action_dim) for _ in range(num_envs)]
    return EnvPool(
        envs=envs,
        name="stub",
        obs_dim=3,
        action_dim=action_dim,
        num_envs=num_envs,
        max_episode_steps=time_limit,
    )


def scripted_chunk(obs, seed_index, horizon, action_dim):
    """Deterministic (..., D) -> (..., H, A): action h of a chunk encodes the planning step and h.

    Values stay inside [-1, 1] so the evaluator's clip leaves them unchanged.
    """
    steps = obs[..., 0:1, None]  # (..., 1, 1)
    h = np.arange(horizon, dtype=np.float32)[:, None]  # (H, 1)
    a = np.arange(action_dim, dtype=np.float32)  # (A,)
    return np.sin(0.1 * steps + 0.01 * h + 0.001 * a + 0.3 * seed_index).astype(np.float32)


def batched_scripted(horizon, action_dim):
    def policy(obs, key):
        del key
        seed_index = np.arange(obs.shape[0], dtype=np.float32)[:, None, None, None]
        return scripted_chunk(obs, seed_index, horizon, action_dim)

    return policy


def single_scripted(horizon, action_dim):
    def policy(s, obs, key):
        del key
        return scripted_chunk(obs, s, horizon, action_dim)

    return policy


def assert_same(a, b):
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.episode_return, b.episode_return)
    np.testing.assert_array_equal(a.length, b.length)
    np.testing.assert_array_equal(a.policy_calls, b.policy_calls)
    np.testing.assert_array_equal(a.reset_seeds, b.reset_seeds)


@pytest.mark.parametrize(
    "horizon, num_envs", [(1, 6), (3, 6), (5, 6), (4, 4), (4, 2)]
)  # pools of S x M, S x 2 (waves of 2 plus a partial wave) and S x 1
def test_lockstep_equals_sequential_on_stub(horizon, num_envs):
    S, M, limit = 2, 3, 17
    key = jax.random.PRNGKey(0)
    kwargs = dict(num_seeds=S, episodes_per_seed=M, base_seed=5)
    batched = evaluation.evaluate(
        stub_pool(num_envs, limit), batched_scripted(horizon, 2), key, **kwargs
    )
    single = evaluation.evaluate_sequential(
        stub_pool(1, limit), single_scripted(horizon, 2), key, **kwargs
    )
    assert_same(batched, single)
    # The seeds drew both outcomes, so the comparison covers success and truncation.
    assert 0 < batched.success.sum() < S * M


def test_success_and_time_limit_end_episodes():
    S, M, limit = 3, 8, 12
    pool = stub_pool(S * M, limit)
    result = evaluation.evaluate(
        pool, batched_scripted(5, 2), jax.random.PRNGKey(1), num_seeds=S, episodes_per_seed=M
    )
    targets = np.array([[pool.envs[s * M + m].target for m in range(M)] for s in range(S)])
    succeeded = targets <= limit
    assert succeeded.any() and (~succeeded).any()
    # Success stops the episode at the success step; otherwise the time limit stops it.
    np.testing.assert_array_equal(result.length, np.minimum(targets, limit))
    np.testing.assert_array_equal(result.success, succeeded.astype(float))
    # StubEnv.step asserts it is never stepped after its episode ended; count steps as well.
    for s in range(S):
        for m in range(M):
            assert len(pool.envs[s * M + m].executed) == result.length[s, m]
    per_seed = result.per_seed()
    np.testing.assert_allclose(per_seed["success"], succeeded.mean(axis=1))
    np.testing.assert_allclose(per_seed["length"], np.minimum(targets, limit).mean(axis=1))
    np.testing.assert_array_equal(per_seed["episodes"], [M] * S)


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_chunks_run_open_loop(horizon):
    S, M, limit = 2, 4, 13
    pool = stub_pool(S * M, limit)
    invocations = []

    keys = []

    def policy(obs, key):
        invocations.append(obs.copy())
        keys.append(np.asarray(key).tobytes())
        return batched_scripted(horizon, 2)(obs, key)

    result = evaluation.evaluate(
        pool, policy, jax.random.PRNGKey(2), num_seeds=S, episodes_per_seed=M
    )
    np.testing.assert_array_equal(result.policy_calls, np.ceil(result.length / horizon).astype(int))
    # One wave: the batched policy is called once per chunk of the longest episode.
    assert len(invocations) == math.ceil(result.length.max() / horizon)
    assert len(set(keys)) == len(keys)  # fresh noise for every planning call
    for s in range(S):
        for m in range(M):
            env = pool.envs[s * M + m]
            for step, action in env.executed:
                # The action executed at `step` is entry step % H of the chunk planned at the
                # last boundary, from the observation seen there (open loop in between).
                boundary = step - step % horizon
                planned = invocations[boundary // horizon][s, m]
                assert planned[0] == boundary
                expected = scripted_chunk(planned, s, horizon, 2)[step % horizon]
                np.testing.assert_array_equal(action, expected)
    assert result.episode_return.sum() == pytest.approx(
        sum(a[0] for env in pool.envs for _, a in env.executed), rel=1e-6
    )


def test_shapes_seeds_and_errors():
    seeds = evaluation.default_reset_seeds(3, 4, base_seed=0)
    assert seeds.shape == (3, 4) and seeds.dtype == np.int64
    other_round = evaluation.default_reset_seeds(3, 4, base_seed=1)
    assert len(set(seeds.ravel()) | set(other_round.ravel())) == 24
    np.testing.assert_array_equal(seeds, evaluation.default_reset_seeds(3, 4, base_seed=0))

    pool = stub_pool(4, 5)
    key = jax.random.PRNGKey(0)
    result = evaluation.evaluate(
        pool, batched_scripted(2, 2), key, num_seeds=2, episodes_per_seed=2
    )
    for field in ("success", "episode_return", "length", "policy_calls", "reset_seeds"):
        assert getattr(result, field).shape == (2, 2)
    assert all(v.shape == (2,) for v in result.per_seed().values())
    assert result.total_steps == result.length.sum()

    def wrong_shape(obs, key):
        return np.zeros((obs.shape[0], obs.shape[1], 2, 3), np.float32)  # A = 3, env has 2

    with pytest.raises(ValueError, match="policy returned shape"):
        evaluation.evaluate(pool, wrong_shape, key, num_seeds=2, episodes_per_seed=2)
    with pytest.raises(ValueError, match="cannot run 5 seeds"):
        evaluation.evaluate(pool, batched_scripted(2, 2), key, num_seeds=5, episodes_per_seed=1)
    with pytest.raises(ValueError, match="reset_seeds has shape"):
        evaluation.evaluate(
            pool,
            batched_scripted(2, 2),
            key,
            num_seeds=2,
            episodes_per_seed=2,
            reset_seeds=np.zeros((2, 3), np.int64),
        )


def test_progress_callback_counts_episodes():
    seen = []
    evaluation.evaluate(
        stub_pool(4, 6),
        batched_scripted(2, 2),
        jax.random.PRNGKey(0),
        num_seeds=2,
        episodes_per_seed=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(i, 6) for i in range(1, 7)]


@pytest.fixture(scope="module")
def ogbench_pool():
    # A short time limit keeps the real-environment tests to a few seconds.
    return make_envs(OGBENCH_ENV, num_envs=4, max_episode_steps=23)


def linear_chunk(obs, weights):
    """A fixed smooth policy of the observation: (..., D) -> (..., H, A) in (-1, 1)."""
    return np.tanh(np.einsum("...d,dha->...ha", obs, weights)).astype(np.float32)


def test_ogbench_lockstep_equals_sequential(ogbench_pool):
    pool, S, M, H = ogbench_pool, 2, 2, 5
    assert (pool.obs_dim, pool.action_dim) == (28, 5)
    weights = (
        np.random.default_rng(0)
        .normal(scale=0.3, size=(S, pool.obs_dim, H, pool.action_dim))
        .astype(np.float32)
    )
    seen_batched = {}

    def batched(obs, key):
        for s in range(S):
            for e in range(M):
                seen_batched.setdefault((s, e), []).append(obs[s, e].copy())
        return np.stack([linear_chunk(obs[s], weights[s]) for s in range(S)])

    def single(s, obs, key):
        return linear_chunk(obs, weights[s])

    key = jax.random.PRNGKey(3)
    kwargs = dict(num_seeds=S, episodes_per_seed=M, base_seed=11)
    a = evaluation.evaluate(pool, batched, key, **kwargs)
    b = evaluation.evaluate_sequential(pool, single, key, **kwargs)
    assert_same(a, b)
    # Nothing succeeds in 23 steps: the time limit ends every episode, with ceil(23 / 5) chunks.
    np.testing.assert_array_equal(a.length, np.full((S, M), 23))
    np.testing.assert_array_equal(a.policy_calls, np.full((S, M), 5))
    np.testing.assert_array_equal(a.success, np.zeros((S, M)))
    # The seeded resets differ between episodes and repeat exactly on a second evaluation.
    first_obs = [seen_batched[(s, e)][0] for s in range(S) for e in range(M)]
    assert len({o.tobytes() for o in first_obs}) == S * M
    seen_batched.clear()
    again = evaluation.evaluate(pool, batched, key, **kwargs)
    assert_same(a, again)
    np.testing.assert_array_equal(
        first_obs, [seen_batched[(s, e)][0] for s in range(S) for e in range(M)]
    )


def test_ogbench_dataset_style_name_and_jax_policy():
    pool = make_envs("cube-single-play-singletask-task1-v0", num_envs=1, max_episode_steps=4)
    assert (pool.obs_dim, pool.action_dim) == (28, 5)

    @jax.jit
    def policy(obs, key):
        # A jitted policy with per-call noise, shaped like vmap(agent.act): (S, E, H, A).
        noise = jax.random.normal(key, (*obs.shape[:2], 2, 5))
        return jax.numpy.clip(noise, -1.0, 1.0)

    result = evaluation.evaluate(
        pool, policy, jax.random.PRNGKey(0), num_seeds=1, episodes_per_seed=2
    )
    np.testing.assert_array_equal(result.length, [[4, 4]])
    np.testing.assert_array_equal(result.policy_calls, [[2, 2]])


def test_ogbench_worker_processes_match_in_process(ogbench_pool):
    S, M, H = 2, 3, 5  # 6 episodes on 4 environments: a full wave of 2 per seed, then a partial
    weights = (
        np.random.default_rng(1)
        .normal(scale=0.3, size=(S, ogbench_pool.obs_dim, H, ogbench_pool.action_dim))
        .astype(np.float32)
    )
    first_obs = {}

    def batched(obs, key):
        first_obs.setdefault(id(first_obs), obs.copy())  # the first call sees the first resets
        return np.stack([linear_chunk(obs[s], weights[s]) for s in range(S)])

    def single(s, obs, key):
        return linear_chunk(obs, weights[s])

    key = jax.random.PRNGKey(4)
    kwargs = dict(num_seeds=S, episodes_per_seed=M, base_seed=2)
    workers = make_envs(OGBENCH_ENV, 4, max_episode_steps=23, num_workers=2)
    processes = [p for p, _, _ in workers.workers]
    try:
        assert workers.envs == [] and len(workers) == 4 and len(workers.workers) == 2
        a = evaluation.evaluate(workers, batched, key, **kwargs)
        worker_first = first_obs.pop(id(first_obs))
        with pytest.raises(ValueError, match="in-process"):
            evaluation.evaluate_sequential(workers, single, key, **kwargs)
    finally:
        workers.close()
    b = evaluation.evaluate(ogbench_pool, batched, key, **kwargs)
    c = evaluation.evaluate_sequential(ogbench_pool, single, key, **kwargs)
    assert_same(a, b)
    assert_same(a, c)
    np.testing.assert_array_equal(worker_first, first_obs[id(first_obs)])
    assert len(processes) == 2 and not any(p.is_alive() for p in processes)
