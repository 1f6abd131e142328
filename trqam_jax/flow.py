"""Behaviour-cloning flow matching and the deterministic Euler sampler.

A `field` here is any function `field(x, t) -> velocity` with x of shape (B, d) and t of shape
(B, 1); agents build it by closing over parameters and observations, so these functions know
nothing of networks.
"""

import jax
import jax.numpy as jnp
from jax import lax


def flow_matching_loss(field, actions, weights, key):
    """L_BC = mean_batch(weights * mean_dim (v(x_tau, tau) - (A - x0))^2).

    Args:
      field: velocity function (x (B, d), t (B, 1)) -> (B, d).
      actions: (B, d) flat target action chunks A.
      weights: (B,) per-sample weights (valid[..., H-1] in the chunked setting).
      key: PRNG key for x0 ~ N(0, I) and tau ~ U[0, 1].
    Returns:
      scalar loss.
    """
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, actions.shape)
    tau = jax.random.uniform(time_key, (actions.shape[0], 1))
    x_tau = (1.0 - tau) * x0 + tau * actions
    err = jnp.mean(jnp.square(field(x_tau, tau) - (actions - x0)), axis=-1)
    return jnp.mean(weights * err)


def flow_times(num_steps: int):
    """t_k = k / K for k = 0..K-1, shape (K,)."""
    return jnp.arange(num_steps, dtype=jnp.float32) / num_steps


def euler_sample(field, x0, num_steps: int, unroll: int | bool = 1):
    """Deterministic Euler integration of dx/dt = v(x, t) from t = 0 to 1; returns clip(x_K).

    Args:
      field: velocity function (x (B, d), t (B, 1)) -> (B, d).
      x0: (B, d) initial noise.
      num_steps: K, the number of Euler steps (h = 1 / K).
      unroll: `lax.scan` unroll factor (True unrolls completely).
    Returns:
      (B, d) actions clipped to [-1, 1].
    """
    h = 1.0 / num_steps

    def step(x, t):
        return x + h * field(x, jnp.full((x.shape[0], 1), t)), None

    x, _ = lax.scan(step, x0, flow_times(num_steps), unroll=unroll)
    return jnp.clip(x, -1.0, 1.0)
