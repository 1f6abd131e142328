"""The known-answer experiment's results: each run's settled numbers against the closed forms
(the tilt, lambda*, the scheme's exact fixed point), the scheme's variants, the learned critic's
quadratic fit, and the Jacobians of the exact and the BC base field."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax import bandit
from trqam_jax import gaussian_tilt as gt
from trqam_jax.known_answer.core import core_rows
from trqam_jax.known_answer.problem import (
    PROBLEM,
    Settings,
    as_field,
    dual_config,
    exact_base_field,
    field_module,
)
from trqam_jax.stability.tables import tail_mean


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
        settled = {k: float(tail_mean(v[i])) for k, v in curves.items()}
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
        lam = float(tail_mean(out["curves"]["lambda"][i])) / lam_scale
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
                "kl_estimate": float(tail_mean(out["curves"]["kl_ema"][i])),
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
    module = field_module(s)
    rng = np.random.default_rng(s.seed)
    x = PROBLEM.mu0 + rng.normal(size=(2000, 2)) @ np.linalg.cholesky(PROBLEM.cov0).T
    x = jnp.asarray(x, jnp.float32)
    fields = {"exact": exact_base_field(), "bc": as_field(module, base_params)}
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
