"""FQL and QAM-E: losses against independent float64 numpy computations, seeds, BC checkpoint."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import domains
from tests.numpy_nets import np_batch, np_critics, np_euler, np_flow_matching, np_mlp
from tests.tiny import (
    ACTION_DIM,
    HORIZON,
    OBS_DIM,
    PUBLISHED_ORDER,
    SMALL_NETS,
    assert_rows_equal_separate_runs,
    batch_of,
    example_inputs,
    fresh,
)
from trqam_jax.agents import adjoint_matching, bc, fql, get_agent, qam, qam_e, trqam

D = HORIZON * ACTION_DIM


# One jitted function per agent: each static config then compiles once for the whole file.
UPDATE = {agent: jax.jit(agent.update) for agent in (fql, qam_e, qam, trqam, bc)}
SWEPT_UPDATE = {agent: jax.jit(jax.vmap(agent.update)) for agent in (fql, qam_e)}


def fql_tiny(preset="chunked", **overrides):
    config = importlib.import_module("configs.fql").fql_defaults(preset)
    config.update(SMALL_NETS, alpha=3.0)
    config.update(overrides)
    return config


def qam_e_tiny(**overrides):
    config = importlib.import_module("configs.qam_e").get_config("puzzle-3x3-play").agent
    config.update(SMALL_NETS, inv_temp=1.0, edit_scale=0.3)
    config.update(overrides)
    return config


def tr_tiny(name="trqam", **overrides):
    config = importlib.import_module(f"configs.{name}").get_config().agent
    config.update(SMALL_NETS)
    config.update(overrides)
    return config


# ----- FQL -----


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("chunked", dict()),
        ("original", dict(horizon=1, num_qs=2, q_agg="min", normalize_q_loss=True)),
    ],
    ids=["chunked-mean-rho", "original-min-normalized"],
)
def test_fql_losses_match_numpy(preset, overrides):
    config = fql_tiny(preset, **overrides)
    horizon = config.horizon
    state = fresh(fql, config)
    batch = batch_of(jax.random.PRNGKey(1), horizon)
    key = jax.random.PRNGKey(2)
    _, metrics = UPDATE[fql](state, batch, key)

    p, b, gamma = state.params, np_batch(batch), config.discount
    bc_key, next_key, noise_key = jax.random.split(key, 3)
    d = horizon * ACTION_DIM
    next_z = np.asarray(jax.random.normal(next_key, (16, d)), np.float64)
    next_a = np.clip(
        np_mlp(p["onestep"], np.concatenate([b["next_observations"], next_z], -1)), -1, 1
    )
    next_q = np_critics(p["target_critic"], b["next_observations"], next_a)
    pessimistic = next_q.mean(0) - config.rho * next_q.std(0)
    value = next_q.min(0) if config.q_agg == "min" else pessimistic
    y = b["rewards"] + gamma**horizon * b["masks"] * value
    q = np_critics(p["critic"], b["observations"], b["flat_actions"])
    critic_loss = np.mean(b["weights"] * (q - y) ** 2)

    z = np.asarray(jax.random.normal(noise_key, (16, d)), np.float64)
    mu = np_mlp(p["onestep"], np.concatenate([b["observations"], z], -1))
    target = np_euler(p["base"], b["observations"], z, config.flow_steps)
    distill = np.mean((mu - target) ** 2)
    q_pi = np_critics(p["critic"], b["observations"], np.clip(mu, -1, 1)).mean(0)
    actor_q = -q_pi.mean() / (np.abs(q_pi).mean() if config.normalize_q_loss else 1.0)
    bc = np_flow_matching(p["base"], b["observations"], b["flat_actions"], b["weights"], bc_key)

    np.testing.assert_allclose(metrics["critic_loss"], critic_loss, rtol=2e-4)
    np.testing.assert_allclose(metrics["distill_loss"], distill, rtol=2e-4)
    np.testing.assert_allclose(metrics["actor_q_loss"], actor_q, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["bc_loss"], bc, rtol=2e-4)
    np.testing.assert_allclose(metrics["actor_loss"], 3.0 * distill + actor_q, rtol=2e-4)


def test_fql_actor_terms_do_not_train_the_critic():
    """With plain Adam, alpha changes the one-step policy's step but not the critic's."""
    state = fresh(fql, fql_tiny())
    batch, key = batch_of(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    low, _ = UPDATE[fql](state, batch, key)
    high, _ = UPDATE[fql](state.replace(hparams={"alpha": jnp.asarray(300.0)}), batch, key)
    for name in ("critic", "base", "target_critic"):
        jax.tree.map(np.testing.assert_array_equal, low.params[name], high.params[name])
    assert not np.allclose(*(jax.tree.leaves(s.params["onestep"])[0] for s in (low, high)))
    # The target is the EMA of the critic from before the step.
    expected = jax.tree.map(
        lambda c, t: 0.005 * c + 0.995 * t, state.params["critic"], state.params["target_critic"]
    )
    jax.tree.map(np.testing.assert_allclose, low.params["target_critic"], expected)


def test_fql_config_rejects_an_unknown_target_aggregation():
    with pytest.raises(ValueError, match="q_agg"):
        fql.fql_config(fql_tiny(q_agg="max"), *example_inputs())


# ----- QAM-E -----


def test_qam_e_edit_and_critic_losses_match_numpy():
    config = qam_e_tiny()
    state = fresh(qam_e, config)
    # A non-zero temperature parameter so that alpha and its gradient terms are exercised.
    state = state.replace(params=dict(state.params, edit_log_alpha=jnp.asarray(-0.7)))
    batch, key = batch_of(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    _, metrics = UPDATE[qam_e](state, batch, key)

    p, b, scale, gamma = state.params, np_batch(batch), 0.3, config.discount

    def edited(obs, flow, edit_key):
        out = np_mlp(p["edit"], np.concatenate([obs, flow], -1))
        mean, log_std = out[:, :D], np.clip(out[:, D:], -20, 2)
        eps = np.asarray(jax.random.normal(edit_key, mean.shape), np.float64)
        u = mean + np.exp(log_std) * eps
        log_prob = np.sum(
            -0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2), -1
        )
        return np.clip(flow + scale * np.tanh(u), -1, 1), log_prob

    _, next_key, _, _ = jax.random.split(key, 4)
    ext_next_key, ext_loss_key = jax.random.split(jax.random.fold_in(key, 1))
    next_flow = np_euler(
        p["fine"], b["next_observations"], jax.random.normal(next_key, (16, D)), config.flow_steps
    )
    next_a, _ = edited(b["next_observations"], next_flow, ext_next_key)
    next_q = np_critics(p["target_critic"], b["next_observations"], next_a)
    y = b["rewards"] + gamma**HORIZON * b["masks"] * (next_q.mean(0) - 0.5 * next_q.std(0))
    q = np_critics(p["critic"], b["observations"], b["flat_actions"])
    np.testing.assert_allclose(
        metrics["critic_loss"], np.mean(b["weights"] * (q - y) ** 2), rtol=2e-4
    )

    noise_key, edit_key = jax.random.split(ext_loss_key)
    flow = np_euler(
        p["fine"], b["observations"], jax.random.normal(noise_key, (16, D)), config.flow_steps
    )
    actions, log_prob = edited(b["observations"], flow, edit_key)
    alpha, entropy = np.exp(-0.7), -log_prob.mean()
    q_edit = np_critics(p["critic"], b["observations"], actions).mean(0)
    np.testing.assert_allclose(metrics["edit_q_loss"], -q_edit.mean(), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(metrics["edit_entropy"], entropy, rtol=2e-4)
    np.testing.assert_allclose(metrics["edit_entropy_loss"], -alpha * entropy, rtol=2e-4)
    np.testing.assert_allclose(metrics["edit_alpha_loss"], alpha * (entropy + 0.5 * D), rtol=2e-4)
    np.testing.assert_allclose(metrics["edit_alpha"], alpha, rtol=1e-6)


def test_qam_e_core_losses_equal_qam_for_the_same_key():
    """The edit hook leaves QAM's losses alone; with edit_scale 0 even the critic target."""
    key, batch = jax.random.PRNGKey(0), batch_of(jax.random.PRNGKey(1))
    qam_state = fresh(qam, tr_tiny("qam"))
    edit_state = fresh(qam_e, qam_e_tiny())
    edit_state = edit_state.replace(hparams=dict(edit_state.hparams, edit_scale=jnp.asarray(0.0)))
    _, qam_metrics = UPDATE[qam](qam_state, batch, key)
    _, edit_metrics = UPDATE[qam_e](edit_state, batch, key)
    for name in ("critic_loss", "bc_loss", "am_loss", "kl", "q_mean", "lambda"):
        np.testing.assert_allclose(edit_metrics[name], qam_metrics[name], rtol=1e-5, err_msg=name)
    assert {"edit_q_loss", "edit_entropy", "edit_alpha"} <= set(edit_metrics)


# ----- shared contract -----


def _run(agent, state, steps, key):
    """`steps` jitted updates on fresh batches; returns (state, metrics stacked over steps)."""
    history = []
    for step_key in jax.random.split(key, steps):
        batch_key, update_key = jax.random.split(step_key)
        state, metrics = UPDATE[agent](state, batch_of(batch_key), update_key)
        history.append(metrics)
    return state, jax.tree.map(lambda *values: np.stack(values), *history)


@pytest.mark.parametrize(
    "agent,make,swept",
    [(fql, fql_tiny, "alpha"), (qam_e, qam_e_tiny, "edit_scale")],
    ids=["fql", "qam_e"],
)
def test_vmap_over_seeds_equals_separate_runs(agent, make, swept):
    """Rows of different seeds (and of a swept traced hyperparameter) run side by side."""
    states, _ = assert_rows_equal_separate_runs(
        UPDATE[agent], SWEPT_UPDATE[agent], agent, make(), swept, 0.7
    )
    first = jax.tree.leaves(states.params)[0]
    assert not np.allclose(first[0], first[1])


def test_bc_checkpoint_loads_into_every_agent():
    """The base of a BC state initialises every agent's BC flow."""
    bc_state = fresh(bc, tr_tiny(), seed=7)
    bc_state, _ = UPDATE[bc](bc_state, batch_of(jax.random.PRNGKey(8)), jax.random.PRNGKey(9))
    base = bc_state.params["base"]
    obs = jax.random.normal(jax.random.PRNGKey(10), (16, OBS_DIM))
    key = jax.random.PRNGKey(11)
    bc_actions = bc.act(bc_state, obs, key)
    configs = {"trqam": tr_tiny(), "qam": tr_tiny("qam"), "qam_e": qam_e_tiny(), "fql": fql_tiny()}
    for name, config in configs.items():
        agent = get_agent(name)
        state = agent.with_pretrained_base(fresh(agent, config), base)
        jax.tree.map(np.testing.assert_array_equal, state.params["base"], base)
        if name in ("fql", "qam_e"):
            # The optimizer state matches the trainable parameters: training goes on from here.
            _, metrics = UPDATE[agent](state, batch_of(jax.random.PRNGKey(12)), key)
            assert np.isfinite(metrics["critic_loss"]), name
        if name == "fql":
            # FQL's distillation target is the Euler sampler of its BC flow, now the BC policy.
            as_bc = bc_state.replace(params={"base": state.params["base"]})
            np.testing.assert_array_equal(bc.act(as_bc, obs, key), bc_actions)
        else:
            np.testing.assert_array_equal(adjoint_matching.act(state, obs, key), bc_actions)
    # QAM-E without edit acts as its flow policy, the BC policy at load time.
    no_edit = qam_e.with_pretrained_base(fresh(qam_e, qam_e_tiny()), base)
    no_edit = no_edit.replace(hparams=dict(no_edit.hparams, edit_scale=jnp.asarray(0.0)))
    assert {"edit", "edit_log_alpha"} <= set(no_edit.params)
    flow_key = jax.random.split(key)[0]
    np.testing.assert_array_equal(qam_e.act(no_edit, obs, key), bc.act(bc_state, obs, flow_key))


@pytest.mark.parametrize("agent,make", [(fql, fql_tiny), (qam_e, qam_e_tiny)], ids=["fql", "qam_e"])
def test_short_run_is_finite_and_acts_in_range(agent, make):
    state = fresh(agent, make())
    final, metrics = _run(agent, state, 300, jax.random.PRNGKey(1))
    for name in ("critic_loss", "bc_loss", "q_mean", "grad_norm"):
        assert name in metrics
    for name, values in metrics.items():
        assert np.all(np.isfinite(values)), name
    bc = np.asarray(metrics["bc_loss"])
    assert bc[-30:].mean() < 0.8 * bc[:30].mean()
    if agent is qam_e:
        # The edit starts above its target entropy, so the tuned temperature must fall.
        assert metrics["edit_entropy"][0] > -0.5 * D
        assert metrics["edit_alpha"][-1] < metrics["edit_alpha"][0]
    obs = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (32, OBS_DIM))
    actions = agent.act(final, obs, jax.random.PRNGKey(3))
    assert actions.shape == (32, HORIZON, ACTION_DIM)
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    np.testing.assert_array_equal(actions, agent.act(final, obs, jax.random.PRNGKey(3)))
    assert not np.allclose(actions, agent.act(final, obs, jax.random.PRNGKey(4)))


# ----- configs -----


def test_per_domain_values_are_the_published_ones():
    """The issue's table (QAM paper for QAM / QAM-E / chunked FQL; FQL paper for the original)."""
    qam_inv_temp = (10, 3, 3, 3, 1, 3, 1, 1, 3, 30)
    qam_e_values = ((1, 0.1), (10, 0.1), (3, 0.1), (3, 0.1), (1, 0), (3, 0.1), (3, 0.1), (1, 0))
    qam_e_values += ((1, 0.1), (0.1, 0.9))
    chunked_alpha = (3, 3, 30, 30, 300, 30, 100, 300, 300, 1)
    original_alpha = (10, 10, 30, 30, 300, 300, 300, 300, 1000, 1000)
    load = lambda name, domain: importlib.import_module(f"configs.{name}").get_config(domain)
    for i, domain in enumerate(PUBLISHED_ORDER):
        assert load("qam", domain).agent.inv_temp == qam_inv_temp[i]
        edit = load("qam_e", domain).agent
        assert (edit.inv_temp, edit.edit_scale) == qam_e_values[i]
        chunked = load("fql_chunked", domain)
        assert chunked.agent.alpha == chunked_alpha[i] and chunked.agent.num_qs == 10
        assert chunked.agent.horizon == (1 if i < 4 else 5)
        assert chunked.sparse == (domain in ("scene-play", "puzzle-3x3-play", "puzzle-4x4-play"))
        original = load("fql", domain)
        assert original.agent.alpha == original_alpha[i] and original.agent.num_qs == 2
        assert original.agent.horizon == 1 and not original.sparse
        assert original.agent.q_agg == ("min" if domain.startswith("antmaze") else "mean")
        assert original.agent.discount == (0.99 if i in (0, 4, 5, 6, 7, 8, 9) else 0.995)
        assert domains.qam_overrides(domain)["inv_temp"] == qam_inv_temp[i]
    assert load("trqam", "cube-triple-play").agent.kl_budget == 0.5
    with pytest.raises(ValueError, match="preset"):
        domains.fql_overrides("cube-double-play", "bogus")
