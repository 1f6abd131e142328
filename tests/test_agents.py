"""Properties of the compiled TRQAM / QAM update step on tiny networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tiny import example_inputs, synthetic_batch, tiny_config
from trqam_jax.agents import bc, qam, trqam


def _run(agent, state, steps, key):
    """`steps` updates in one lax.scan on fresh synthetic batches; returns (state, metrics)."""

    def body(state, step_key):
        batch_key, update_key = jax.random.split(step_key)
        return agent.update(state, synthetic_batch(batch_key), update_key)

    return jax.lax.scan(body, state, jax.random.split(key, steps))


def test_temperature_identity_between_trqam_and_qam():
    """am_loss(TRQAM, lambda_eff) = lambda_eff * am_loss(QAM, beta = 1 / lambda_eff)."""
    lam_eff = 4.0
    config = tiny_config("trqam")
    key = jax.random.PRNGKey(0)
    tr_state = trqam.init(key, config, *example_inputs())
    tr_state = tr_state.replace(lam=jnp.asarray(lam_eff / config.lam_scale))
    qam_state = qam.init(key, tiny_config("qam", inv_temp=1.0 / lam_eff), *example_inputs())
    batch = synthetic_batch(jax.random.PRNGKey(1))
    _, tr_metrics = jax.jit(trqam.update)(tr_state, batch, key)
    _, qam_metrics = jax.jit(qam.update)(qam_state, batch, key)
    np.testing.assert_allclose(tr_metrics["am_loss"], lam_eff * qam_metrics["am_loss"], rtol=1e-4)
    np.testing.assert_allclose(tr_metrics["critic_loss"], qam_metrics["critic_loss"], rtol=1e-6)
    np.testing.assert_allclose(qam_metrics["lambda"], lam_eff, rtol=1e-6)


def test_dual_rule_replays_from_logged_kl():
    """lambda and kl_ema follow §9 exactly, given the logged per-step KL estimates."""
    # Starting at KL = 0 with a tight budget and a fast dual, both the lower projection of lambda
    # and the clipping of D_hat at 2 eps happen within 50 steps.
    config = tiny_config("trqam", kl_budget=5e-4, eta_lambda=1000.0)
    state = trqam.init(jax.random.PRNGKey(0), config, *example_inputs())
    state = trqam.with_pretrained_base(state, state.params["base"])
    _, metrics = jax.jit(lambda s, k: _run(trqam, s, 50, k))(state, jax.random.PRNGKey(1))
    eps, lam, kl_ema = 5e-4, config.lam_init, 0.0
    expected_lambda, expected_ema = [], []
    for kl in np.asarray(metrics["kl"], np.float64):
        kl_ema = 0.9 * kl_ema + 0.1 * min(kl, 2.0 * eps)
        lam = float(np.clip(lam + 1000.0 * (kl_ema - eps), 0.01, 100.0))
        expected_ema.append(kl_ema)
        expected_lambda.append(3.0 * lam)
    np.testing.assert_allclose(metrics["kl_ema"], expected_ema, rtol=1e-5)
    np.testing.assert_allclose(metrics["lambda"], expected_lambda, rtol=1e-5)
    assert metrics["kl_clipped"].max() == 1.0 and metrics["kl_clipped"].min() == 0.0
    assert np.isclose(np.asarray(metrics["lambda"]), 3.0 * 0.01).any()  # projection reached
    np.testing.assert_allclose(metrics["kl_budget"], eps)


@pytest.mark.parametrize("agent", [trqam, qam], ids=["trqam", "qam"])
def test_vmap_over_seeds_equals_separate_runs(agent):
    name = agent.__name__.rsplit(".", 1)[-1]
    config = tiny_config(name)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    run = jax.jit(lambda s, k: _run(agent, s, 3, k))
    states = jax.vmap(lambda k: agent.init(k, config, *example_inputs()))(keys)
    run_keys = jax.random.split(jax.random.PRNGKey(4), 3)
    swept, swept_metrics = jax.jit(jax.vmap(lambda s, k: _run(agent, s, 3, k)))(states, run_keys)
    singles = [run(agent.init(keys[i], config, *example_inputs()), run_keys[i]) for i in range(3)]
    for i, single in enumerate(singles):
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=2e-4, atol=1e-5),
            (swept, swept_metrics),
            single,
        )
    # Same key, same result: bit for bit.
    again = run(agent.init(keys[0], config, *example_inputs()), run_keys[0])
    jax.tree.map(np.testing.assert_array_equal, again, singles[0])
    seeds_differ = jax.tree.leaves(swept.params["fine"])[0]
    assert not np.allclose(seeds_differ[0], seeds_differ[1])


def test_bc_trains_only_the_base_from_the_fine_tuning_agents_initial_base():
    config = tiny_config("trqam")
    state = bc.init(jax.random.PRNGKey(0), config, *example_inputs())
    # BC holds only what it trains; its initial base is the one trqam.init draws from the key.
    assert set(state.params) == {"base"}
    initial = trqam.init(jax.random.PRNGKey(0), config, *example_inputs()).params["base"]
    jax.tree.map(np.testing.assert_array_equal, state.params["base"], initial)
    new_state, metrics = jax.jit(bc.update)(
        state, synthetic_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    )
    assert set(metrics) == {"bc_loss", "grad_norm"}
    assert set(new_state.params) == {"base"}
    changed = jax.tree.map(
        lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
        new_state.params["base"],
        state.params["base"],
    )
    assert all(jax.tree.leaves(changed))
    assert int(new_state.step) == 1


@pytest.mark.parametrize("agent", [bc, trqam], ids=["bc", "finetune"])
def test_long_run_is_finite_and_bc_loss_decreases(agent):
    config = tiny_config("trqam", lr=1e-3)
    state = agent.init(jax.random.PRNGKey(0), config, *example_inputs())
    final, metrics = jax.jit(lambda s, k: _run(agent, s, 300, k))(state, jax.random.PRNGKey(1))
    for name, values in metrics.items():
        assert np.all(np.isfinite(values)), name
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(final))
    bc = np.asarray(metrics["bc_loss"])
    assert bc[-30:].mean() < 0.6 * bc[:30].mean()


def test_act_is_clipped_deterministic_and_uses_the_deployed_field():
    config = tiny_config("trqam")
    state = trqam.init(jax.random.PRNGKey(0), config, *example_inputs())
    obs = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (64, 6))
    key = jax.random.PRNGKey(2)
    actions = trqam.act(state, obs, key)
    assert actions.shape == (64, 3, 2)
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    np.testing.assert_array_equal(actions, trqam.act(state, obs, key))
    assert not np.allclose(actions, trqam.act(state, obs, jax.random.PRNGKey(3)))
    # Swapping in the base parameters as the fine field reproduces the BC policy's actions.
    bc_state = bc.init(jax.random.PRNGKey(0), config, *example_inputs())
    swapped = state.replace(params=dict(state.params, fine=state.params["base"]))
    np.testing.assert_array_equal(bc.act(bc_state, obs, key), trqam.act(swapped, obs, key))


def test_pretrained_base_initialises_base_target_and_fine():
    config = tiny_config("qam")
    state = qam.init(jax.random.PRNGKey(0), config, *example_inputs())
    pretrained = qam.init(jax.random.PRNGKey(9), config, *example_inputs()).params["base"]
    loaded = qam.with_pretrained_base(state, pretrained)
    for name in ("base", "target_base", "fine"):
        jax.tree.map(np.testing.assert_array_equal, loaded.params[name], pretrained)
    jax.tree.map(np.testing.assert_array_equal, loaded.params["critic"], state.params["critic"])


def test_bfloat16_compute_tracks_float32_losses():
    """compute_dtype="bfloat16" keeps float32 parameters and stays close to the float32 run.

    Both runs start from the same parameters and see the same batches and keys; over 100 updates
    the per-step losses of the bf16 run stay within 2% (relative, averaged over the run) of the
    float32 ones, and every parameter and metric stays float32.
    """
    runs = {}
    for dtype in ("float32", "bfloat16"):
        state = trqam.init(
            jax.random.PRNGKey(0), tiny_config(compute_dtype=dtype), *example_inputs()
        )
        state, metrics = jax.jit(lambda s, k: _run(trqam, s, 100, k))(state, jax.random.PRNGKey(1))
        runs[dtype] = (state, metrics)
    (_, m32), (state16, m16) = runs["float32"], runs["bfloat16"]
    assert {leaf.dtype for leaf in jax.tree.leaves(state16.params)} == {jnp.dtype(jnp.float32)}
    for name in ("critic_loss", "bc_loss", "am_loss", "kl"):
        assert m16[name].dtype == jnp.float32
        reference = np.asarray(m32[name], np.float64)
        relative = np.mean(np.abs(np.asarray(m16[name]) - reference)) / np.mean(np.abs(reference))
        assert relative < 0.02, (name, relative)
    # The runs are not identical: the option really changes the arithmetic.
    assert not np.array_equal(m16["critic_loss"], m32["critic_loss"])


def test_unknown_compute_dtype_is_rejected():
    with pytest.raises(ValueError, match="compute_dtype='float16'.*bfloat16"):
        trqam.init(jax.random.PRNGKey(0), tiny_config(compute_dtype="float16"), *example_inputs())


@pytest.mark.parametrize("agent", [trqam, qam], ids=["trqam", "qam"])
def test_fused_rollouts_equal_the_separate_chains(agent):
    """One K-call chain on 2B rows gives the two separate chains' update, within round-off.

    Compared after 10 updates on the same keys: every parameter, the per-step losses, the KL
    estimates and the gradient norms.
    """
    name = agent.__name__.rsplit(".", 1)[-1]
    states = [
        agent.init(jax.random.PRNGKey(5), tiny_config(name, fuse_rollouts=fused), *example_inputs())
        for fused in (True, False)
    ]
    run = lambda s: _run(agent, s, 10, jax.random.PRNGKey(6))
    (fused, fused_metrics), (separate, separate_metrics) = (jax.jit(run)(s) for s in states)
    for name in ("critic_loss", "bc_loss", "am_loss", "kl", "grad_norm", "lambda"):
        np.testing.assert_allclose(fused_metrics[name], separate_metrics[name], rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        fused.params,
        separate.params,
    )
    # The runs moved the parameters: the comparison is not of two fresh initialisations.
    start = jax.tree.leaves(states[0].params["fine"])[0]
    assert not np.allclose(jax.tree.leaves(fused.params["fine"])[0], start)
