"""Closed forms of the Gaussian known-answer problem (issue 17; experiments/known_answer.py).

Behaviour N(mu0, Sigma0), critic Q(a) = -1/2 (a - a*)^T A (a - a*). Everything the fine-tuning
touches is then linear-Gaussian, so the answer is known twice over:
- in continuous time: the tilt pi_base exp(beta Q) / Z is N(mu_b, Sigma_b) and, under the
  memoryless schedule, the optimal path KL equals KL(tilt || base);
- in the discretised scheme the library runs (sde.py, adjoint.py, trust_region.py; with the
  reference's +h time shifts and deterministic last step): the fixed point of adjoint matching
  is an affine field per flow step, computed exactly by a backward recursion
  (`discrete_fixed_point`), with its expected D_hat and the laws of its SDE and ODE samplers in
  closed form (`chain_moments`).

The closed forms are numpy float64 (independent of the JAX code they check); the two velocity
fields the training calls are JAX functions.
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Problem(NamedTuple):
    """Base law N(mu0, cov0) and quadratic critic with maximiser a_star and Hessian -hess.

    mu0: (d,), cov0: (d, d) SPD, a_star: (d,), hess: (d, d) SPD (the matrix A).
    """

    mu0: np.ndarray
    cov0: np.ndarray
    a_star: np.ndarray
    hess: np.ndarray


class Affine(NamedTuple):
    """Per-step affine fields v_k(x) = b[k] + W[k] x: b (K, d), W (K, d, d)."""

    b: np.ndarray
    W: np.ndarray


class Moments(NamedTuple):
    """Mean (d,) and covariance (d, d) of a Gaussian law."""

    mean: np.ndarray
    cov: np.ndarray


def rotation(angle: float) -> np.ndarray:
    """2-D rotation matrix by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def gaussian_kl(p: Moments, q: Moments) -> float:
    """KL(N(p.mean, p.cov) || N(q.mean, q.cov)) in nats."""
    d = p.mean.shape[0]
    q_inv = np.linalg.inv(q.cov)
    diff = q.mean - p.mean
    _, logdet_p = np.linalg.slogdet(p.cov)
    _, logdet_q = np.linalg.slogdet(q.cov)
    return 0.5 * float(np.trace(q_inv @ p.cov) + diff @ q_inv @ diff - d + logdet_q - logdet_p)


def sample_moments(samples) -> Moments:
    """Sample mean and (unbiased) covariance of (n, d) samples."""
    x = np.asarray(samples, np.float64)
    return Moments(x.mean(axis=0), np.cov(x, rowvar=False))


def tilt(problem: Problem, beta: float) -> Moments:
    """N(mu0, cov0) exp(beta Q) / Z = N(mu_b, cov_b), cov_b = (cov0^-1 + beta A)^-1,
    mu_b = cov_b (cov0^-1 mu0 + beta A a*)."""
    prec0 = np.linalg.inv(problem.cov0)
    cov = np.linalg.inv(prec0 + beta * problem.hess)
    return Moments(cov @ (prec0 @ problem.mu0 + beta * problem.hess @ problem.a_star), cov)


def tilt_kl(problem: Problem, beta: float) -> float:
    """KL(tilt at beta || base): the optimal path KL under the memoryless schedule."""
    return gaussian_kl(tilt(problem, beta), Moments(problem.mu0, problem.cov0))


def bisect_decreasing(fn, target: float, lo: float, hi: float, iters: int = 40) -> float:
    """x in [lo, hi] with fn(x) = target for a decreasing fn (geometric bisection, lo > 0).

    Raises:
      ValueError when not 0 < lo < hi, or target is outside [fn(hi), fn(lo)] (no root there).
    """
    if not 0 < lo < hi:
        raise ValueError(f"bracket [lo, hi] = [{lo}, {hi}] must satisfy 0 < lo < hi")
    f_lo, f_hi = fn(lo), fn(hi)
    if not f_hi <= target <= f_lo:
        raise ValueError(
            f"target {target} is outside [fn({hi}) = {f_hi:.4g}, fn({lo}) = {f_lo:.4g}]; "
            "widen the bracket [lo, hi]"
        )
    for _ in range(iters):
        mid = np.sqrt(lo * hi)
        if fn(mid) > target:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def lambda_star(
    problem: Problem, budget: float, lam_scale: float, lo: float = 1e-3, hi: float = 1e3
) -> float:
    """The dual variable lambda whose tilt at beta = 1 / (lam_scale lambda) has KL = budget."""
    return bisect_decreasing(lambda lam: tilt_kl(problem, 1.0 / (lam_scale * lam)), budget, lo, hi)


# ---- The exact flow field of a Gaussian target under x_t = (1 - t) x0 + t x1, x0 ~ N(0, I). ----


def flow_affine(target: Moments, times):
    """(W (K, d, d), b (K, d)) with v(x, t_k) = b[k] + W[k] x at each of `times` (K,):
    v = mu + (t cov - (1 - t) I) S_t^-1 (x - t mu), S_t = (1 - t)^2 I + t^2 cov, the conditional
    mean E[x1 - x0 | x_t = x]."""
    t = np.asarray(times, np.float64)[:, None, None]
    eye = np.eye(target.mean.shape[0])
    s_t = (1.0 - t) ** 2 * eye + t**2 * target.cov
    W = (t * target.cov - (1.0 - t) * eye) @ np.linalg.inv(s_t)
    return W, target.mean - t[:, :, 0] * (W @ target.mean)


def flow_velocity(target: Moments):
    """The exact field of `target` as a JAX function (x (B, d), t (B, 1)) -> (B, d).

    cov = U diag(s) U^T commutes with S_t, so the gain (t cov - (1 - t) I) S_t^-1 is
    U diag((t s - (1 - t)) / ((1 - t)^2 + t^2 s)) U^T: elementwise in the eigenbasis, no solves.
    Its Euler ODE maps N(0, I) to N(mean, cov) as K grows (tests/test_known_answer.py).
    """
    eigvals, eigvecs = np.linalg.eigh(target.cov)
    s = jnp.asarray(eigvals, jnp.float32)
    U = jnp.asarray(eigvecs, jnp.float32)
    mu = jnp.asarray(target.mean, jnp.float32)

    def velocity(x, t):
        gain = (t * s - (1.0 - t)) / ((1.0 - t) ** 2 + t**2 * s)  # (B, d) in the eigenbasis
        return mu + ((x - t * mu) @ U * gain) @ U.T

    return velocity


def quadratic_critic(problem: Problem):
    """Q as the agents' ensemble interface: actions (B, d) -> (1, B)."""
    a_star = jnp.asarray(problem.a_star, jnp.float32)
    hess = jnp.asarray(problem.hess, jnp.float32)

    def q_fn(actions):
        diff = actions - a_star
        return -0.5 * jnp.einsum("bi,ij,bj->b", diff, hess, diff)[None]

    return q_fn


def q_values(problem: Problem, actions) -> np.ndarray:
    """Q(a) in numpy: (n, d) -> (n,)."""
    diff = np.asarray(actions, np.float64) - problem.a_star
    return -0.5 * np.einsum("bi,ij,bj->b", diff, problem.hess, diff)


# ---- The discretised scheme of the library, solved exactly for affine fields. ----


class Scheme(NamedTuple):
    """Discretisation choices of the reference implementation (all True: the library's scheme).

    noise_time_shift: g_k^2 = 2 (1 - t_k + h) / (t_k + h) and the drift's x / (t_k + h); False
      uses 2 (1 - t_k) / t_k and x / t_k for k >= 1 (k = 0 keeps the shift: both are infinite).
    adjoint_time_shift: the lean adjoint's Jacobian of v_base at t_k + h; False: at t_k, which
      makes it the exact gradient of the base Euler chain.
    deterministic_last: x_K = x_{K-1} + h v_base(x_{K-1}, t_{K-1}); False: one more SDE step of
      the fine field.
    last_kl_term: D_hat sums all K steps, the last one included although (with
      deterministic_last) no stochastic transition uses dv_{K-1}; False drops that term.
    """

    noise_time_shift: bool = True
    adjoint_time_shift: bool = True
    deterministic_last: bool = True
    last_kl_term: bool = True


REFERENCE = Scheme()


class _Grid(NamedTuple):
    h: float
    t: np.ndarray  # t_k, (K,)
    g_sq: np.ndarray  # g_k^2, (K,)
    drift_time: np.ndarray  # the tau of x / tau in the drift and of adj / tau in the adjoint
    jac_time: np.ndarray  # time of the base field's Jacobian in the adjoint


def _grid(num_steps: int, scheme: Scheme) -> _Grid:
    h = 1.0 / num_steps
    t = np.arange(num_steps) * h
    g_sq, drift_time = 2.0 * (1.0 - t + h) / (t + h), t + h
    if not scheme.noise_time_shift:
        safe_t = np.where(t > 0, t, 1.0)
        g_sq = np.where(t > 0, 2.0 * (1.0 - t) / safe_t, g_sq)
        drift_time = np.where(t > 0, t, drift_time)
    return _Grid(h, t, g_sq, drift_time, t + h if scheme.adjoint_time_shift else t)


def base_affine(problem: Problem, times) -> Affine:
    """The exact base field at each of `times` (K,)."""
    W, b = flow_affine(Moments(problem.mu0, problem.cov0), times)
    return Affine(b, W)


def discrete_fixed_point(
    problem: Problem, num_steps: int, inv_temp: float, scheme: Scheme = REFERENCE
) -> Affine:
    """The exact fixed point dv_k(x) = b[k] + W[k] x of adjoint matching in the library's scheme.

    With the exact base as reference and the exact Q, the matching loss at step k is minimised by
    dv_k(x) = -(g_k^2 / 2) beta E[adj_k | x_k = x] (TRQAM: beta = 1 / lambda_eff; QAM: beta), the
    expectation over the rollout of the fine SDE itself (K - 1 stochastic steps with drift
    2 (v_base + dv) - x / (t + h), then x_K = x_{K-1} + h v_base(x_{K-1}, t_{K-1})). The lean
    adjoint is linear in adj_K = beta A (x_K - a*) (clipping ignored: the laws stay inside
    [-1, 1]) and E[x_K | x_k] is affine, so dv_k is affine and solves a d x d linear system
    that involves dv_{k+1..K-1} only through E[x_K | x_{k+1}]: one backward pass.
    """
    grid = _grid(num_steps, scheme)
    h = grid.h
    d = problem.mu0.shape[0]
    eye = np.eye(d)
    base = base_affine(problem, grid.t)
    base_jac = base_affine(problem, grid.jac_time).W
    # E[x_K | x_{k+1} = x] = C x + c, built backwards; the deterministic last step starts it.
    if scheme.deterministic_last:
        C, c = eye + h * base.W[-1], h * base.b[-1]
    else:
        C, c = eye, np.zeros(d)
    adj_map = eye  # adj_k = adj_map @ adj_K
    b_out, W_out = np.zeros((num_steps, d)), np.zeros((num_steps, d, d))
    for k in range(num_steps - 1, -1, -1):
        adj_map = (eye + h * (2.0 * base_jac[k].T - eye / grid.drift_time[k])) @ adj_map
        gain = 0.5 * grid.g_sq[k] * inv_temp * adj_map @ problem.hess
        if k == num_steps - 1 and scheme.deterministic_last:  # x_K does not use dv_{K-1}
            W_out[k] = -gain @ C
            b_out[k] = -gain @ (c - problem.a_star)
            continue
        F0 = eye + h * (2.0 * base.W[k] - eye / grid.drift_time[k])
        f0 = 2.0 * h * base.b[k]
        solve = np.linalg.inv(eye + 2.0 * h * gain @ C)
        W_out[k] = -solve @ gain @ C @ F0
        b_out[k] = -solve @ gain @ (C @ f0 + c - problem.a_star)
        c = C @ (f0 + 2.0 * h * b_out[k]) + c
        C = C @ (F0 + 2.0 * h * W_out[k])
    return Affine(b_out, W_out)


class ChainSummary(NamedTuple):
    """Closed-form laws and KL terms of the scheme for a fine field base + dv (affine).

    sde: law of x_K from the training-time SDE; ode: law of the deployed Euler ODE of the fine
    field; d_hat: E[D_hat] (H = 1); path_kl: the exact KL between the fine and base SDE chains
    (their stochastic steps only).
    """

    sde: Moments
    ode: Moments
    d_hat: float
    path_kl: float


def chain_moments(problem: Problem, dv: Affine, scheme: Scheme = REFERENCE) -> ChainSummary:
    """Propagate N(0, I) through the library's SDE rollout and Euler sampler of v_base + dv."""
    num_steps, d = dv.b.shape
    grid = _grid(num_steps, scheme)
    h = grid.h
    eye = np.eye(d)
    base = base_affine(problem, grid.t)
    mean, cov = np.zeros(d), eye
    ode_mean, ode_cov = np.zeros(d), eye
    terms = np.zeros(num_steps)
    for k in range(num_steps):
        W, b = base.W[k] + dv.W[k], base.b[k] + dv.b[k]
        shift = dv.b[k] + dv.W[k] @ mean
        terms[k] = (2.0 * h / grid.g_sq[k]) * (shift @ shift + np.trace(dv.W[k] @ cov @ dv.W[k].T))
        if k < num_steps - 1 or not scheme.deterministic_last:
            F = eye + h * (2.0 * W - eye / grid.drift_time[k])
            mean, cov = F @ mean + 2.0 * h * b, F @ cov @ F.T + h * grid.g_sq[k] * eye
        else:
            L = eye + h * base.W[k]
            mean, cov = L @ mean + h * base.b[k], L @ cov @ L.T
        E = eye + h * W
        ode_mean, ode_cov = E @ ode_mean + h * b, E @ ode_cov @ E.T
    stochastic = terms if not scheme.deterministic_last else terms[:-1]
    counted = terms if scheme.last_kl_term or not scheme.deterministic_last else terms[:-1]
    return ChainSummary(
        sde=Moments(mean, cov),
        ode=Moments(ode_mean, ode_cov),
        d_hat=float(counted.sum()),
        path_kl=float(stochastic.sum()),
    )


def zero_field(problem: Problem, num_steps: int) -> Affine:
    """dv = 0: the base itself."""
    d = problem.mu0.shape[0]
    return Affine(np.zeros((num_steps, d)), np.zeros((num_steps, d, d)))


def fixed_point_summary(
    problem: Problem, num_steps: int, inv_temp: float, scheme: Scheme = REFERENCE
) -> ChainSummary:
    """`chain_moments` of the exact discrete fixed point at inverse temperature `inv_temp`."""
    return chain_moments(
        problem, discrete_fixed_point(problem, num_steps, inv_temp, scheme), scheme
    )


def lambda_star_discrete(
    problem: Problem,
    budget: float,
    lam_scale: float,
    num_steps: int,
    scheme: Scheme = REFERENCE,
    lo: float = 1e-3,
    hi: float = 1e3,
) -> float:
    """The lambda where the scheme's fixed point has E[D_hat] = budget: where the dual settles
    with a perfect optimiser."""

    def d_hat(lam):
        return fixed_point_summary(problem, num_steps, 1.0 / (lam_scale * lam), scheme).d_hat

    return bisect_decreasing(d_hat, budget, lo, hi)
