"""Memoryless noise schedule and the training-time SDE rollout.

With the memoryless schedule the SDE `dx = (2 v(x, t) - x / t) dt + g(t) dW` has the same time
marginals as the flow ODE, so the terminal law of the fine-tuned SDE is the tilted policy.
"""

import chex
import jax
import jax.numpy as jnp
from jax import lax

from trqam_jax.flow import flow_times


def noise_scale_sq(t, h):
    """g^2 at flow time t, with the reference's shift by one step: 2 (1 - t + h) / (t + h).

    The shift keeps g finite at t = 0, where the memoryless schedule 2 (1 - t) / t diverges.
    """
    return 2.0 * (1.0 - t + h) / (t + h)


def sde_step(x, velocity, t, h, noise):
    """One Euler-Maruyama step of the memoryless SDE from x at time t with v(x, t) = velocity.

    The drift 2 v - x / t is taken with the shifted time t + h in x / t, as the reference does.
    """
    g = jnp.sqrt(noise_scale_sq(t, h))
    return x + h * (2.0 * velocity - x / (t + h)) + jnp.sqrt(h) * g * noise


def _brownian_increments(key, num_steps: int, batch: int, dim: int):
    """(K - 1, B, d) standard normal increments of the K - 1 stochastic steps."""
    return jax.random.normal(key, (num_steps - 1, batch, dim))


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
    eps = _brownian_increments(key, num_steps, batch, dim)

    def step(x, inputs):
        t, noise = inputs
        return sde_step(x, fine_field(x, jnp.full((batch, 1), t)), t, h, noise), x

    x_last, xs_head = lax.scan(step, x0, (flow_times(num_steps)[:-1], eps), unroll=unroll)
    return lax.stop_gradient(jnp.concatenate([xs_head, x_last[None]], axis=0))


def ode_and_sde_rollout(paired_field, ode_x0, sde_x0, key, num_steps: int, unroll: int | bool = 1):
    """`euler_sample` from ode_x0 and `sde_rollout` from sde_x0 as one chain of K network calls.

    The two integrations share the network and the step count and do not depend on each other,
    so each flow step evaluates both in one batched call (K calls instead of K + K - 1 in a
    row). The numbers are those of the two separate functions with the same inputs and key.

    Args:
      paired_field: velocity function on the stacked states [ode rows; sde rows]:
        (x (N + B, d), t (N + B, 1)) -> (N + B, d), e.g. the fine field closed over
        concatenated observations.
      ode_x0: (N, d) initial noise of the deterministic sampler.
      sde_x0: (B, d) initial noise of the SDE.
      key: PRNG key for the SDE's Brownian increments (as in `sde_rollout`).
      num_steps: K.
      unroll: `lax.scan` unroll factor.
    Returns:
      ((N, d) clipped Euler actions, (K, B, d) SDE states x_0..x_{K-1} without gradient).
    """
    h = 1.0 / num_steps
    num_ode = ode_x0.shape[0]
    batch, dim = sde_x0.shape
    chex.assert_shape(ode_x0, (num_ode, dim))
    # The SDE takes K - 1 steps and the ODE K: the SDE half of the last call is discarded.
    eps = _brownian_increments(key, num_steps, batch, dim)
    eps = jnp.concatenate([eps, jnp.zeros((1, batch, dim), eps.dtype)], axis=0)

    def step(carry, inputs):
        ode_x, sde_x = carry
        t, noise = inputs
        v = paired_field(jnp.concatenate([ode_x, sde_x], axis=0), jnp.full((num_ode + batch, 1), t))
        ode_next = ode_x + h * v[:num_ode]
        return (ode_next, sde_step(sde_x, v[num_ode:], t, h, noise)), sde_x

    (ode_x, _), xs = lax.scan(step, (ode_x0, sde_x0), (flow_times(num_steps), eps), unroll=unroll)
    return jnp.clip(ode_x, -1.0, 1.0), lax.stop_gradient(xs)


def final_step(x_last, ref_velocity_last, num_steps: int):
    """x_K = x_{K-1} + h v_ref(x_{K-1}, t_{K-1}): the deterministic last step with the EMA base."""
    return lax.stop_gradient(x_last + ref_velocity_last / num_steps)
