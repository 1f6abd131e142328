"""Lean adjoint ODE and the adjoint-matching loss.

The lean adjoint drops the fine-field terms of the full adjoint: it is the gradient of the terminal
cost through the *reference* memoryless drift, so it needs one VJP of the reference field per step
and no gradient through the fine field.
"""

import chex
import jax
import jax.numpy as jnp
from jax import lax

from trqam_jax.flow import flow_times


def terminal_adjoint(q_fn, x_final):
    """adj_K = -grad_A mean_e Q_e(s, clip(A, -1, 1)) at A = x_K, per sample.

    Args:
      q_fn: actions (B, d) -> (E, B) ensemble Q-values (observations closed over).
      x_final: (B, d) terminal states x_K.
    Returns:
      (B, d) terminal adjoints.
    """

    def total_q(actions):
        # Summing over the batch gives each sample's own gradient (samples are independent).
        return jnp.sum(jnp.mean(q_fn(jnp.clip(actions, -1.0, 1.0)), axis=0))

    return -jax.grad(total_q)(x_final)


def lean_adjoint(ref_field, xs, adj_final, num_steps: int, unroll: int | bool = 1):
    """Integrate adj_k = adj_{k+1} + h J_k^T adj_{k+1} backwards from adj_K.

    J_k is the Jacobian in x of f_k(x) = 2 v_ref(x, t_k + h) - x / (t_k + h) at x_k; the time
    argument is shifted by h as in the reference implementation.

    Args:
      ref_field: velocity function (x (B, d), t (B, 1)) -> (B, d), the EMA reference field.
      xs: (K, B, d) states x_0..x_{K-1} of the rollout.
      adj_final: (B, d) terminal adjoint adj_K.
      num_steps: K.
      unroll: `lax.scan` unroll factor.
    Returns:
      (K, B, d) adjoints adj_0..adj_{K-1}, aligned with xs (no gradient).
    """
    h = 1.0 / num_steps
    batch = adj_final.shape[0]

    def step(adj_next, inputs):
        x, t = inputs
        t_shift = jnp.full((batch, 1), t + h)
        _, pullback = jax.vjp(lambda y: ref_field(y, t_shift), x)
        (field_vjp,) = pullback(adj_next)
        adj = adj_next + h * (2.0 * field_vjp - adj_next / (t + h))
        return adj, adj

    _, adjs = lax.scan(step, adj_final, (xs, flow_times(num_steps)), reverse=True, unroll=unroll)
    return lax.stop_gradient(adjs)


def adjoint_matching_loss(dv, adjs, sigma):
    """L_AM = mean_batch sum_k || 2 dv_k / sigma_k + sigma_k adj_k ||^2.

    Its minimiser in dv is -(sigma^2 / 2) adj.

    Args:
      dv: (K, B, d) v_fine - v_ref at (x_k, t_k).
      adjs: (K, B, d) lean adjoints.
      sigma: (K,) noise scales sigma_k.
    Returns:
      scalar loss.
    """
    chex.assert_equal_shape([dv, adjs])
    chex.assert_shape(sigma, dv.shape[:1])
    s = sigma[:, None, None]
    residual = 2.0 * dv / s + s * adjs
    return jnp.mean(jnp.sum(jnp.square(residual), axis=(0, 2)))
