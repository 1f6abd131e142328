"""Known-answer check of TRQAM and QAM: a Gaussian base and a quadratic critic (issue 17).

    python -m experiments.known_answer --out DIR      # default run, about 4-5 minutes on 2 cores
    python -m experiments.known_answer --quick --out DIR                # smoke run, K = 10 only
    python -m experiments.known_answer --stability-check --out DIR      # the bandit's KL puzzle

Behaviour N(mu0, Sigma0) in d = 2, critic Q(a) = -1/2 (a - a*)^T A (a - a*): the tilt
pi_base exp(beta Q) / Z, its KL to the base and the lambda* that meets a budget are closed forms,
and so is the fixed point of the discretised scheme the library runs (trqam_jax/gaussian_tilt.py).

1. Core pieces with the exact answer plugged in: exact base field as the reference, exact Q as the
   critic, a small MLP fine field trained with `sde_rollout`, `lean_adjoint`,
   `adjoint_matching_loss`, `path_kl` and `dual_update` (TRQAM at each budget, QAM at each beta).
2. The same at K in {10, 20, 40} flow steps, against the exact discrete fixed point at each K.
3. The full agent (`agents.bc` then `agents.trqam`) on samples of the base and noisy rewards.
4. The deployed law's KL to the base three ways (Gaussian from moments, k-NN, D_hat), ODE vs SDE.

Writes results.json, known_answer.png and table.md to --out (docs/known_answer.md has them).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import trqam as trqam_config
from configs.agent_defaults import adjoint_matching_defaults
from experiments import stability
from trqam_jax import bandit, networks, train
from trqam_jax import gaussian_tilt as gt
from trqam_jax.adjoint import adjoint_matching_loss, lean_adjoint, terminal_adjoint
from trqam_jax.agents import adjoint_matching, bc, common, trqam
from trqam_jax.flow import euler_sample, flow_times
from trqam_jax.sde import final_step, noise_scale_sq, sde_rollout
from trqam_jax.trust_region import DualConfig, dual_update, effective_lambda, ema_update, path_kl

# The committed problem: an anisotropic, rotated base and a critic whose maximiser lies off the
# base's mean along neither of its axes. 0.2% of the base's mass (less of every tilt's) lies
# outside [-1, 1]^2, where the samplers clip: negligible next to the gaps measured here.
PROBLEM = gt.Problem(
    mu0=np.array([-0.2, 0.1]),
    cov0=gt.rotation(np.pi / 6) @ np.diag([0.3**2, 0.2**2]) @ gt.rotation(np.pi / 6).T,
    a_star=np.array([0.45, 0.35]),
    hess=gt.rotation(-np.pi / 9) @ np.diag([10.0, 2.5]) @ gt.rotation(-np.pi / 9).T,
)
OBS_DIM = 1  # one constant context (0), so the library's fields v(s, x, t) apply unchanged


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the experiment needs (static; defaults are the committed run)."""

    budgets: tuple[float, ...] = (0.1, 0.3, 1.0)
    betas: tuple[float, ...] = (0.3, 1.0, 3.0)
    flow_steps: tuple[int, ...] = (10, 20, 40)
    # Part 1: 2 x 32 fine field, batch 64, Adam 1e-3 decayed (cosine) to 1e-4; the paper's dual
    # (eta_lambda = 0.01, lam_init = 1). The critic's scale puts lambda*(0.1) near lam_init:
    # the linear dual needs ~lambda* / (2 eta eps) steps to settle, ~500 here.
    steps: int = 1500
    batch_size: int = 64
    hidden: int = 32
    depth: int = 2
    lr: float = 1e-3
    final_lr_frac: float = 0.1
    eta_lambda: float = 0.01
    # The warm start (fine = base): regression on the exact base field on the finest time grid.
    warm_steps: int = 6000
    warm_lr: float = 3e-3
    warm_batch: int = 256
    eval_samples: int = 8192  # deployed samples per row for the moments
    knn_samples: int = 2048  # per set, for the k-NN estimate (an n x n distance matrix)
    log_every: int = 10
    # Part 3: agents.bc then agents.trqam at K = 40, its own config otherwise (constant Adam 1e-3).
    agent_budgets: tuple[float, ...] = (0.1, 0.3, 1.0)
    agent_flow_steps: int = 40
    agent_num_qs: int = 2
    agent_bc_steps: int = 5000
    agent_bc_batch: int = 256
    agent_steps: int = 1000
    dataset_size: int = 10000
    reward_noise: float = 0.1
    seed: int = 0


QUICK = dict(
    steps=600,
    warm_steps=2000,
    flow_steps=(10,),
    eval_samples=2048,
    knn_samples=512,
    agent_steps=300,
    agent_bc_steps=500,
    agent_flow_steps=10,
)


def dual_config(s: Settings) -> DualConfig:
    """The paper's dual (configs/agent_defaults.py) with this experiment's step size."""
    defaults = adjoint_matching_defaults("trqam")
    values = {name: float(defaults[name]) for name in DualConfig._fields}
    return DualConfig(**dict(values, eta_lambda=s.eta_lambda))


LAM_INIT = float(adjoint_matching_defaults("trqam").lam_init)


def _module(s: Settings) -> networks.MLP:
    return networks.vector_field_module((s.hidden,) * s.depth, PROBLEM.mu0.shape[0], False)


def _field(module, params, context=0.0):
    """The MLP as a field (x (..., d), t (..., 1)) -> (..., d) at one context (obs dim 1)."""
    return lambda x, t: networks.apply_vector_field(
        module, params, jnp.full(x.shape[:-1] + (OBS_DIM,), context), x, t
    )


def _stacked(fn, xs, times):
    """A field at K states at once: xs (K, B, d), times (K,) -> (K, B, d)."""
    t = jnp.broadcast_to(times[:, None, None], xs.shape[:2] + (1,))
    return fn(xs, t)


def _optimizer(lr: float, steps: int, final_frac: float):
    """Adam after clipping at 1 (the agents' optimizer), its rate decayed (cosine) to
    `final_frac` of `lr` over `steps`: the fitted field's noise near t = 1, which D_hat weighs
    most, shrinks with the rate."""
    schedule = optax.cosine_decay_schedule(lr, steps, final_frac)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


# ---- Part 1: the core pieces with the exact base field and the exact critic. ----


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
    module, opt = _module(s), _optimizer(s.warm_lr, s.warm_steps, s.final_lr_frac)
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
        loss_fn = lambda p: jnp.mean(jnp.sum(jnp.square(_field(module, p)(x, t) - target), -1))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.jit(
        lambda p, k: jax.lax.scan(step, (p, opt.init(p)), jax.random.split(k, s.warm_steps))
    )(params, run_key)
    return params, float(losses[-100:].mean())


def exact_base_field():
    """The exact base velocity (x (B, d), t (B, 1)) -> (B, d), the reference of part 1."""
    return gt.flow_velocity(gt.Moments(PROBLEM.mu0, PROBLEM.cov0))


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
    module, dual = _module(s), dual_config(s)
    opt = _optimizer(s.lr, s.steps, s.final_lr_frac)
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
        xs = sde_rollout(_field(module, state.fine), x0, sde_key, num_steps)
        v_ref = _stacked(ref, xs, times)
        x_final = final_step(xs[-1], v_ref[-1], num_steps)
        adjs = lean_adjoint(ref, xs, adj_scale * terminal_adjoint(q_fn, x_final), num_steps)
        sigma = jnp.sqrt(g_sq / lambda_eff)

        def loss_fn(fine):
            dv = _stacked(_field(module, fine), xs, times) - v_ref
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
    v_ref = _stacked(ref, xs, times)
    dv = _stacked(fine_field, xs, times) - v_ref
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
    module, opt = _module(s), _optimizer(s.lr, s.steps, s.final_lr_frac)

    def program(rows, key, ref_params):
        ref = exact_base_field() if ref_params is None else _field(module, ref_params)
        update = make_core_update(num_steps, s, ref)

        def run_row(row, key):
            train_key, eval_key = jax.random.split(key)
            lam0 = jnp.asarray(LAM_INIT, jnp.float32)
            state = CoreState(fine0, opt.init(fine0), lam0, jnp.zeros(()))
            state, metrics = jax.lax.scan(
                lambda st, k: update(st, row, k), state, jax.random.split(train_key, s.steps)
            )
            curves = jax.tree.map(lambda m: m.reshape(-1, s.log_every).mean(axis=1), metrics)
            fine = _field(module, state.fine)
            return curves, field_laws(fine, ref, num_steps, eval_key, s.eval_samples)

        row_key, base_key = jax.random.split(key)
        keys = jax.random.split(row_key, rows["trqam"].shape[0])
        curves, laws = jax.vmap(run_row)(rows, keys)
        return curves, laws, field_laws(ref, ref, num_steps, base_key, s.eval_samples)

    rows = core_rows(s) if rows is None else rows
    out = jax.jit(program)(rows, key, ref_params)
    return jax.tree.map(np.asarray, out)


# ---- Part 3: the full agent (BC-pretrained base, learned critic) through agents.trqam. ----


def agent_config(s: Settings):
    """configs/trqam.py's defaults shrunk for this 2-D problem (H = 1, small networks)."""
    config = trqam_config.defaults()
    config.horizon = 1
    config.batch_size = s.batch_size
    # The actor is part 1's fine field, so part 1's pieces can take the BC base as reference.
    config.actor_hidden_dims = (s.hidden,) * s.depth
    config.critic_hidden_dims = (s.hidden,) * s.depth
    config.num_qs = s.agent_num_qs
    config.flow_steps = s.agent_flow_steps
    config.lr = s.lr
    config.eta_lambda = s.eta_lambda
    return config


def agent_dataset(s: Settings, key):
    """Behaviour samples of N(mu0, Sigma0) with rewards Q(a) + noise, in the agents' layout."""
    d = PROBLEM.mu0.shape[0]
    action_key, noise_key = jax.random.split(key)
    chol = jnp.asarray(np.linalg.cholesky(PROBLEM.cov0), jnp.float32)
    actions = (
        jnp.asarray(PROBLEM.mu0, jnp.float32)
        + jax.random.normal(action_key, (s.dataset_size, d)) @ chol.T
    )
    rewards = gt.quadratic_critic(PROBLEM)(actions)[0]
    obs = jnp.zeros((s.dataset_size, OBS_DIM))
    return {
        "observations": obs,
        # One step, no bootstrap (masks = 0): the critic's target is the reward itself.
        "actions": actions[:, None, :],
        "rewards": rewards + s.reward_noise * jax.random.normal(noise_key, (s.dataset_size,)),
        "masks": jnp.zeros(s.dataset_size),
        "valid": jnp.ones((s.dataset_size, 1)),
        "next_observations": obs,
    }


def run_agent(s: Settings, key):
    """BC pretraining, then TRQAM at every budget from the same base, in compiled programs.

    Returns dict of numpy arrays: base (the BC-pretrained field's parameters), bc_loss
    (bc_steps,), curves {kl, kl_ema, lambda} (V, n), and per row: deployed (N, d) fine-field
    samples, ema_base (N, d) and pretrained (N, d) samples of the reference fields, critic_points
    (N, d) with critic_values (N,) and critic_grads (N, d) (of the target critic's ensemble mean,
    the one the terminal adjoint differentiates).
    """
    config = agent_config(s)
    d = PROBLEM.mu0.shape[0]
    example = (jnp.zeros(OBS_DIM), jnp.zeros((1, d)))
    data_key, bc_key, run_key = jax.random.split(key, 3)
    dataset = agent_dataset(s, data_key)

    def bc_program(key):
        init_key, steps_key = jax.random.split(key)
        state = bc.init(init_key, config, *example)
        sample = lambda k: bandit.sample_batch(dataset, k, s.agent_bc_batch)
        state, metrics = train.scan_updates(
            bc.update, sample, state, jax.random.split(steps_key, s.agent_bc_steps)
        )
        return state.params["base"], metrics["bc_loss"]

    base, bc_loss = jax.jit(bc_program)(bc_key)
    obs = jnp.zeros((s.eval_samples, OBS_DIM))

    def run_row(budget, key):
        init_key, steps_key, eval_key = jax.random.split(key, 3)
        state = trqam.with_pretrained_base(trqam.init(init_key, config, *example), base)
        state = common.set_hparams(state, {"kl_budget": budget})
        sample = lambda k: bandit.sample_batch(dataset, k, s.batch_size)
        state, metrics = train.scan_updates(
            trqam.update, sample, state, jax.random.split(steps_key, s.agent_steps)
        )
        curves = {
            k: metrics[k].reshape(-1, s.log_every).mean(axis=1) for k in ("kl", "kl_ema", "lambda")
        }
        k_fine, k_ema, k_pre, k_pts = jax.random.split(eval_key, 4)
        flat = lambda a: a.reshape(s.eval_samples, d)
        deployed = flat(trqam.act(state, obs, k_fine))
        ema_base = flat(common.flow_policy(state.config, state.params["target_base"], obs, k_ema))
        pretrained = flat(common.flow_policy(state.config, base, obs, k_pre))
        # The critic where the answer lives: over the base's and the fine-tuned policy's support.
        points = jnp.concatenate([ema_base, deployed])[
            jax.random.permutation(k_pts, 2 * s.eval_samples)[: s.eval_samples]
        ]
        critic = state.config.critic_module()
        q_fn = lambda a: networks.apply_critic_ensemble(
            critic, state.params["target_critic"], obs, a
        )
        return curves, {
            "deployed": deployed,
            "ema_base": ema_base,
            "pretrained": pretrained,
            "critic_points": points,
            "critic_values": q_fn(points).mean(axis=0),
            "critic_grads": -terminal_adjoint(q_fn, points),
        }

    budgets = jnp.asarray(s.agent_budgets, jnp.float32)
    curves, laws = jax.jit(jax.vmap(run_row))(budgets, jax.random.split(run_key, len(budgets)))
    return jax.tree.map(
        np.asarray, {"base": base, "bc_loss": bc_loss, "curves": curves, "laws": laws}
    )


# ---- Closed-form comparisons, the results and their presentation. ----


def _lists(moments: gt.Moments):
    return {"mean": moments.mean.tolist(), "cov": moments.cov.tolist()}


_knn_kl = jax.jit(bandit.knn_kl)


def knn(x, y, num: int) -> float:
    """The stability experiment's k-NN KL estimate (k = 5) on the first `num` samples of each."""
    return float(_knn_kl(jnp.asarray(x[:num]), jnp.asarray(y[:num])))


def core_records(s: Settings, num_steps: int, curves, laws, base_laws) -> list[dict]:
    """One record per part-1 row at K = num_steps: the settled dual and KL against the closed
    forms, the deployed law against the tilt, and the part-4 KL estimates."""
    lam_scale = dual_config(s).lam_scale
    rows = core_rows(s)
    base_true = gt.Moments(PROBLEM.mu0, PROBLEM.cov0)
    base_ode, base_sde = (gt.sample_moments(base_laws[k]) for k in ("ode", "sde"))
    exact_base = gt.chain_moments(PROBLEM, gt.zero_field(PROBLEM, num_steps))
    records = []
    values = list(s.budgets) + list(s.betas)  # the rows' order, as exact Python floats
    for i, is_trqam in enumerate(rows["trqam"]):
        settled = {k: float(stability.tail_mean(v[i])) for k, v in curves.items()}
        if is_trqam:
            budget = values[i]
            lam = settled["lam"]
            beta = 1.0 / (lam_scale * lam)
            record = {
                "agent": "trqam",
                "budget": budget,
                "lambda": lam,
                "lambda_star": gt.lambda_star(PROBLEM, budget, lam_scale),
                "lambda_star_discrete": gt.lambda_star_discrete(
                    PROBLEM, budget, lam_scale, num_steps
                ),
            }
        else:
            beta = values[i]
            record = {"agent": "qam", "beta": beta, "lambda": None, "lambda_star": None}
        tilt = gt.tilt(PROBLEM, beta)
        point = gt.fixed_point_summary(PROBLEM, num_steps, beta)
        deployed, sde = gt.sample_moments(laws["ode"][i]), gt.sample_moments(laws["sde"][i])
        record.update(
            K=num_steps,
            inv_temp=beta,
            # D_hat: the settled EMA of training (what the dual sees) and a fresh Monte Carlo
            # estimate of the final field over `eval_samples` rollouts.
            kl_estimate=settled["kl_ema"],
            kl_estimate_final=float(laws["d_hat"][i]),
            kl_closed_form=gt.tilt_kl(PROBLEM, beta),
            kl_discrete_fixed_point=point.d_hat,
            deployed_mean=deployed.mean.tolist(),
            deployed_cov=deployed.cov.tolist(),
            tilt_mean=tilt.mean.tolist(),
            tilt_cov=tilt.cov.tolist(),
            deployed_vs_tilt_kl=gt.gaussian_kl(deployed, tilt),
            fixed_point_vs_tilt_kl=gt.gaussian_kl(point.ode, tilt),
            deployed_vs_fixed_point_kl=gt.gaussian_kl(deployed, point.ode),
            terminal_kl={
                # KL of the deployed (ODE) law and of the training SDE's terminal law to the same
                # sampler run on the reference: from sample moments, k-NN, and the fixed point.
                "ode_gaussian": gt.gaussian_kl(deployed, base_ode),
                "ode_knn": knn(laws["ode"][i], base_laws["ode"], s.knn_samples),
                "ode_fixed_point": gt.gaussian_kl(point.ode, exact_base.ode),
                "sde_gaussian": gt.gaussian_kl(sde, base_sde),
                "sde_knn": knn(laws["sde"][i], base_laws["sde"], s.knn_samples),
                "sde_fixed_point": gt.gaussian_kl(point.sde, exact_base.sde),
                "ode_gaussian_to_true_base": gt.gaussian_kl(deployed, base_true),
                "path_kl_final": float(laws["path_kl"][i]),
                "path_kl_fixed_point": point.path_kl,
            },
        )
        records.append(record)
    return records


VARIANTS = {
    "reference": gt.REFERENCE,
    "D_hat without its K-th term": gt.Scheme(last_kl_term=False),
    "stochastic last step": gt.Scheme(deterministic_last=False),
    "adjoint Jacobian at t_k": gt.Scheme(adjoint_time_shift=False),
    "unshifted g and x / t (k >= 1)": gt.Scheme(noise_time_shift=False),
}


def scheme_variants(s: Settings) -> list[dict]:
    """lambda* of the exact discrete fixed point with one reference choice changed at a time."""
    lam_scale = dual_config(s).lam_scale
    out = []
    for budget in s.budgets:
        exact = gt.lambda_star(PROBLEM, budget, lam_scale)
        for num_steps in s.flow_steps:
            for name, scheme in VARIANTS.items():
                lam = gt.lambda_star_discrete(PROBLEM, budget, lam_scale, num_steps, scheme)
                out.append(
                    {
                        "variant": name,
                        "budget": budget,
                        "K": num_steps,
                        "lambda_star": exact,
                        "lambda_star_discrete": lam,
                        "relative_gap": lam / exact - 1.0,
                    }
                )
    return out


def fit_quadratic(points, values):
    """Least-squares quadratic c + g.a - 1/2 a^T A a through (points (n, 2), values (n,)).

    Returns (a_star = A^-1 g, A, rms residual): the critic as the closed forms see it.
    """
    x, y = points[:, 0], points[:, 1]
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    hess = -np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    residual = values - design @ coef
    return np.linalg.solve(hess, coef[1:3]), hess, float(np.sqrt(np.mean(residual**2)))


def agent_records(s: Settings, out) -> list[dict]:
    """Part 3: the full agent against the exact answer, and against the answer with its own
    learned base and critic plugged into the closed forms (what is left is optimisation)."""
    lam_scale = dual_config(s).lam_scale
    num_steps = s.agent_flow_steps
    base_true = gt.Moments(PROBLEM.mu0, PROBLEM.cov0)
    laws = out["laws"]
    records = []
    for i, budget in enumerate(s.agent_budgets):
        lam = float(stability.tail_mean(out["curves"]["lambda"][i])) / lam_scale
        beta = 1.0 / (lam_scale * lam)
        tilt = gt.tilt(PROBLEM, beta)
        deployed = gt.sample_moments(laws["deployed"][i])
        ema_base = gt.sample_moments(laws["ema_base"][i])
        points = np.asarray(laws["critic_points"][i], np.float64)
        values = np.asarray(laws["critic_values"][i], np.float64)
        a_star, hess, fit_rms = fit_quadratic(points, values)
        true_grads = -(points - PROBLEM.a_star) @ PROBLEM.hess
        grad_error = np.sqrt(np.mean(np.sum((laws["critic_grads"][i] - true_grads) ** 2, -1)))
        learned = {
            "base only": PROBLEM._replace(mu0=ema_base.mean, cov0=ema_base.cov),
            "critic only": PROBLEM._replace(a_star=a_star, hess=hess),
            "both": gt.Problem(ema_base.mean, ema_base.cov, a_star, hess),
        }
        plugged = {}
        for name, problem in learned.items():
            if np.any(np.linalg.eigvalsh(problem.hess) <= 0):
                plugged[name] = None  # a critic fit that is not concave has no tilt
                continue
            plugged[name] = {
                "lambda_star": gt.lambda_star(problem, budget, lam_scale),
                "tilt_vs_exact_tilt_kl": gt.gaussian_kl(gt.tilt(problem, beta), tilt),
                "deployed_vs_tilt_kl": gt.gaussian_kl(deployed, gt.tilt(problem, beta)),
            }
        if plugged["both"] is not None:
            plugged["both"]["lambda_star_discrete"] = gt.lambda_star_discrete(
                learned["both"], budget, lam_scale, num_steps
            )
        exact_fp = gt.fixed_point_summary(PROBLEM, num_steps, beta)
        records.append(
            {
                "agent": "trqam_full",
                "budget": budget,
                "K": num_steps,
                "lambda": lam,
                "lambda_star": gt.lambda_star(PROBLEM, budget, lam_scale),
                "lambda_star_discrete": gt.lambda_star_discrete(
                    PROBLEM, budget, lam_scale, num_steps
                ),
                "inv_temp": beta,
                "kl_estimate": float(stability.tail_mean(out["curves"]["kl_ema"][i])),
                "kl_closed_form": gt.tilt_kl(PROBLEM, beta),
                "kl_discrete_fixed_point": exact_fp.d_hat,
                "deployed_mean": deployed.mean.tolist(),
                "deployed_cov": deployed.cov.tolist(),
                "tilt_mean": tilt.mean.tolist(),
                "tilt_cov": tilt.cov.tolist(),
                "deployed_vs_tilt_kl": gt.gaussian_kl(deployed, tilt),
                "fixed_point_vs_tilt_kl": gt.gaussian_kl(exact_fp.ode, tilt),
                "pretrained_vs_base_kl": gt.gaussian_kl(
                    gt.sample_moments(laws["pretrained"][i]), base_true
                ),
                "ema_base_vs_base_kl": gt.gaussian_kl(ema_base, base_true),
                "ema_base": _lists(ema_base),
                "critic": {
                    "a_star": a_star.tolist(),
                    "hess": hess.tolist(),
                    "quadratic_fit_rms": fit_rms,
                    "rms_error": float(
                        np.sqrt(np.mean((values - gt.q_values(PROBLEM, points)) ** 2))
                    ),
                    "q_std": float(np.std(gt.q_values(PROBLEM, points))),
                    "grad_relative_error": float(
                        grad_error / np.sqrt(np.mean(np.sum(true_grads**2, -1)))
                    ),
                },
                "plugged": plugged,
            }
        )
    return records


def base_swap_records(s: Settings, curves, laws, base_laws) -> list[dict]:
    """Part 3's attribution run: part 1's pieces (exact Q, same optimiser) with the agent's
    BC-pretrained base as the reference instead of the exact field. Records as `core_records`,
    plus lambda* of the Gaussian fitted to that base's deployed law (continuous and at K)."""
    swap = dataclasses.replace(s, budgets=s.agent_budgets, betas=())
    records = core_records(swap, s.agent_flow_steps, curves, laws, base_laws)
    fitted = gt.sample_moments(base_laws["ode"])
    problem = PROBLEM._replace(mu0=fitted.mean, cov0=fitted.cov)
    lam_scale = dual_config(s).lam_scale
    for r in records:
        r["agent"] = "trqam_core_bc_base"
        r["bc_base_vs_base_kl"] = gt.gaussian_kl(fitted, gt.Moments(PROBLEM.mu0, PROBLEM.cov0))
        r["lambda_star_bc_base"] = gt.lambda_star(problem, r["budget"], lam_scale)
        r["lambda_star_discrete_bc_base"] = gt.lambda_star_discrete(
            problem, r["budget"], lam_scale, s.agent_flow_steps
        )
    return records


def field_jacobians(s: Settings, base_params, times=(0.5, 0.75)) -> dict:
    """Mean Jacobian d v / d x over base samples, exact field against the BC field, at `times`
    and at t_{K-1} = 1 - 1/K: what the lean adjoint multiplies by near t = 1."""
    module = _module(s)
    rng = np.random.default_rng(s.seed)
    x = PROBLEM.mu0 + rng.normal(size=(2000, 2)) @ np.linalg.cholesky(PROBLEM.cov0).T
    x = jnp.asarray(x, jnp.float32)
    fields = {"exact": exact_base_field(), "bc": _field(module, base_params)}
    out = {}
    for t in (*times, 1.0 - 1.0 / s.agent_flow_steps):
        t_col = jnp.full((1, 1), t)
        out[f"{t:g}"] = {
            name: np.mean(
                jax.vmap(jax.jacfwd(lambda y, f=f, t=t_col: f(y[None], t)[0]))(x), axis=0
            ).tolist()
            for name, f in fields.items()
        }
    return out


def run(s: Settings):
    """The whole experiment -> (results dict for results.json, arrays for the figure)."""
    root = jax.random.PRNGKey(s.seed)
    warm_key, core_key, agent_key, swap_key = jax.random.split(root, 4)
    timings = {}
    start = time.perf_counter()
    fine0, warm_mse = warm_start(s, warm_key)
    timings["warm_start_s"] = time.perf_counter() - start
    core, arrays = [], {"core": {}}
    for num_steps in s.flow_steps:
        start = time.perf_counter()
        curves, laws, base_laws = run_core(
            num_steps, s, fine0, jax.random.fold_in(core_key, num_steps)
        )
        timings[f"core_K{num_steps}_s"] = time.perf_counter() - start
        core += core_records(s, num_steps, curves, laws, base_laws)
        arrays["core"][num_steps] = {"curves": curves, "ode": laws["ode"]}
    results = {"problem": {k: np.asarray(v).tolist() for k, v in PROBLEM._asdict().items()}}
    results["lam_scale"] = dual_config(s).lam_scale
    results["settings"] = dataclasses.asdict(s)
    results["warm_start_mse"] = warm_mse
    results["core"] = core
    start = time.perf_counter()
    results["scheme_variants"] = scheme_variants(s)
    base = {}
    for num_steps in s.flow_steps:
        exact_base = gt.chain_moments(PROBLEM, gt.zero_field(PROBLEM, num_steps))
        truth = gt.Moments(PROBLEM.mu0, PROBLEM.cov0)
        base[str(num_steps)] = {
            "ode_vs_base_kl": gt.gaussian_kl(exact_base.ode, truth),
            "sde_vs_base_kl": gt.gaussian_kl(exact_base.sde, truth),
        }
    results["exact_base_discretisation"] = base
    timings["closed_forms_s"] = time.perf_counter() - start
    if s.agent_steps:
        start = time.perf_counter()
        agent = run_agent(s, agent_key)
        timings["agent_s"] = time.perf_counter() - start
        results["agent"] = agent_records(s, agent)
        arrays["agent"] = agent
        start = time.perf_counter()
        swap_rows = core_rows(dataclasses.replace(s, budgets=s.agent_budgets, betas=()))
        swap = run_core(
            s.agent_flow_steps, s, agent["base"], swap_key, ref_params=agent["base"], rows=swap_rows
        )
        timings["bc_base_core_s"] = time.perf_counter() - start
        results["bc_base_core"] = base_swap_records(s, *swap)
        results["bc_base_jacobian"] = field_jacobians(s, agent["base"])
        arrays["bc_base_core"] = swap[0]
    results["timings"] = timings
    return results, arrays


# ---- The stability doc's puzzle on its own bandit (`--stability-check`). ----


def stability_check(budgets=(0.1, 0.3, 1.0), seed: int = 0) -> dict:
    """TRQAM on the stability experiment's bandit (its default settings, one seed), then at its
    evaluation contexts: k-NN KL of the deployed ODE law and of the training SDE's terminal law
    to the same sampler run on the EMA base, the estimator's reading between two independent
    sample sets of one law, the share of deployed actions clipped onto the box, and D_hat over
    all K steps and over the K - 1 stochastic ones (the data-processing bound of the SDE's).

    Returns {budget: dict of floats (means over contexts)}.
    """
    s = dataclasses.replace(stability.Settings(), budgets=tuple(budgets), seeds=1, seed=seed)
    spec = bandit.BanditSpec(critic_error=s.critic_error)
    data_key, bc_key, run_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    dataset = bandit.make_dataset(spec, data_key, s.dataset_size)
    bases, _ = stability.pretrain(s, dataset, bc_key[None])
    base = jax.tree.map(lambda b: b[0], bases)
    config = stability.agent_config("trqam", s)
    example = (jnp.zeros(bandit.OBS_DIM), jnp.zeros((1, bandit.ACTION_DIM)))
    contexts = stability.eval_grid(s)
    num, num_steps = s.eval_samples, s.flow_steps
    times = flow_times(num_steps)
    g_sq = noise_scale_sq(times, 1.0 / num_steps)

    def laws(state, context, key):
        module = state.config.field_module()
        fine = _field(module, state.params["fine"], context)
        ref = _field(module, state.params["target_base"], context)
        keys = jax.random.split(key, 6)
        sde = {}
        for name, f, k0, k1 in (("fine", fine, keys[0], keys[1]), ("ref", ref, keys[2], keys[3])):
            xs = sde_rollout(f, jax.random.normal(k0, (num, bandit.ACTION_DIM)), k1, num_steps)
            v_ref = _stacked(ref, xs, times)
            sde[name] = final_step(xs[-1], v_ref[-1], num_steps)
            if name == "fine":
                dv = _stacked(fine, xs, times) - v_ref
        noise = jax.random.normal(keys[4], (3, num, bandit.ACTION_DIM))
        ode_fine = euler_sample(fine, noise[0], num_steps)
        ode_ref, ode_ref2 = (
            euler_sample(ref, noise[1], num_steps),
            euler_sample(ref, noise[2], num_steps),
        )
        clip = lambda a: jnp.clip(a, -1.0, 1.0)
        return {
            "ode_knn": bandit.knn_kl(ode_fine, ode_ref),
            "sde_knn": bandit.knn_kl(sde["fine"], sde["ref"]),
            "sde_clipped_knn": bandit.knn_kl(clip(sde["fine"]), clip(sde["ref"])),
            "ode_null_knn": bandit.knn_kl(ode_ref2, ode_ref),
            "clipped_share": jnp.mean(jnp.any(jnp.abs(ode_fine) >= 1.0, axis=-1)),
            "d_hat": path_kl(dv, g_sq, num_steps, horizon=1),
            "path_kl": path_kl(dv.at[-1].set(0.0), g_sq, num_steps, horizon=1),
        }

    def run_row(budget, key):
        init_key, steps_key, eval_key = jax.random.split(key, 3)
        state = adjoint_matching.init(init_key, config, *example, kind="trqam")
        state = common.set_hparams(
            adjoint_matching.with_pretrained_base(state, base), {"kl_budget": budget}
        )
        sample = lambda k: bandit.sample_batch(dataset, k, s.batch_size)
        state, metrics = train.scan_updates(
            adjoint_matching.update, sample, state, jax.random.split(steps_key, s.steps)
        )
        keys = jax.random.split(eval_key, contexts.shape[0])
        per_context = jax.lax.map(lambda args: laws(state, *args), (contexts, keys))
        out = jax.tree.map(jnp.mean, per_context)
        return dict(out, kl_ema=stability.tail_mean(metrics["kl_ema"]))

    values = jnp.asarray(budgets, jnp.float32)
    result = jax.jit(jax.vmap(run_row))(values, jax.random.split(run_key, len(budgets)))
    return {f"{b:g}": {k: float(v[i]) for k, v in result.items()} for i, b in enumerate(budgets)}


def _label(record):
    if record["agent"] == "qam":
        return f"QAM beta = {record['beta']:g}"
    return f"{'TRQAM' if record['agent'] == 'trqam' else 'full TRQAM'} eps = {record['budget']:g}"


def markdown_tables(results) -> str:
    """The tables of docs/known_answer.md."""
    lines = [
        "### Parts 1-2: core pieces with the exact base and critic",
        "",
        "| row | K | lambda (settled) | lambda*_K (scheme) | lambda* | lambda / lambda* - 1 "
        "| D_hat | D_hat of the fixed point at the settled lambda "
        "| closed-form KL at the settled lambda | deployed vs tilt | fixed point vs tilt "
        "| deployed vs fixed point |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["core"]:
        trqam = r["agent"] == "trqam"
        lam = (
            f"{r['lambda']:.4f} | {r['lambda_star_discrete']:.4f} | {r['lambda_star']:.4f} "
            f"| {r['lambda'] / r['lambda_star'] - 1:+.1%}"
            if trqam
            else " | | |"
        )
        lines.append(
            f"| {_label(r)} | {r['K']} | {lam} | {r['kl_estimate']:.4f} "
            f"| {r['kl_discrete_fixed_point']:.4f} | {r['kl_closed_form']:.4f} "
            f"| {r['deployed_vs_tilt_kl']:.4f} | {r['fixed_point_vs_tilt_kl']:.4f} "
            f"| {r['deployed_vs_fixed_point_kl']:.4f} |"
        )
    ks = sorted({v["K"] for v in results["scheme_variants"]})
    budgets = sorted({v["budget"] for v in results["scheme_variants"]})
    cols = [(b, k) for b in budgets for k in ks]
    lines += [
        "",
        "### Part 2: lambda*_K / lambda* - 1 of the exact discrete fixed point, one reference "
        "choice changed at a time",
        "",
        "| scheme | " + " | ".join(f"eps = {b:g}, K = {k}" for b, k in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    gaps = {
        (v["variant"], v["budget"], v["K"]): v["relative_gap"] for v in results["scheme_variants"]
    }
    for name in VARIANTS:
        lines.append(
            f"| {name} | " + " | ".join(f"{gaps[(name, b, k)]:+.1%}" for b, k in cols) + " |"
        )
    base = results["exact_base_discretisation"]
    lines += [
        "",
        "Exact base field, KL of its discretised laws to N(mu0, Sigma0): "
        + "; ".join(
            f"K = {k}: ODE {v['ode_vs_base_kl']:.4f}, SDE {v['sde_vs_base_kl']:.4f}"
            for k, v in base.items()
        )
        + ".",
    ]
    if "agent" in results:
        lines += [
            "",
            f"### Part 3: the full agent (BC base, learned critic, `agents.trqam`), "
            f"K = {results['agent'][0]['K']}",
            "",
            "| eps | lambda | lambda* | lambda / lambda* - 1 | lambda*_K (exact) "
            "| lambda / lambda*_K - 1 | part 1's pieces with the BC base: lambda "
            "(lambda / lambda*_K - 1) | lambda* with the learned base's law + learned critic "
            "| D_hat | deployed vs exact tilt | deployed vs tilt of the learned base + critic "
            "| EMA base vs N(mu0, Sigma0) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r, swap in zip(results["agent"], results["bc_base_core"], strict=True):
            both = r["plugged"]["both"] or {"lambda_star": np.nan, "deployed_vs_tilt_kl": np.nan}
            lam_k = r["lambda_star_discrete"]
            lines.append(
                f"| {r['budget']:g} | {r['lambda']:.4f} | {r['lambda_star']:.4f} "
                f"| {r['lambda'] / r['lambda_star'] - 1:+.1%} | {lam_k:.4f} "
                f"| {r['lambda'] / lam_k - 1:+.1%} "
                f"| {swap['lambda']:.4f} ({swap['lambda'] / lam_k - 1:+.1%}) "
                f"| {both['lambda_star']:.4f} | {r['kl_estimate']:.4f} "
                f"| {r['deployed_vs_tilt_kl']:.4f} | {both['deployed_vs_tilt_kl']:.4f} "
                f"| {r['ema_base_vs_base_kl']:.4f} |"
            )
    lines += [
        "",
        "### Part 4: the deployed law's KL to the base, three ways",
        "",
        "| row | K | D_hat | path KL | ODE: Gaussian | ODE: k-NN "
        "| ODE: fixed point | SDE: Gaussian | SDE: k-NN | SDE: fixed point "
        "| ODE Gaussian / D_hat |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["core"]:
        t = r["terminal_kl"]
        lines.append(
            f"| {_label(r)} | {r['K']} | {r['kl_estimate']:.4f} | {t['path_kl_fixed_point']:.4f} "
            f"| {t['ode_gaussian']:.4f} | {t['ode_knn']:.4f} | {t['ode_fixed_point']:.4f} "
            f"| {t['sde_gaussian']:.4f} | {t['sde_knn']:.4f} | {t['sde_fixed_point']:.4f} "
            f"| {t['ode_gaussian'] / r['kl_estimate']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _ellipse(ax, moments, color, ls="-", lw=1.2, label=None):
    """The 1- and 2-sigma ellipses of a 2-D Gaussian."""
    vals, vecs = np.linalg.eigh(np.asarray(moments.cov))
    angle = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    for n_sigma in (1, 2):
        pts = (vecs @ (n_sigma * np.sqrt(vals)[:, None] * circle)).T + moments.mean
        ax.plot(
            pts[:, 0], pts[:, 1], color=color, ls=ls, lw=lw, label=label if n_sigma == 1 else None
        )


def plot(results, arrays, s: Settings, path: str):
    """lambda against lambda* over training, deployed samples over the tilt's ellipses, the gaps
    against K, the full agent, and the part-4 KL estimates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(17, 15))
    lam_scale = results["lam_scale"]
    colours = plt.cm.viridis(np.linspace(0.1, 0.8, len(s.budgets)))
    qam_colours = plt.cm.autumn(np.linspace(0.0, 0.7, len(s.betas)))
    steps = (np.arange(s.steps // s.log_every) + 1) * s.log_every
    by_key = {(r["agent"], r.get("budget", r.get("beta")), r["K"]): r for r in results["core"]}
    for col, num_steps in enumerate(s.flow_steps[-3:]):
        ax = axes[0, col]
        lam_curves = arrays["core"][num_steps]["curves"]["lam"]
        for i, budget in enumerate(s.budgets):
            r = by_key[("trqam", budget, num_steps)]
            ax.plot(steps, lam_curves[i], color=colours[i], label=f"eps = {budget:g}")
            ax.axhline(r["lambda_star"], color=colours[i], ls="--", lw=1)
            ax.axhline(r["lambda_star_discrete"], color=colours[i], ls=":", lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("lambda")
        ax.set_title(f"K = {num_steps}: lambda, lambda* (--), the scheme's lambda*_K (..)")
        ax.legend(fontsize=8)

    big_k = max(s.flow_steps)
    for ax, agent, values, cols in (
        (axes[1, 0], "trqam", s.budgets, colours),
        (axes[1, 1], "qam", s.betas, qam_colours),
    ):
        ode = arrays["core"][big_k]["ode"]
        offset = 0 if agent == "trqam" else len(s.budgets)
        _ellipse(ax, gt.Moments(PROBLEM.mu0, PROBLEM.cov0), "k", "--", label="base")
        for i, value in enumerate(values):
            r = by_key[(agent, value, big_k)]
            pts = ode[offset + i][:800]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color=cols[i], alpha=0.3)
            label = f"{_label(r)}: KL to tilt {r['deployed_vs_tilt_kl']:.3f}"
            _ellipse(
                ax,
                gt.Moments(np.array(r["tilt_mean"]), np.array(r["tilt_cov"])),
                cols[i],
                label=label,
            )
        ax.plot(*PROBLEM.a_star, "k*", ms=10, label="a*")
        ax.set_aspect("equal")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-0.8, 1)
        ax.set_title(f"{agent.upper()} at K = {big_k}: deployed samples over the tilt's ellipses")
        ax.legend(fontsize=7, loc="lower right")

    ax = axes[1, 2]
    ks = np.array(s.flow_steps)
    for i, budget in enumerate(s.budgets):
        rs = [by_key[("trqam", budget, k)] for k in s.flow_steps]
        ax.plot(
            ks,
            [r["lambda"] / r["lambda_star"] - 1 for r in rs],
            "o-",
            color=colours[i],
            label=f"lambda / lambda* - 1, eps = {budget:g}",
        )
        ax.plot(
            ks,
            [r["lambda_star_discrete"] / r["lambda_star"] - 1 for r in rs],
            "x:",
            color=colours[i],
        )
        ax.plot(
            ks,
            [r["deployed_vs_tilt_kl"] for r in rs],
            "s--",
            color=colours[i],
            alpha=0.6,
            label=f"deployed vs tilt KL, eps = {budget:g}",
        )
    ax.axhline(0.1, color="grey", lw=0.8)
    ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(k) for k in ks], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("K (flow steps)")
    ax.set_title("Gaps vs K (x: the scheme's fixed point; grey: aims)")
    ax.legend(fontsize=7)

    if "agent" in arrays:
        agent, records = arrays["agent"], results["agent"]
        ax = axes[2, 0]
        agent_steps = (np.arange(s.agent_steps // s.log_every) + 1) * s.log_every
        for i, r in enumerate(records):
            ax.plot(
                agent_steps,
                agent["curves"]["lambda"][i] / lam_scale,
                color=colours[i],
                label=f"eps = {r['budget']:g}",
            )
            ax.axhline(r["lambda_star"], color=colours[i], ls="--", lw=1)
            ax.plot(
                steps,
                arrays["bc_base_core"]["lam"][i],
                color=colours[i],
                ls="-.",
                lw=1,
                label="part 1's pieces, BC base as reference" if i == 0 else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"Full agent, K = {s.agent_flow_steps}: lambda and lambda* (--)")
        ax.legend(fontsize=8)
        ax = axes[2, 1]
        _ellipse(ax, gt.Moments(PROBLEM.mu0, PROBLEM.cov0), "k", "--", label="base")
        for i, r in enumerate(records):
            pts = agent["laws"]["deployed"][i][:800]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color=colours[i], alpha=0.3)
            _ellipse(
                ax,
                gt.Moments(np.array(r["tilt_mean"]), np.array(r["tilt_cov"])),
                colours[i],
                label=f"eps = {r['budget']:g}: KL to tilt {r['deployed_vs_tilt_kl']:.3f}",
            )
        ax.plot(*PROBLEM.a_star, "k*", ms=10)
        ax.set_aspect("equal")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-0.8, 1)
        ax.set_title("Full agent: deployed samples over the exact tilt at its lambda")
        ax.legend(fontsize=7, loc="lower right")

    ax = axes[2, 2]
    for i, budget in enumerate(s.budgets):
        rs = [by_key[("trqam", budget, k)] for k in s.flow_steps]
        ratio = lambda key, rs=rs: [r["terminal_kl"][key] / r["kl_estimate"] for r in rs]
        ax.plot(
            ks,
            ratio("ode_gaussian"),
            "o-",
            color=colours[i],
            label=f"ODE, Gaussian, eps = {budget:g}",
        )
        ax.plot(ks, ratio("ode_knn"), "^:", color=colours[i], label="ODE, k-NN" if i == 0 else None)
        ax.plot(
            ks,
            ratio("sde_gaussian"),
            "s--",
            color=colours[i],
            label="SDE, Gaussian" if i == 0 else None,
        )
        ax.plot(
            ks,
            ratio("path_kl_fixed_point"),
            "d-.",
            color=colours[i],
            alpha=0.6,
            label="path KL (K - 1 steps), fixed point" if i == 0 else None,
        )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K (flow steps)")
    ax.set_ylabel("terminal KL to the base sampler / D_hat")
    ax.set_title("Part 4: terminal KL over D_hat (TRQAM rows)")
    ax.legend(fontsize=7)
    fig.suptitle(
        "Known answer: Gaussian base, quadratic critic (closed-form tilt and lambda*)", fontsize=14
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_outputs(results, arrays, s: Settings, out: str) -> str:
    """results.json, table.md and known_answer.png in `out`; returns the tables."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    tables = markdown_tables(results)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(tables)
    plot(results, arrays, s, os.path.join(out, "known_answer.png"))
    return tables


def _floats(text):
    return tuple(float(v) for v in text.split(",") if v)


def _ints(text):
    return tuple(int(v) for v in text.split(",") if v)


def parse_args(argv=None):
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="smoke run: K = 10 only, short training")
    p.add_argument("--budgets", type=_floats, default=None, help="TRQAM budgets eps")
    p.add_argument("--betas", type=_floats, default=None, help="QAM inverse temperatures")
    p.add_argument("--flow-steps", type=_ints, default=None, help="values of K")
    p.add_argument("--steps", type=int, default=None, help="part-1 training steps per row")
    p.add_argument("--agent-steps", type=int, default=None, help="part 3 (0 skips it)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--stability-check",
        action="store_true",
        help="instead: the stability bandit's terminal-KL puzzle (writes stability_check.json)",
    )
    args = p.parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    for name in ("budgets", "betas", "flow_steps", "steps", "agent_steps", "seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    s = dataclasses.replace(d, **values)
    for name in ("steps", "agent_steps"):
        if getattr(s, name) % s.log_every:
            p.error(
                f"--{name.replace('_', '-')}={getattr(s, name)} must be a multiple of {s.log_every}"
            )
    return s, args.out, args.stability_check


def main(argv=None) -> int:
    s, out, check = parse_args(argv)
    start = time.perf_counter()
    if check:
        result = stability_check(s.budgets, s.seed)
        result["wall_s"] = time.perf_counter() - start
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "stability_check.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result, indent=1))
        return 0
    results, arrays = run(s)
    results["timings"]["total_s"] = time.perf_counter() - start
    tables = write_outputs(results, arrays, s, out)
    print(tables)
    times = ", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items())
    print(f"wrote {out}/results.json, table.md, known_answer.png ({times})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
