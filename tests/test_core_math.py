"""Mathematical identities of the core modules, each checked against an independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trqam_jax import networks
from trqam_jax.adjoint import adjoint_matching_loss, lean_adjoint, terminal_adjoint
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import euler_sample, flow_times
from trqam_jax.sde import final_step, noise_scale_sq, ode_and_sde_rollout, sde_rollout
from trqam_jax.trust_region import path_kl

K, B, D, DIM = 6, 8, 4, 3


def _net_field(key, hidden=(16, 16)):
    module = networks.vector_field_module(hidden, DIM, layer_norm=False)
    params = networks.init_vector_field(key, module, D, DIM)
    return lambda obs: lambda x, t: networks.apply_vector_field(module, params, obs, x, t)


def test_lean_adjoint_equals_autodiff_through_reference_chain():
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    obs = jax.random.normal(keys[0], (B, D))
    fine, ref = _net_field(keys[1])(obs), _net_field(keys[2])(obs)
    critic = networks.critic_module((16,), layer_norm=True)
    critic_params = networks.init_critic_ensemble(keys[3], critic, 3, D, DIM)
    q_fn = lambda a: networks.apply_critic_ensemble(critic, critic_params, obs, a)
    x0 = jax.random.normal(keys[4], (B, DIM))
    xs = sde_rollout(fine, x0, keys[5], K)
    x_final = final_step(xs[-1], ref(xs[-1], jnp.full((B, 1), (K - 1) / K)), K)
    adjs = lean_adjoint(ref, xs, terminal_adjoint(q_fn, x_final), K)

    h = 1.0 / K
    times = np.arange(K) / K
    drift = lambda x, j: 2.0 * ref(x, jnp.full((B, 1), times[j] + h)) - x / (times[j] + h)
    states = list(xs) + [x_final]
    # Hold the noise path fixed: whatever the rollout added beyond the reference drift.
    residuals = [states[j + 1] - states[j] - h * drift(states[j], j) for j in range(K)]

    def cost_from(k):
        def cost(x):
            for j in range(k, K):
                x = x + h * drift(x, j) + residuals[j]
            return -jnp.sum(jnp.mean(q_fn(jnp.clip(x, -1.0, 1.0)), axis=0))

        return cost

    # Enough of x_K lies inside [-1, 1] that the clip does not zero the whole gradient.
    assert np.mean(np.abs(np.asarray(x_final)) < 1.0) > 0.3
    for k in range(K):
        np.testing.assert_allclose(adjs[k], jax.grad(cost_from(k))(xs[k]), atol=1e-5, rtol=1e-4)
    assert float(jnp.max(jnp.abs(adjs[0]))) > 1e-3  # the identity is not trivially 0 = 0


def _linear_field(weight, bias, time_coef):
    return lambda x, t: x @ weight.T + bias + time_coef * t


def test_path_kl_matches_monte_carlo_girsanov():
    """D_hat equals the expected log density ratio of fine vs reference Gaussian Euler chains."""
    rng = np.random.default_rng(0)
    fine_w, ref_w = 0.3 * rng.normal(size=(DIM, DIM)), 0.3 * rng.normal(size=(DIM, DIM))
    fine_b, ref_b = rng.normal(size=DIM), rng.normal(size=DIM)
    fine_c, ref_c = rng.normal(size=DIM), rng.normal(size=DIM)
    horizon, paths = 3, 4000
    h = 1.0 / K
    times = np.arange(K) / K
    g_sq = 2.0 * (1.0 - times + h) / (times + h)

    # The estimator, on paths of the training rollout.
    fine = _linear_field(*map(jnp.asarray, (fine_w, fine_b, fine_c)))
    ref = _linear_field(*map(jnp.asarray, (ref_w, ref_b, ref_c)))
    key_x0, key_sde = jax.random.split(jax.random.PRNGKey(1))
    xs = sde_rollout(fine, jax.random.normal(key_x0, (paths, DIM)), key_sde, K)
    t_k = jnp.broadcast_to(jnp.asarray(times, jnp.float32)[:, None, None], (K, paths, 1))
    dv = fine(xs, t_k) - ref(xs, t_k)
    per_path = jax.vmap(lambda d: path_kl(d[:, None], jnp.asarray(g_sq), K, horizon), 1)(dv)
    estimate = np.asarray(per_path, np.float64)
    np.testing.assert_allclose(
        estimate.mean(), path_kl(dv, jnp.asarray(g_sq), K, horizon), rtol=1e-5
    )

    # Independent plain-numpy log density ratio along paths of the fine chain.
    def mean_step(x, t, w, b, c):
        return x + h * (2.0 * (x @ w.T + b + c * t) - x / (t + h))

    x = rng.normal(size=(paths, DIM))
    log_ratio = np.zeros(paths)
    for k in range(K):
        var = h * g_sq[k]
        mean_f = mean_step(x, times[k], fine_w, fine_b, fine_c)
        mean_b = mean_step(x, times[k], ref_w, ref_b, ref_c)
        x_next = mean_f + np.sqrt(var) * rng.normal(size=x.shape)
        log_ratio += (np.sum((x_next - mean_b) ** 2, -1) - np.sum((x_next - mean_f) ** 2, -1)) / (
            2 * var
        )
        x = x_next
    monte_carlo = log_ratio / horizon

    diff = estimate.mean() - monte_carlo.mean()
    stderr = np.sqrt(estimate.var() / paths + monte_carlo.var() / paths)
    assert abs(diff) < 3 * stderr, (estimate.mean(), monte_carlo.mean(), stderr)
    assert estimate.mean() > 10 * stderr  # a KL well away from zero, so the check has teeth


def test_adjoint_matching_minimiser_and_temperature_identity():
    rng = np.random.default_rng(2)
    adjs = jnp.asarray(rng.normal(size=(K, B, DIM)), jnp.float32)
    g = jnp.sqrt(noise_scale_sq(flow_times(K), 1.0 / K))
    lam_eff = 2.5
    sigma = g / jnp.sqrt(lam_eff)
    # Train a free fine-minus-reference field at the fixed rollout states on L_AM alone.
    dv = jnp.zeros((K, B, DIM))
    opt = optax.adam(0.05)
    opt_state = opt.init(dv)
    grad_fn = jax.jit(jax.grad(lambda v: adjoint_matching_loss(v, adjs, sigma)))
    for _ in range(1500):
        updates, opt_state = opt.update(grad_fn(dv), opt_state)
        dv = optax.apply_updates(dv, updates)
    expected = -(g[:, None, None] ** 2) / (2.0 * lam_eff) * adjs
    np.testing.assert_allclose(dv, expected, atol=1e-3)

    # L_AM(TRQAM, lambda) = lambda * L_AM(QAM, beta = 1 / lambda) for any dv.
    dv_any = jnp.asarray(rng.normal(size=(K, B, DIM)), jnp.float32)
    trqam = adjoint_matching_loss(dv_any, adjs, g / jnp.sqrt(lam_eff))
    qam = adjoint_matching_loss(dv_any, adjs / lam_eff, g)
    np.testing.assert_allclose(trqam, lam_eff * qam, rtol=1e-5)


def test_euler_sampler_matches_numpy_loop():
    rng = np.random.default_rng(3)
    w, b, c = 0.5 * rng.normal(size=(DIM, DIM)), rng.normal(size=DIM), rng.normal(size=DIM)
    x0 = rng.normal(size=(B, DIM))
    x = x0.copy()
    for k in range(K):
        x = x + (1.0 / K) * (x @ w.T + b + c * (k / K))
    for unroll in (1, True):
        out = euler_sample(_linear_field(*map(jnp.asarray, (w, b, c))), jnp.asarray(x0), K, unroll)
        np.testing.assert_allclose(out, np.clip(x, -1, 1), atol=1e-5)


def test_td_target_and_critic_loss_match_numpy():
    rng = np.random.default_rng(4)
    q_next, q = rng.normal(size=(5, B)), rng.normal(size=(5, B))
    rewards, masks, weights = rng.normal(size=B), rng.integers(0, 2, B), rng.integers(0, 2, B)
    gamma, horizon, rho = 0.99, 4, 0.5
    expected = rewards + gamma**horizon * masks * (q_next.mean(0) - rho * q_next.std(0))
    targets = td_target(*map(jnp.asarray, (rewards, masks, q_next)), gamma, horizon, rho)
    np.testing.assert_allclose(targets, expected, rtol=1e-5)
    loss = critic_loss(jnp.asarray(q), targets, jnp.asarray(weights, jnp.float32))
    manual = np.mean(
        [[w * (qe - y) ** 2 for qe, y, w in zip(row, expected, weights, strict=True)] for row in q]
    )
    np.testing.assert_allclose(loss, manual, rtol=1e-5)


def test_paired_rollout_equals_euler_sampler_and_sde_rollout():
    """The fused chain's two halves are `euler_sample` and `sde_rollout` of their own rows."""
    keys = jax.random.split(jax.random.PRNGKey(7), 6)
    net = _net_field(keys[0])
    ode_obs, sde_obs = jax.random.normal(keys[1], (6, D)), jax.random.normal(keys[2], (B, D))
    ode_x0 = 3.0 * jax.random.normal(keys[3], (6, DIM))  # large enough for the clip to act
    sde_x0 = jax.random.normal(keys[4], (B, DIM))
    paired = net(jnp.concatenate([ode_obs, sde_obs]))
    actions, xs = ode_and_sde_rollout(paired, ode_x0, sde_x0, keys[5], K)
    np.testing.assert_allclose(actions, euler_sample(net(ode_obs), ode_x0, K), atol=1e-5)
    np.testing.assert_allclose(xs, sde_rollout(net(sde_obs), sde_x0, keys[5], K), atol=1e-5)
    assert np.abs(actions).max() == 1.0 and xs.shape == (K, B, DIM)
