"""Part 1 of the known-answer experiment: the core pieces (`sde_rollout`, `lean_adjoint`,
`adjoint_matching_loss`, `path_kl`, `dual_update`) train a small fine field against a fixed
reference and the exact critic, TRQAM at each budget and QAM at each beta, at one K."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trqam_jax import gaussian_tilt as gt
from trqam_jax import networks
from trqam_jax.adjoint import adjoint_matching_loss, lean_adjoint, terminal_adjoint
from trqam_jax.flow import euler_sample, flow_times
from trqam_jax.known_answer.problem import (
    LAM_INIT,
    OBS_DIM,
    PROBLEM,
    Settings,
    as_field,
    dual_config,
    exact_base_field,
    field_module,
    make_optimizer,
    stacked,
)
from trqam_jax.sde import final_step, noise_scale_sq, sde_rollout
from trqam_jax.trust_region import dual_update, effective_lambda, ema_update, path_kl


class CoreState(NamedTuple):
    """One row's fine field, its optimizer and the dual state (lam, kl_ema)."""

    fine: Any
    opt_state: Any
    lam: jax.Array
    kl_ema: jax.Array


def warm_start(s: Settings, key):
    """Fine-field parameters fitted to the exact base field (the pipeline's fine = base).

    Regression of v_theta(x_t, t) on v_base(x_t, t) with x_t on the interpolation between
    N(0, I) and the base law (the flow-matching minimiser as the target: no label noise) and t on
    the finest flow-time grid k / max(K), which holds every coarser grid of `s.flow_steps`: the
    fields are only ever evaluated there, and D_hat weighs their error near t = 1 by
    2h / g^2 ~ 1 / (K - k + 1) (the last steps' weights are 1/2, 1/3, ...).
    Returns (params, mean squared error over the last 100 steps).
    """
    module, opt = field_module(s), make_optimizer(s.warm_lr, s.warm_steps, s.final_lr_frac)
    base = gt.flow_velocity(gt.Moments(PROBLEM.mu0, PROBLEM.cov0))
    chol = jnp.asarray(np.linalg.cholesky(PROBLEM.cov0), jnp.float32)
    mu0 = jnp.asarray(PROBLEM.mu0, jnp.float32)
    grid = max(s.flow_steps)
    init_key, run_key = jax.random.split(key)
    params = networks.init_vector_field(init_key, module, OBS_DIM, mu0.shape[0])

    def step(carry, key):
        params, opt_state = carry
        k0, k1, kt = jax.random.split(key, 3)
        x0 = jax.random.normal(k0, (s.warm_batch, mu0.shape[0]))
        x1 = mu0 + jax.random.normal(k1, x0.shape) @ chol.T
        t = jax.random.randint(kt, (s.warm_batch, 1), 0, grid) / grid
        x = (1.0 - t) * x0 + t * x1
        target = base(x, t)
        loss_fn = lambda p: jnp.mean(jnp.sum(jnp.square(as_field(module, p)(x, t) - target), -1))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.jit(
        lambda p, k: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(k, s.warm_steps))
    )(params, run_key)
    return params, float(losses[-100:].mean())


def make_core_update(num_steps: int, s: Settings, ref):
    """One adjoint-matching step of the fine field against a fixed reference and the exact Q.

    The assembly of `agents.adjoint_matching.update` without its critic and BC terms: SDE
    rollout of the fine field, reference velocities along it, the deterministic last step,
    terminal adjoint of the exact Q, lean adjoint through the reference, the matching loss,
    D_hat, one Adam step and the projected dual update. TRQAM and QAM rows share the program:
    `row["trqam"]` (1 or 0, traced) picks TRQAM's sigma = g / sqrt(lambda_eff) with its dual, or
    QAM's sigma = g with the adjoint scaled by `row["inv_temp"]` and lambda left alone.

    Args:
      ref: the reference field (x (B, d), t (B, 1)) -> (B, d): `exact_base_field()` in part 1.
    Returns update(state, row, key) -> (state, metrics), row = {trqam, kl_budget, inv_temp}.
    """
    module, dual = field_module(s), dual_config(s)
    opt = make_optimizer(s.lr, s.steps, s.final_lr_frac)
    q_fn = gt.quadratic_critic(PROBLEM)
    times = flow_times(num_steps)
    g_sq = noise_scale_sq(times, 1.0 / num_steps)
    d = PROBLEM.mu0.shape[0]

    def update(state: CoreState, row, key):
        x0_key, sde_key = jax.random.split(key)
        trqam = row["trqam"] > 0
        lambda_eff = jnp.where(trqam, effective_lambda(state.lam, dual), 1.0)
        adj_scale = jnp.where(trqam, 1.0, row["inv_temp"])
        x0 = jax.random.normal(x0_key, (s.batch_size, d))
        xs = sde_rollout(as_field(module, state.fine), x0, sde_key, num_steps)
        v_ref = stacked(ref, xs, times)
        x_final = final_step(xs[-1], v_ref[-1], num_steps)
        adjs = lean_adjoint(ref, xs, adj_scale * terminal_adjoint(q_fn, x_final), num_steps)
        sigma = jnp.sqrt(g_sq / lambda_eff)

        def loss_fn(fine):
            dv = stacked(as_field(module, fine), xs, times) - v_ref
            kl = path_kl(jax.lax.stop_gradient(dv), g_sq, num_steps, horizon=1)
            return adjoint_matching_loss(dv, adjs, sigma), kl

        (loss, kl), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.fine)
        updates, opt_state = opt.update(grads, state.opt_state, state.fine)
        fine = optax.apply_updates(state.fine, updates)
        lam, kl_ema, _ = dual_update(state.lam, state.kl_ema, kl, row["kl_budget"], dual)
        # QAM keeps lambda and tracks the unclipped KL EMA as a diagnostic, as the agent does.
        lam = jnp.where(trqam, lam, state.lam)
        kl_ema = jnp.where(trqam, kl_ema, ema_update(state.kl_ema, kl, dual.kl_ema_coef))
        metrics = {"am_loss": loss, "kl": kl, "kl_ema": kl_ema, "lam": lam}
        return CoreState(fine, opt_state, lam, kl_ema), metrics

    return update


def core_rows(s: Settings):
    """The rows of part 1: TRQAM at each budget, then QAM at each beta -> dict of (R,) arrays."""
    n_t, n_q = len(s.budgets), len(s.betas)
    return {
        "trqam": np.array([1.0] * n_t + [0.0] * n_q, np.float32),
        "kl_budget": np.array(list(s.budgets) + [1.0] * n_q, np.float32),
        "inv_temp": np.array([1.0] * n_t + list(s.betas), np.float32),
    }


def field_laws(fine_field, ref, num_steps: int, key, num: int):
    """What a fine field deploys and what its training SDE ends in, with its D_hat.

    Args:
      fine_field, ref: fields (x (B, d), t (B, 1)) -> (B, d), the fine one and the reference.
    Returns:
      dict: ode (num, d) deterministic Euler samples (the deployed policy), sde (num, d) terminal
      states of the training rollout (reference field in the last step), d_hat (all K terms) and
      path_kl (the K - 1 stochastic steps only), both Monte Carlo over the `num` rollouts.
    """
    noise_key, sde_key, ode_key = jax.random.split(key, 3)
    times = flow_times(num_steps)
    g_sq = noise_scale_sq(times, 1.0 / num_steps)
    d = PROBLEM.mu0.shape[0]
    xs = sde_rollout(fine_field, jax.random.normal(noise_key, (num, d)), sde_key, num_steps)
    v_ref = stacked(ref, xs, times)
    dv = stacked(fine_field, xs, times) - v_ref
    # The last term of D_hat has no stochastic transition behind it (x_K uses the reference).
    stochastic = dv.at[-1].set(0.0)
    return {
        "ode": euler_sample(fine_field, jax.random.normal(ode_key, (num, d)), num_steps),
        "sde": final_step(xs[-1], v_ref[-1], num_steps),
        "d_hat": path_kl(dv, g_sq, num_steps, horizon=1),
        "path_kl": path_kl(stochastic, g_sq, num_steps, horizon=1),
    }


def run_core(num_steps: int, s: Settings, fine0, key, ref_params=None, rows=None):
    """Train every row at K = num_steps in one compiled program.

    Args:
      fine0: the fine field's initial parameters.
      ref_params: parameters of a learned reference field of the same architecture (part 3's
        BC base), or None for the exact base field.
      rows: `core_rows(s)` by default.
    Returns (curves: dict of (R, steps / log_every) arrays, laws: `field_laws` of each row's
    final field, base_laws: `field_laws` of the reference itself).
    """
    module, opt = field_module(s), make_optimizer(s.lr, s.steps, s.final_lr_frac)

    def program(rows, key, ref_params):
        ref = exact_base_field() if ref_params is None else as_field(module, ref_params)
        update = make_core_update(num_steps, s, ref)

        def run_row(row, key):
            train_key, eval_key = jax.random.split(key)
            lam0 = jnp.asarray(LAM_INIT, jnp.float32)
            state = CoreState(fine0, opt.init(fine0), lam0, jnp.zeros(()))
            state, metrics = jax.lax.scan(
                lambda st, k: update(st, row, k), state, jax.random.split(train_key, s.steps)
            )
            curves = jax.tree.map(lambda m: m.reshape(-1, s.log_every).mean(axis=1), metrics)
            fine = as_field(module, state.fine)
            return curves, field_laws(fine, ref, num_steps, eval_key, s.eval_samples)

        row_key, base_key = jax.random.split(key)
        keys = jax.random.split(row_key, rows["trqam"].shape[0])
        curves, laws = jax.vmap(run_row)(rows, keys)
        return curves, laws, field_laws(ref, ref, num_steps, base_key, s.eval_samples)

    rows = core_rows(s) if rows is None else rows
    out = jax.jit(program)(rows, key, ref_params)
    return jax.tree.map(np.asarray, out)
