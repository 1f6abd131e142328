"""IFQL, DSRL, CGQL: losses against float64 numpy, defining properties, rows, launcher."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import domains
from experiments import report
from tests.numpy_nets import np_batch, np_critics, np_euler, np_flow_matching, np_mlp
from tests.runs import final_params, tiny_run_config
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
from trqam_jax import experiment as launcher
from trqam_jax.agents import bc, cgql, dsrl, get_agent, ifql
from trqam_jax.agents.common import sample_field
from trqam_jax.validation import ConfigError, check_run_config

AGENTS = (ifql, dsrl, cgql)
UPDATE = {agent: jax.jit(agent.update) for agent in AGENTS + (bc,)}
SWEPT_UPDATE = {agent: jax.jit(jax.vmap(agent.update)) for agent in AGENTS}
# Jitted once per agent: an eager `act` would compile its flow scan anew at every call.
ACT = {agent: jax.jit(agent.act) for agent in AGENTS}
B = 16
D = HORIZON * ACTION_DIM


def tiny(name, domain="cube-double-play", **overrides):
    """configs/<name>.py on `domain`, shrunk to tests/tiny.py's small networks."""
    config = importlib.import_module(f"configs.{name}").get_config(domain).agent
    config.update(SMALL_NETS)
    if name == "ifql":
        config.num_samples = 4
    config.update(overrides)
    return config


def np_pessimistic(q, rho):
    return q.mean(0) - rho * q.std(0)


def np_td_target(b, value, gamma):
    return b["rewards"] + gamma**HORIZON * b["masks"] * value


def np_normal(key, shape):
    return np.asarray(jax.random.normal(key, shape), np.float64)


def scaled_output(params, scale):
    """MLP parameters whose output is `scale` times that of `params` (last Dense scaled)."""
    layers = dict(params["params"])
    last = max((k for k in layers if k.startswith("Dense")), key=lambda k: int(k[6:]))
    layers[last] = {name: value * scale for name, value in layers[last].items()}
    return {"params": layers}


# ----- IFQL -----


def test_ifql_losses_match_numpy():
    config = tiny("ifql", kappa=0.8)
    state = fresh(ifql, config)
    batch, key = batch_of(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    _, metrics = UPDATE[ifql](state, batch, key)

    p, b = state.params, np_batch(batch)
    target_q = np_pessimistic(
        np_critics(p["target_critic"], b["observations"], b["flat_actions"]), 0.5
    )
    v = np_mlp(p["value"], b["observations"])[:, 0]
    u = target_q - v
    value_loss = np.mean(np.where(u >= 0, 0.8, 0.2) * u**2)
    next_v = np_mlp(p["value"], b["next_observations"])[:, 0]
    q = np_critics(p["critic"], b["observations"], b["flat_actions"])
    y = np_td_target(b, next_v, config.discount)
    critic_loss = np.mean(b["weights"] * (q - y) ** 2)
    bc_loss = np_flow_matching(p["base"], b["observations"], b["flat_actions"], b["weights"], key)

    np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=2e-4)
    np.testing.assert_allclose(metrics["critic_loss"], critic_loss, rtol=2e-4)
    np.testing.assert_allclose(metrics["bc_loss"], bc_loss, rtol=2e-4)
    np.testing.assert_allclose(metrics["v_mean"], v.mean(), rtol=2e-4, atol=1e-6)


def np_expectile(values, kappa):
    """The kappa-expectile of an empirical distribution: the root of sum w_i (x_i - v) = 0."""
    low, high = values.min(), values.max()
    for _ in range(100):
        v = 0.5 * (low + high)
        if np.sum(np.where(values >= v, kappa, 1 - kappa) * (values - v)) > 0:
            low = v
        else:
            high = v
    return v


def test_ifql_value_converges_to_the_expectile_of_the_target_q():
    """At one state, V minimising L_V is the kappa-expectile of the pessimistic Q over A."""
    config = tiny("ifql", kappa=0.9)
    cfg, state = ifql.ifql_config(config, *example_inputs()), fresh(ifql, config)
    n = 64
    obs = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(3), (OBS_DIM,)), (n, OBS_DIM))
    actions = jax.random.uniform(jax.random.PRNGKey(4), (n, D), minval=-1, maxval=1)
    q = np_pessimistic(np_critics(state.params["target_critic"], obs, actions), 0.5)
    # Spread the known distribution so its expectile stands well clear of its mean.
    scale = 5.0 / q.std()
    tc = scaled_output(state.params["target_critic"], scale)
    q = np_pessimistic(np_critics(tc, obs, actions), 0.5)
    expectile = np_expectile(q, 0.9)
    assert abs(expectile - q.mean()) > 1.0

    optimizer = optax.adam(3e-2)

    def step(carry, _):
        params, opt_state = carry
        grad = jax.grad(lambda vp: ifql.value_loss(cfg, vp, tc, obs, actions, 0.9)[0])(params)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    value = state.params["value"]
    (value, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=3000))(
        (value, optimizer.init(value))
    )
    v = ifql.state_value(cfg, value, obs[:1])[0]
    np.testing.assert_allclose(v, expectile, atol=2e-2)


def test_ifql_acts_with_the_best_of_n_flow_samples():
    state = fresh(ifql, tiny("ifql"))
    obs = jax.random.normal(jax.random.PRNGKey(5), (8, OBS_DIM))
    key = jax.random.PRNGKey(6)
    actions = np.asarray(ACT[ifql](state, obs, key)).reshape(8, D)
    p, n = state.params, 4
    repeated = np.repeat(np.asarray(obs, np.float64), n, axis=0)
    candidates = np_euler(p["base"], repeated, np_normal(key, (8 * n, D)), 3)
    q = np_critics(p["critic"], repeated, candidates).min(0).reshape(8, n)
    expected = candidates.reshape(8, n, D)[np.arange(8), q.argmax(1)]
    np.testing.assert_allclose(actions, expected, rtol=1e-4, atol=1e-5)
    assert len({tuple(np.round(row, 4)) for row in actions}) == 8


# ----- DSRL -----


def np_latent(params, obs, key):
    """(z, log pi(z | s)) of the tanh-Gaussian latent policy in float64."""
    out = np_mlp(params, obs)
    mean, log_std = out[:, :D], np.clip(out[:, D:], -20, 2)
    eps = np_normal(key, mean.shape)
    u = mean + np.exp(log_std) * eps
    log_prob = -0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2)
    return np.tanh(u), log_prob.sum(-1)


def test_dsrl_losses_match_numpy():
    config = tiny("dsrl", noise_scale=0.7)
    state = fresh(dsrl, config)
    # A temperature other than 1 so that alpha's place in each term is exercised.
    state = state.replace(params=dict(state.params, log_alpha=jnp.asarray(-0.4)))
    batch, key = batch_of(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    _, metrics = UPDATE[dsrl](state, batch, key)

    p, b, scale = state.params, np_batch(batch), 0.7
    next_key, distill_key, latent_key, bc_key = jax.random.split(key, 4)
    next_z, _ = np_latent(p["latent"], b["next_observations"], next_key)
    next_a = np_euler(p["target_base"], b["next_observations"], scale * next_z, 3)
    next_q = np_critics(p["target_critic"], b["next_observations"], next_a)
    y = np_td_target(b, np_pessimistic(next_q, 0.5), config.discount)
    q = np_critics(p["critic"], b["observations"], b["flat_actions"])
    w = np_normal(distill_key, (B, D))
    distill_target = np_critics(
        p["critic"], b["observations"], np_euler(p["target_base"], b["observations"], w, 3)
    )
    distill = np.mean((np_critics(p["z_critic"], b["observations"], w) - distill_target) ** 2)
    z, log_prob = np_latent(p["latent"], b["observations"], latent_key)
    q_latent = np_critics(p["z_critic"], b["observations"], scale * z).mean(0)
    alpha, entropy = np.exp(-0.4), -log_prob.mean()

    np.testing.assert_allclose(
        metrics["critic_loss"], np.mean(b["weights"] * (q - y) ** 2), rtol=2e-4
    )
    np.testing.assert_allclose(metrics["distill_loss"], distill, rtol=2e-4)
    np.testing.assert_allclose(
        metrics["actor_loss"], np.mean(alpha * log_prob - q_latent), rtol=2e-4
    )
    np.testing.assert_allclose(metrics["entropy"], entropy, rtol=2e-4)
    np.testing.assert_allclose(metrics["alpha_loss"], alpha * (entropy + 0.5 * D), rtol=2e-4)
    bc_loss = np_flow_matching(
        p["base"], b["observations"], b["flat_actions"], b["weights"], bc_key
    )
    np.testing.assert_allclose(metrics["bc_loss"], bc_loss, rtol=2e-4)


def test_dsrl_action_is_the_euler_map_of_the_latent_noise():
    """act(s) = euler_{target_base}(s, noise_scale * z) with z drawn from the latent policy."""
    state = fresh(dsrl, tiny("dsrl", noise_scale=1.3))
    # Distinct base and target_base, so the test sees which one is steered.
    state, _ = UPDATE[dsrl](state, batch_of(jax.random.PRNGKey(7)), jax.random.PRNGKey(8))
    obs = jax.random.normal(jax.random.PRNGKey(9), (8, OBS_DIM))
    key = jax.random.PRNGKey(10)
    actions = np.asarray(ACT[dsrl](state, obs, key)).reshape(8, D)
    z, _ = np_latent(state.params["latent"], np.asarray(obs, np.float64), key)
    expected = np_euler(state.params["target_base"], obs, 1.3 * z, 3)
    np.testing.assert_allclose(actions, expected, rtol=1e-4, atol=1e-5)
    from_base = np_euler(state.params["base"], obs, 1.3 * z, 3)
    assert not np.allclose(actions, from_base, rtol=0, atol=1e-7)


# ----- CGQL -----


def np_guided_euler(field_params, critic_params, obs, noise, steps, inv_temp, coef, mode):
    """The guided sampler in float64, with the critic's action gradient by central differences."""
    obs, x = np.asarray(obs, np.float64), np.asarray(noise, np.float64)

    def mean_q(x, t):
        return np_critics(critic_params, obs, np.concatenate([x, t], -1)).mean(0)

    for k in range(steps):
        t = np.full((x.shape[0], 1), k / steps)
        v = np_mlp(field_params, np.concatenate([obs, x, t], -1))
        if k > 0 and inv_temp > 0:
            t_q = np.ones_like(t) if mode == "simple" else t
            score = np.zeros_like(x)
            for i in range(x.shape[1]):
                dx = np.zeros_like(x)
                dx[:, i] = 1e-5
                score[:, i] = (mean_q(x + dx, t_q) - mean_q(x - dx, t_q)) / 2e-5
            v = v + coef * (x + (1 - t) * inv_temp * score) / t
        x = x + v / steps
    return np.clip(x, -1, 1)


@pytest.mark.parametrize("mode", ["linex", "mse", "simple"])
def test_cgql_losses_match_numpy(mode):
    config = tiny("cgql", f"cube-double-play:{mode}", inv_temp=2.0, guidance_coef=0.3)
    config.update(noisy_coef=0.5)
    state = fresh(cgql, config)
    # A target critic of large values, so that both branches of the LINEX loss (clip 5) occur.
    target_critic = scaled_output(state.params["target_critic"], 20.0)
    state = state.replace(params=dict(state.params, target_critic=target_critic))
    batch, key = batch_of(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    _, metrics = UPDATE[cgql](state, batch, key)

    p, b, beta = state.params, np_batch(batch), 2.0
    next_key, time_key, noise_key, bc_key = jax.random.split(key, 4)
    clean = np.ones((B, 1))
    next_noise = np_normal(next_key, (B, D))
    guided = (p["target_base"], p["critic"], b["next_observations"], next_noise)
    next_a = np_guided_euler(*guided, 3, beta, 0.3, mode)
    next_q = np_critics(
        p["target_critic"], b["next_observations"], np.concatenate([next_a, clean], -1)
    )
    y = np_td_target(b, np_pessimistic(next_q, 0.5), config.discount)
    q = np_critics(p["critic"], b["observations"], np.concatenate([b["flat_actions"], clean], -1))
    np.testing.assert_allclose(
        metrics["critic_loss"], np.mean(b["weights"] * (q - y) ** 2), rtol=2e-4
    )
    bc_loss = np_flow_matching(
        p["base"], b["observations"], b["flat_actions"], b["weights"], bc_key
    )
    np.testing.assert_allclose(metrics["bc_loss"], bc_loss, rtol=2e-4)
    if mode == "simple":
        assert "noisy_critic_loss" not in metrics
        return
    t = np.asarray(jax.random.uniform(time_key, (B, 1)), np.float64)
    x_t = (1 - t) * np_normal(noise_key, (B, D)) + t * b["flat_actions"]
    noisy_q = np_critics(p["critic"], b["observations"], np.concatenate([x_t, t], -1))
    target = np_critics(
        p["target_critic"], b["observations"], np.concatenate([b["flat_actions"], clean], -1)
    )
    if mode == "mse":
        per_sample = (noisy_q - target) ** 2
    else:
        delta = beta * (target - noisy_q)
        assert (delta > 5.0).any() and (delta <= 5.0).any()
        per_sample = np.where(delta > 5.0, delta, np.exp(np.minimum(delta, 5.0)) + beta * noisy_q)
    np.testing.assert_allclose(
        metrics["noisy_critic_loss"], np.mean(b["weights"] * per_sample), rtol=2e-4
    )


def test_cgql_guided_field_is_the_base_field_at_zero_guidance():
    state = fresh(cgql, tiny("cgql", guidance_coef=0.5))
    state, _ = UPDATE[cgql](state, batch_of(jax.random.PRNGKey(7)), jax.random.PRNGKey(8))
    cfg, p = state.config, state.params
    obs = jax.random.normal(jax.random.PRNGKey(9), (8, OBS_DIM))
    key = jax.random.PRNGKey(10)
    unguided = sample_field(cfg, p["target_base"], obs, jax.random.normal(key, (8, D)))
    guided = ACT[cgql](state, obs, key).reshape(8, D)
    assert not np.allclose(guided, unguided, atol=1e-4)
    for name in ("guidance_coef", "inv_temp"):
        off = state.replace(hparams=dict(state.hparams, **{name: jnp.asarray(0.0)}))
        np.testing.assert_array_equal(ACT[cgql](off, obs, key).reshape(8, D), unguided)
    # And the field itself, at every flow time: t = 0 is never guided.
    off = dict(state.hparams, guidance_coef=jnp.asarray(0.0))
    x = jax.random.normal(jax.random.PRNGKey(11), (8, D))
    for t in (0.0, 0.4):
        times = jnp.full((8, 1), t)
        base = np_mlp(p["target_base"], np.concatenate([obs, x, times], -1))
        zero = cgql.guided_field(cfg, p["target_base"], p["critic"], off, obs)(x, times)
        np.testing.assert_allclose(zero, base, rtol=1e-5, atol=1e-6)
        on = cgql.guided_field(cfg, p["target_base"], p["critic"], state.hparams, obs)(x, times)
        assert np.allclose(on, zero) == (t == 0.0)


# ----- shared contract -----

SWEPT = {ifql: ("kappa", 0.6), dsrl: ("noise_scale", 0.5), cgql: ("guidance_coef", 0.02)}
IDS = ["ifql", "dsrl", "cgql"]


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_vmap_over_rows_equals_separate_runs(agent):
    """Rows of different seeds and of a different swept traced value run side by side."""
    config = tiny(agent.__name__.split(".")[-1])
    name, value = SWEPT[agent]
    _, swept_metrics = assert_rows_equal_separate_runs(
        UPDATE[agent], SWEPT_UPDATE[agent], agent, config, name, value
    )
    np.testing.assert_allclose(swept_metrics[name], [config[name], value], rtol=1e-6)


@pytest.mark.parametrize("agent", AGENTS, ids=IDS)
def test_300_updates_stay_finite_and_act_in_range(agent):
    state = fresh(agent, tiny(agent.__name__.split(".")[-1]))
    history = []
    for step_key in jax.random.split(jax.random.PRNGKey(1), 300):
        batch_key, update_key = jax.random.split(step_key)
        state, metrics = UPDATE[agent](state, batch_of(batch_key), update_key)
        history.append(metrics)
    metrics = jax.tree.map(lambda *values: np.stack(values), *history)
    for name, values in metrics.items():
        assert np.all(np.isfinite(values)), name
    bc_losses = metrics["bc_loss"]
    assert bc_losses[-30:].mean() < 0.8 * bc_losses[:30].mean()
    if agent is dsrl:
        # The latent policy starts above its target entropy, so the temperature must fall.
        assert metrics["alpha"][-1] < metrics["alpha"][0]
    obs = 3.0 * jax.random.normal(jax.random.PRNGKey(2), (32, OBS_DIM))
    actions = ACT[agent](state, obs, jax.random.PRNGKey(3))
    assert actions.shape == (32, HORIZON, ACTION_DIM)
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    np.testing.assert_array_equal(actions, ACT[agent](state, obs, jax.random.PRNGKey(3)))
    assert not np.allclose(actions, ACT[agent](state, obs, jax.random.PRNGKey(4)))


def test_bc_checkpoint_loads_into_each_agent():
    bc_state = fresh(bc, tiny("ifql"), seed=7)
    bc_state, _ = UPDATE[bc](bc_state, batch_of(jax.random.PRNGKey(8)), jax.random.PRNGKey(9))
    base = bc_state.params["base"]
    obs = jax.random.normal(jax.random.PRNGKey(10), (8, OBS_DIM))
    key = jax.random.PRNGKey(11)
    for name in IDS:
        agent = get_agent(name)
        state = agent.with_pretrained_base(fresh(agent, tiny(name)), base)
        for loaded in {"base", "target_base"} & set(state.params):
            jax.tree.map(np.testing.assert_array_equal, state.params[loaded], base)
        _, metrics = UPDATE[agent](state, batch_of(jax.random.PRNGKey(12)), key)
        assert np.isfinite(metrics["critic_loss"]), name
    # Unguided, CGQL's policy is the BC policy at load time.
    state = cgql.with_pretrained_base(fresh(cgql, tiny("cgql", guidance_coef=0.0)), base)
    np.testing.assert_array_equal(ACT[cgql](state, obs, key), jax.jit(bc.act)(bc_state, obs, key))


def test_per_domain_values_are_the_published_ones():
    """The QAM paper's tables (its code's experiments/reproduce.py), in PUBLISHED_ORDER."""
    kappa = (0.9, 0.8, 0.7, 0.8, 0.9, 0.95, 0.95, 0.9, 0.95, 0.9)
    noise_scale = (0.8, 1.2, 0.6, 0.8, 1.0, 1.4, 1.4, 0.4, 1.0, 1.0)
    linex = ((0.1, 0.001), (0.1, 0.001), (0.1, 0.1), (0.1, 0.1), (0.01, 0.001), (0.1, 0.001))
    linex += ((0.01, 0.1), (0.1, 0.1), (0.1, 0.001), (1.0, 0.001))
    mse_noisy = (0.1, 0.001, 0.1, 0.1, 0.001, 0.001, 0.1, 0.1, 0.1, 0.001)
    simple_guidance = (0.1, 0.1, 0.01, 0.01, 0.01, 0.1, 0.1, 0.1, 0.1, 0.1)
    load = lambda name, arg: importlib.import_module(f"configs.{name}").get_config(arg)
    for i, domain in enumerate(PUBLISHED_ORDER):
        assert load("ifql", domain).agent.kappa == kappa[i]
        assert load("dsrl", domain).agent.noise_scale == noise_scale[i]
        cgql_l = load("cgql", domain)
        assert cgql_l.agent.mode == "linex" and cgql_l.agent.inv_temp == 10.0
        assert (cgql_l.agent.guidance_coef, cgql_l.agent.noisy_coef) == linex[i]
        assert load("cgql", f"{domain}:mse").agent.noisy_coef == mse_noisy[i]
        assert load("cgql", f"{domain}:simple").agent.guidance_coef == simple_guidance[i]
        for name in ("ifql", "dsrl", "cgql"):
            run = load(name, domain)
            assert run.agent.num_qs == 10 and run.agent.grad_clip == 0.0
            assert run.agent.horizon == (1 if i < 4 else 5)
            assert run.agent.discount == (0.999 if domain.startswith("humanoid") else 0.995)
    with pytest.raises(ValueError, match="CGQL variant"):
        domains.cgql_overrides("cube-double-play", "bogus")
    with pytest.raises(ValueError, match="mode"):
        cgql.cgql_config(tiny("cgql", mode="bogus"), *example_inputs())
    with pytest.raises(ValueError, match="kappa"):
        ifql.ifql_config(tiny("ifql", kappa=1.0), *example_inputs())
    # The launcher refuses them before any work, naming the field.
    for name, field, bad in (("ifql", "kappa", 1.0), ("dsrl", "noise_scale", 0.0)):
        run = load(name, "cube-double-play")
        run.agent[field] = bad
        with pytest.raises(ConfigError, match=f"agent.{field}"):
            check_run_config(run)


def test_each_agent_runs_through_the_launcher_and_the_report(
    tiny_dataset_dir, tmp_path, short_episodes
):
    """Each agent trains through the launcher; IFQL (the cheapest policy) is also evaluated and
    reported, next to the published rows of all three."""
    for name in IDS:
        get = importlib.import_module(f"configs.{name}").get_config
        evaluated = name == "ifql"
        short = dict(seeds=1, offline_steps=10, eval_episodes=int(evaluated))
        config = tiny_run_config(tiny_dataset_dir, tmp_path / name, get, **short)
        config.agent.update(flow_steps=3)
        summary = launcher.run(config)
        assert summary["rows"] == 1 and summary["steps"]["offline_steps"] == 10, summary
        assert (summary["final_return"] is not None) == evaluated, name
        step, params = final_params(tmp_path / name)
        assert step == 10 and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))
    out = tmp_path / "report"
    assert (
        report.main([str(tmp_path / "ifql"), "--out", str(out), "--reps", "5", "--no-plots"]) == 0
    )
    table = (out / "table.md").read_text()
    assert "| ifql" in table, table
    for published in ("IFQL", "DSRL", "CGQL-L"):
        assert f"| {published} |" in table, table
