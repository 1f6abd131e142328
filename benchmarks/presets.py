"""The benchmark shapes: the paper configuration and smaller ones, their TRQAM state and batches.

paper: obs 37, action 5, H = 5 (cube-double's shapes), 4x512 networks, 10 critics, B = 256,
K = 10 (the reference implementation's setting); small: 2x64 networks, 3 critics, B = 64; tiny:
2x16 networks, 2 critics, B = 16 (the suite's --quick, seconds to compile on a CPU).
"""

import time

import jax
import jax.numpy as jnp

from configs import trqam as trqam_config
from trqam_jax.agents import trqam

SIZES = ("paper", "small", "tiny")
OBS_DIM, ACTION_DIM, HORIZON = 37, 5, 5
# The agent fields each preset changes from the paper defaults (configs/agent_defaults.py).
PRESET_OVERRIDES = {
    "paper": {},
    "small": dict(actor_hidden_dims=(64, 64), critic_hidden_dims=(64, 64), num_qs=3, batch_size=64),
    "tiny": dict(actor_hidden_dims=(16, 16), critic_hidden_dims=(16, 16), num_qs=2, batch_size=16),
}


def agent_config(size: str, unroll: int = 1, compute_dtype: str = "float32"):
    """TRQAM agent config of a preset (one of `SIZES`) with a flow-loop unroll factor."""
    if size not in PRESET_OVERRIDES:
        raise ValueError(f"unknown benchmark size {size!r}; expected one of {', '.join(SIZES)}")
    config = trqam_config.defaults()
    config.update(PRESET_OVERRIDES[size])
    config.flow_unroll = unroll
    config.compute_dtype = compute_dtype
    return config


def init_state(config):
    """One seed's TRQAM state for the benchmark shapes (obs 37, H = 5, action 5)."""
    example = (jnp.zeros(OBS_DIM), jnp.zeros((HORIZON, ACTION_DIM)))
    # One compiled program: run op by op, the initialisation compiles a hundred small ones.
    return jax.jit(lambda key: trqam.init(key, config, *example))(jax.random.PRNGKey(0))


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


def update_args(config):
    """(state, batch, key): the arguments of one seed's `trqam.update` at the benchmark shapes."""
    state = init_state(config)
    return state, synthetic_batch(jax.random.PRNGKey(1), config.batch_size), jax.random.PRNGKey(2)


def lower_update(config):
    """`jax.jit(trqam.update)` lowered (not compiled) for one seed of the benchmark shapes.

    Lowering needs only the arguments' shapes, so nothing is initialised.
    """
    return jax.jit(trqam.update).lower(*jax.eval_shape(lambda: update_args(config)))


def xla_gflop(stage) -> float:
    """XLA's FLOP count (GFLOP) of a lowered or compiled program; NaN where XLA gives none."""
    cost = stage.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax returned one dict per device
    return (cost or {}).get("flops", float("nan")) / 1e9


def compile_update(config):
    """(compiled jax.jit(trqam.update), compile seconds, XLA GFLOP of one update, its arguments).

    XLA counts a `lax.scan` body once, so only `flow_unroll = flow_steps` gives the true FLOPs.
    """
    args = update_args(config)
    start = time.perf_counter()
    compiled = jax.jit(trqam.update).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return compiled, compile_s, xla_gflop(compiled), args
