"""The known-answer problem's closed forms against samples and the library's own pieces, and a
short run of the experiment's part 1 against its lambda* (trqam_jax/known_answer/)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import known_answer as cli
from trqam_jax import gaussian_tilt as gt
from trqam_jax.adjoint import lean_adjoint, terminal_adjoint
from trqam_jax.flow import euler_sample, flow_times
from trqam_jax.known_answer.core import run_core, warm_start
from trqam_jax.known_answer.problem import PROBLEM, Settings
from trqam_jax.known_answer.records import VARIANTS, core_records, fit_quadratic
from trqam_jax.sde import final_step, noise_scale_sq, sde_rollout

BASE = gt.Moments(PROBLEM.mu0, PROBLEM.cov0)
LAM_SCALE = 3.0


def _base_samples(n, seed):
    rng = np.random.default_rng(seed)
    return PROBLEM.mu0 + rng.normal(size=(n, 2)) @ np.linalg.cholesky(PROBLEM.cov0).T


def _affine_field(dv: gt.Affine, num_steps: int):
    """v_base + dv as a JAX field on the grid t_k = k / K (the affine fields of the scheme)."""
    base = gt.base_affine(PROBLEM, np.arange(num_steps) / num_steps)
    W = jnp.asarray(base.W + dv.W, jnp.float32)
    b = jnp.asarray(base.b + dv.b, jnp.float32)

    def field(x, t):
        k = jnp.round(t[:, 0] * num_steps).astype(jnp.int32)
        return b[k] + jnp.einsum("bij,bj->bi", W[k], x)

    return field


def test_exact_base_field_is_the_conditional_mean_and_its_euler_map_converges():
    # v(x, t) = E[x1 - x0 | x_t = x]: the least-squares affine fit of x1 - x0 on x_t.
    n, t = 200_000, 0.6
    x0 = np.random.default_rng(0).normal(size=(n, 2))
    x1 = _base_samples(n, 1)
    x_t = (1 - t) * x0 + t * x1
    design = np.concatenate([np.ones((n, 1)), x_t], axis=1)
    coef, *_ = np.linalg.lstsq(design, x1 - x0, rcond=None)
    W, b = gt.flow_affine(BASE, [t])
    np.testing.assert_allclose(coef[0], b[0], atol=0.01)
    np.testing.assert_allclose(coef[1:].T, W[0], atol=0.01)
    field = gt.flow_velocity(BASE)
    probe = jnp.asarray(x_t[:64], jnp.float32)
    np.testing.assert_allclose(
        field(probe, jnp.full((64, 1), t)), x_t[:64] @ W[0].T + b[0], atol=1e-5
    )
    # Its Euler ODE maps N(0, I) to N(mu0, Sigma0) as K grows: the samples' moments at K = 200,
    # and the closed-form Euler law (which the samples at K = 10 match) converging in K.
    noise = jax.random.normal(jax.random.PRNGKey(0), (40_000, 2))
    fine = gt.sample_moments(euler_sample(field, noise, 200))
    np.testing.assert_allclose(fine.mean, PROBLEM.mu0, atol=0.01)
    np.testing.assert_allclose(fine.cov, PROBLEM.cov0, atol=0.004)
    coarse = gt.sample_moments(euler_sample(field, noise, 10))
    law_10 = gt.chain_moments(PROBLEM, gt.zero_field(PROBLEM, 10)).ode
    np.testing.assert_allclose(coarse.mean, law_10.mean, atol=0.01)
    np.testing.assert_allclose(coarse.cov, law_10.cov, atol=0.004)
    gaps = [
        gt.gaussian_kl(gt.chain_moments(PROBLEM, gt.zero_field(PROBLEM, k)).ode, BASE)
        for k in (10, 40, 160)
    ]
    assert gaps[0] > 3 * gaps[1] > 9 * gaps[2] and gaps[2] < 0.005


def test_tilt_matches_reweighted_samples_and_gaussian_kl_matches_monte_carlo():
    x = _base_samples(400_000, 2)
    for beta in (0.3, 1.0, 3.0):
        w = np.exp(beta * (gt.q_values(PROBLEM, x) - gt.q_values(PROBLEM, x).max()))
        w /= w.sum()
        mean = w @ x
        cov = (x - mean).T @ ((x - mean) * w[:, None])
        tilt = gt.tilt(PROBLEM, beta)
        np.testing.assert_allclose(tilt.mean, mean, atol=0.004)
        np.testing.assert_allclose(tilt.cov, cov, atol=0.002)
    # KL(p || q) = E_p[log p - log q], with the tilt as p and the base as q.
    tilt = gt.tilt(PROBLEM, 1.0)
    samples = (
        tilt.mean
        + np.random.default_rng(3).normal(size=(400_000, 2)) @ np.linalg.cholesky(tilt.cov).T
    )

    def log_density(m: gt.Moments, y):
        diff = y - m.mean
        quad = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(m.cov), diff)
        return -0.5 * (quad + np.linalg.slogdet(2 * np.pi * m.cov)[1])

    monte_carlo = np.mean(log_density(tilt, samples) - log_density(BASE, samples))
    assert abs(gt.gaussian_kl(tilt, BASE) - monte_carlo) < 0.01
    assert gt.gaussian_kl(BASE, BASE) == pytest.approx(0.0, abs=1e-12)


def test_lambda_star_bisection_matches_a_brute_force_grid():
    grid = np.geomspace(0.01, 10.0, 20_000)
    kl = np.array([gt.tilt_kl(PROBLEM, 1.0 / (LAM_SCALE * lam)) for lam in grid])
    assert np.all(np.diff(kl) < 0)  # monotone in lambda: bisection applies
    for budget in (0.1, 0.3, 1.0):
        brute = grid[np.argmin(np.abs(kl - budget))]
        assert gt.lambda_star(PROBLEM, budget, LAM_SCALE) == pytest.approx(brute, rel=1e-3)
    coarse = np.geomspace(0.05, 5.0, 300)
    d_hat = [gt.fixed_point_summary(PROBLEM, 10, 1.0 / (LAM_SCALE * lam)).d_hat for lam in coarse]
    brute = coarse[np.argmin(np.abs(np.array(d_hat) - 0.3))]
    assert gt.lambda_star_discrete(PROBLEM, 0.3, LAM_SCALE, 10) == pytest.approx(brute, rel=0.02)
    with pytest.raises(ValueError, match="outside"):
        gt.lambda_star(PROBLEM, 0.3, LAM_SCALE, lo=0.5, hi=1.0)
    with pytest.raises(ValueError, match="0 < lo < hi"):
        gt.lambda_star(PROBLEM, 0.3, LAM_SCALE, lo=0.0)


def test_discrete_fixed_point_is_the_minimiser_of_the_librarys_matching_loss():
    """Roll out the library's SDE with the fixed-point field, take the library's lean adjoints
    (QAM's: terminal adjoint scaled by beta) and regress them on x_k: the minimiser
    -(g_k^2 / 2) E[adj_k | x_k] of the matching loss must give back dv_k."""
    num_steps, beta, n = 10, 0.6, 100_000
    dv = gt.discrete_fixed_point(PROBLEM, num_steps, beta)
    field = _affine_field(dv, num_steps)
    ref = gt.flow_velocity(BASE)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (n, 2))
    xs = sde_rollout(field, x0, jax.random.PRNGKey(2), num_steps)
    t_last = jnp.full((n, 1), 1.0 - 1.0 / num_steps)
    x_final = final_step(xs[-1], ref(xs[-1], t_last), num_steps)
    adjs = lean_adjoint(
        ref, xs, beta * terminal_adjoint(gt.quadratic_critic(PROBLEM), x_final), num_steps
    )
    g_sq = np.asarray(noise_scale_sq(flow_times(num_steps), 1.0 / num_steps))
    for k in (0, 4, num_steps - 2, num_steps - 1):
        design = np.concatenate([np.ones((n, 1)), np.asarray(xs[k])], axis=1)
        target = -0.5 * g_sq[k] * np.asarray(adjs[k])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        scale = np.abs(dv.W[k]).max() + np.abs(dv.b[k]).max()
        np.testing.assert_allclose(coef[0], dv.b[k], atol=0.03 * scale)
        np.testing.assert_allclose(coef[1:].T, dv.W[k], atol=0.03 * scale)
    # The closed-form laws of the same chains against the library's samplers.
    summary = gt.chain_moments(PROBLEM, dv)
    sde = gt.sample_moments(x_final)
    ode = gt.sample_moments(euler_sample(field, x0, num_steps))
    for got, want in ((sde, summary.sde), (ode, summary.ode)):
        np.testing.assert_allclose(got.mean, want.mean, atol=0.005)
        np.testing.assert_allclose(got.cov, want.cov, atol=0.002)


def test_discrete_fixed_point_converges_to_the_tilt():
    beta = 1.0 / (LAM_SCALE * gt.lambda_star(PROBLEM, 0.3, LAM_SCALE))
    tilt = gt.tilt(PROBLEM, beta)
    gaps = []
    for num_steps in (10, 40, 320):
        summary = gt.fixed_point_summary(PROBLEM, num_steps, beta)
        gaps.append((abs(summary.d_hat / 0.3 - 1), gt.gaussian_kl(summary.ode, tilt)))
    assert gaps[0][0] > gaps[1][0] > gaps[2][0] and gaps[2][0] < 0.02
    assert gaps[0][1] > gaps[1][1] > gaps[2][1] and gaps[2][1] < 0.002
    # Every variant of the scheme moves the answer (each choice it isolates is live).
    reference = gt.lambda_star_discrete(PROBLEM, 0.3, LAM_SCALE, 10)
    for scheme in VARIANTS.values():
        if scheme != gt.REFERENCE:
            assert gt.lambda_star_discrete(PROBLEM, 0.3, LAM_SCALE, 10, scheme) != reference


def test_fit_quadratic_recovers_the_critic():
    points = _base_samples(500, 4)
    a_star, hess, rms = fit_quadratic(points, gt.q_values(PROBLEM, points) + 0.7)
    np.testing.assert_allclose(a_star, PROBLEM.a_star, atol=1e-8)
    np.testing.assert_allclose(hess, PROBLEM.hess, atol=1e-8)
    assert rms < 1e-10


def test_short_part1_run_settles_at_the_schemes_lambda_star():
    """TRQAM with the exact base and critic, K = 10, 600 steps: the settled lambda is within 10%
    of lambda*_K, the exact fixed point of the discretised scheme (lambda*_K / lambda* - 1 is
    +50% to +78% at K = 10: the discretisation, shown by part 2), and the deployed law is within
    a Gaussian KL of 0.02 of that fixed point's. Short, so the dual step is 0.02 (the default
    run's 0.01 needs ~1500 steps at eps = 0.3)."""
    s = dataclasses.replace(
        Settings(),
        budgets=(0.3, 1.0),
        betas=(),
        flow_steps=(10,),
        steps=600,
        eta_lambda=0.02,
        warm_steps=4000,
        eval_samples=2048,
        knn_samples=256,
    )
    fine0, warm_mse = warm_start(s, jax.random.PRNGKey(0))
    assert warm_mse < 0.02
    curves, laws, base_laws = run_core(10, s, fine0, jax.random.PRNGKey(1))
    records = core_records(s, 10, curves, laws, base_laws)
    for r in records:
        assert r["lambda"] == pytest.approx(r["lambda_star_discrete"], rel=0.1), r
        assert r["kl_estimate"] == pytest.approx(r["budget"], rel=0.1)
        assert r["deployed_vs_fixed_point_kl"] < 0.02
        assert r["lambda_star_discrete"] > 1.4 * r["lambda_star"]  # what K = 10 costs


def test_cli_rejects_steps_off_the_logging_grid():
    with pytest.raises(SystemExit):
        cli.parse_args(["--out", "/tmp/x", "--steps", "1005"])
