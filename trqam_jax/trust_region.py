"""Path-space KL estimate and the projected dual update of lambda."""

from typing import NamedTuple

import chex
import jax.numpy as jnp


class DualConfig(NamedTuple):
    """Static hyperparameters of the dual update; the budget itself is traced (sweepable).

    Field names are the agent config's (configs/trqam.py owns the defaults).
    """

    eta_lambda: float
    kl_ema_coef: float
    kl_clip_coef: float
    lambda_min: float
    lambda_max: float
    lam_scale: float


def path_kl(dv, g_sq, num_steps: int, horizon: int):
    """Discretised Girsanov estimate D_hat = mean_batch sum_k (2h / g_k^2) ||dv_k||^2 / H.

    Each term is the KL between the Gaussian transitions of the fine and reference Euler chains,
    whose means differ by 2 h dv_k under the common variance h g_k^2.

    Args:
      dv: (K, B, d) v_fine - v_ref at the rollout states.
      g_sq: (K,) squared noise scales g_k^2.
      num_steps: K (h = 1 / K).
      horizon: H, the chunk length (the estimate is per environment step).
    Returns:
      scalar D_hat.
    """
    chex.assert_rank(dv, 3)
    chex.assert_shape(g_sq, (num_steps,))
    chex.assert_axis_dimension(dv, 0, num_steps)
    h = 1.0 / num_steps
    per_path = jnp.sum((2.0 * h / g_sq)[:, None] * jnp.sum(jnp.square(dv), axis=-1), axis=0)
    return jnp.mean(per_path) / horizon


def effective_lambda(lam, config: DualConfig):
    """lambda_eff = lam_scale * lam, the value used in sigma_k = g_k / sqrt(lambda_eff)."""
    return config.lam_scale * lam


def ema_update(average, value, coef):
    """(1 - coef) * average + coef * value."""
    return (1.0 - coef) * average + coef * value


def dual_update(lam, kl_ema, kl_estimate, budget, config: DualConfig):
    """One projected dual-descent step on lambda with a clipped EMA of the KL estimate.

    Args:
      lam, kl_ema: scalars, the dual state.
      kl_estimate: scalar D_hat of this step.
      budget: scalar epsilon (traced, so that budgets can be vmapped like seeds).
    Returns:
      (lam, kl_ema, clipped) with `clipped` True where D_hat exceeded kl_clip_coef * epsilon.
    """
    kl_clipped = jnp.minimum(kl_estimate, config.kl_clip_coef * budget)
    kl_ema = ema_update(kl_ema, kl_clipped, config.kl_ema_coef)
    lam = jnp.clip(
        lam + config.eta_lambda * (kl_ema - budget), config.lambda_min, config.lambda_max
    )
    return lam, kl_ema, kl_estimate > config.kl_clip_coef * budget
