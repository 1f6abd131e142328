"""Tiny agent configurations and synthetic chunked batches shared by the core tests."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np

OBS_DIM, HORIZON, ACTION_DIM = 6, 3, 2


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


def example_inputs():
    """(example_obs (D,), example_actions (H, A))."""
    return jnp.zeros(OBS_DIM), jnp.zeros((HORIZON, ACTION_DIM))


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
