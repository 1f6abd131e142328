"""Memoryless noise schedule and the training-time SDE rollout (ALGORITHM.md §5).

With the memoryless schedule the SDE `dx = (2 v(x, t) - x / t) dt + g(t) dW` has the same time
marginals as the flow ODE, so the terminal law of the fine-tuned SDE is the tilted policy.
"""

import jax
import jax.numpy as jnp
from jax import lax

from trqam_jax.flow import flow_times


def noise_scale_sq(t, h):
    """g^2 at flow time t, with the reference's shift by one step: 2 (1 - t + h) / (t + h).

    The shift keeps g finite at t = 0, where the memoryless schedule 2 (1 - t) / t diverges.
    """
    return 2.0 * (1.0 - t + h) / (t + h)


def memoryless_drift(field, x, t, h):
    """Drift of the memoryless SDE at time t, evaluated with the shifted time t + h in x / t."""
    return 2.0 * field(x, t) - x / (t + h)


def sde_rollout(fine_field, x0, key, num_steps: int, unroll: int | bool = 1):
    """Simulate the fine-tuned memoryless SDE over its K - 1 stochastic steps.

    For k = 0..K-2: x_{k+1} = x_k + h (2 v_fine(x_k, t_k) - x_k / (t_k + h)) + sqrt(h) g_k eps_k.
    The last, deterministic step is `final_step`: the caller takes it with the reference velocity
    at x_{K-1}, which the matching loss needs anyway (one network evaluation fewer).

    Args:
      fine_field: velocity function (x (B, d), t (B, 1)) -> (B, d).
      x0: (B, d) initial noise.
      key: PRNG key for the K - 1 Brownian increments.
      num_steps: K.
      unroll: `lax.scan` unroll factor.
    Returns:
      (K, B, d) the states x_0..x_{K-1} (no gradient).
    """
    h = 1.0 / num_steps
    batch, dim = x0.shape
    eps = jax.random.normal(key, (num_steps - 1, batch, dim))

    def step(x, inputs):
        t, noise = inputs
        t_col = jnp.full((batch, 1), t)
        g = jnp.sqrt(noise_scale_sq(t, h))
        x_next = x + h * memoryless_drift(fine_field, x, t_col, h) + jnp.sqrt(h) * g * noise
        return x_next, x

    x_last, xs_head = lax.scan(step, x0, (flow_times(num_steps)[:-1], eps), unroll=unroll)
    return lax.stop_gradient(jnp.concatenate([xs_head, x_last[None]], axis=0))


def final_step(x_last, ref_velocity_last, num_steps: int):
    """x_K = x_{K-1} + h v_ref(x_{K-1}, t_{K-1}): the deterministic last step with the EMA base."""
    return lax.stop_gradient(x_last + ref_velocity_last / num_steps)
