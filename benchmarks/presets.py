"""The benchmark shapes: the paper configuration and a small one, their TRQAM state and batches.

paper: obs 37, action 5, H = 5, 4x512 networks, 10 critics, B = 256, K = 10 (the reference
implementation's setting); small: 2x64 networks, 3 critics, B = 64.
"""

import time

import jax
import jax.numpy as jnp

from configs import trqam as trqam_config
from trqam_jax.agents import trqam

SIZES = ("paper", "small")
OBS_DIM, ACTION_DIM, HORIZON = 37, 5, 5


def agent_config(size: str, unroll: int = 1, compute_dtype: str = "float32"):
    """TRQAM agent config of a preset ("paper" or "small") with a flow-loop unroll factor."""
    config = trqam_config.defaults()
    if size == "small":
        config.actor_hidden_dims = config.critic_hidden_dims = (64, 64)
        config.num_qs = 3
        config.batch_size = 64
    config.flow_unroll = unroll
    config.compute_dtype = compute_dtype
    return config


def init_state(config):
    """One seed's TRQAM state for the benchmark shapes (obs 37, H = 5, action 5)."""
    return trqam.init(
        jax.random.PRNGKey(0), config, jnp.zeros(OBS_DIM), jnp.zeros((HORIZON, ACTION_DIM))
    )


def synthetic_batch(key, batch_size):
    """A random batch of the core layout with the benchmark shapes."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "observations": jax.random.normal(k1, (batch_size, OBS_DIM)),
        "actions": jnp.tanh(jax.random.normal(k2, (batch_size, HORIZON, ACTION_DIM))),
        "rewards": jax.random.uniform(k3, (batch_size,)),
        "masks": jnp.ones(batch_size),
        "valid": jnp.ones((batch_size, HORIZON)),
        "next_observations": jax.random.normal(k3, (batch_size, OBS_DIM)),
    }


def compile_update(config):
    """(compiled jax.jit(trqam.update), compile seconds, XLA GFLOP of one update, its arguments).

    XLA counts a `lax.scan` body once, so only `flow_unroll = flow_steps` gives the true FLOPs.
    """
    state = init_state(config)
    args = (state, synthetic_batch(jax.random.PRNGKey(1), config.batch_size), jax.random.PRNGKey(2))
    start = time.perf_counter()
    compiled = jax.jit(trqam.update).lower(*args).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return compiled, compile_s, cost.get("flops", float("nan")) / 1e9, args
