"""Chunked TD learning with a pessimistic critic ensemble."""

import jax.numpy as jnp


def pessimistic_value(q, rho):
    """mean_e Q_e - rho * std_e Q_e over the member axis 0; (E, B) -> (B,)."""
    return jnp.mean(q, axis=0) - rho * jnp.std(q, axis=0)


def td_target(rewards, masks, next_q, discount, horizon: int, rho):
    """y = R + gamma^H * mask * (mean_e Q'_e - rho * std_e Q'_e).

    Args:
      rewards: (B,) discounted chunk returns R.
      masks: (B,) 0 where the chunk reached a true terminal.
      next_q: (E, B) target-critic values at (s', A').
      discount: gamma.
      horizon: H, the chunk length.
      rho: pessimism coefficient.
    Returns:
      (B,) targets.
    """
    return rewards + discount**horizon * masks * pessimistic_value(next_q, rho)


def critic_loss(q, targets, weights):
    """mean_{e, batch}(weights * (Q_e - y)^2) with q (E, B), targets (B,), weights (B,)."""
    return jnp.mean(weights[None] * jnp.square(q - targets[None]))
