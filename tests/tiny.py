"""Tiny agent configurations and states, synthetic chunked batches, and the rows-vs-separate-runs
check, shared by the core and baseline tests."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np

OBS_DIM, HORIZON, ACTION_DIM = 6, 3, 2
# Agent-config overrides of the baseline tests: one 16-unit layer, so every agent compiles fast.
SMALL_NETS = dict(
    actor_hidden_dims=(16,),
    critic_hidden_dims=(16,),
    num_qs=3,
    flow_steps=3,
    horizon=HORIZON,
    batch_size=16,
    lr=1e-3,
)
# The domain order of the published tables (QAM and FQL papers) the per-domain config tests follow.
PUBLISHED_ORDER = (
    "antmaze-large-navigate",
    "antmaze-giant-navigate",
    "humanoidmaze-medium-navigate",
    "humanoidmaze-large-navigate",
    "cube-double-play",
    "cube-triple-play",
    "cube-quadruple-play",
    "scene-play",
    "puzzle-3x3-play",
    "puzzle-4x4-play",
)


def tiny_config(agent_name="trqam", **overrides):
    """Paper defaults shrunk to 2x32 networks and 3 critics so a compile takes seconds."""
    config = importlib.import_module(f"configs.{agent_name}").defaults()
    config.actor_hidden_dims = (32, 32)
    config.critic_hidden_dims = (32, 32)
    config.num_qs = 3
    config.flow_steps = 5
    config.horizon = HORIZON
    config.batch_size = 16
    config.update(overrides)
    return config


def example_inputs(horizon=HORIZON):
    """(example_obs (D,), example_actions (horizon, A))."""
    return jnp.zeros(OBS_DIM), jnp.zeros((horizon, ACTION_DIM))


def synthetic_batch(key, batch_size=16):
    """A batch of the core layout whose actions are a smooth function of the observation."""
    obs_key, next_key, reward_key = jax.random.split(key, 3)
    obs = jax.random.normal(obs_key, (batch_size, OBS_DIM))
    # A fixed linear-tanh expert, so behaviour cloning has something learnable to fit.
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(OBS_DIM, HORIZON * ACTION_DIM)))
    actions = jnp.tanh(obs @ weights / 2.0).reshape(batch_size, HORIZON, ACTION_DIM)
    valid = jnp.ones((batch_size, HORIZON)).at[: batch_size // 4, -1].set(0.0)
    return {
        "observations": obs,
        "actions": actions,
        "rewards": jax.random.uniform(reward_key, (batch_size,)),
        "masks": jnp.ones(batch_size).at[-2:].set(0.0),
        "valid": valid,
        "next_observations": jax.random.normal(next_key, (batch_size, OBS_DIM)),
    }


_STATES = {}


def fresh(agent, config, seed=0):
    """`agent.init(PRNGKey(seed), config)`, built once per (agent, config, seed) for the session.

    Eager flax inits cost seconds on a busy CPU; states are immutable, so sharing them is safe.
    """
    cache_key = (agent.__name__, config.to_json_best_effort(), seed)
    if cache_key not in _STATES:
        _STATES[cache_key] = agent.init(
            jax.random.PRNGKey(seed), config, *example_inputs(config.horizon)
        )
    return _STATES[cache_key]


@jax.jit
def _batch(key):
    return synthetic_batch(key, 16)


def batch_of(key, horizon=HORIZON):
    """`synthetic_batch` of 16, cut to `horizon` steps."""
    batch = _batch(key)
    return dict(batch, actions=batch["actions"][:, :horizon], valid=batch["valid"][:, :horizon])


def assert_rows_equal_separate_runs(update, swept_update, agent, config, name, value):
    """Two rows side by side equal the same rows run separately, for two steps.

    Row 0 is `fresh(agent, config, 0)`, row 1 `fresh(agent, config, 1)` with its traced
    `hparams[name]` set to `value`; `swept_update` (a vmapped `update`) steps both at once.
    Returns (the stacked states, the swept metrics of the last step), leaves with a leading 2.
    """
    singles = [fresh(agent, config, seed) for seed in (0, 1)]
    singles[1] = singles[1].replace(hparams=dict(singles[1].hparams, **{name: jnp.asarray(value)}))
    states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *singles)
    for step in range(2):
        step_keys = jax.random.split(jax.random.PRNGKey(step), 2)
        batches = [batch_of(jax.random.fold_in(k, 1)) for k in step_keys]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *batches)
        states, swept_metrics = swept_update(states, stacked, step_keys)
        for i in range(2):
            singles[i], metrics = update(singles[i], batches[i], step_keys[i])
            jax.tree.map(
                lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=2e-4, atol=1e-5),
                (states, swept_metrics),
                (singles[i], metrics),
            )
    return states, swept_metrics
