"""The stability doc's terminal-KL puzzle on its own bandit (`--stability-check` of the
known-answer CLI; docs/known_answer.md, part 4)."""

import dataclasses

import jax
import jax.numpy as jnp

from trqam_jax import bandit, train
from trqam_jax.agents import adjoint_matching, common
from trqam_jax.flow import euler_sample, flow_times
from trqam_jax.known_answer.problem import as_field, stacked
from trqam_jax.sde import final_step, noise_scale_sq, sde_rollout
from trqam_jax.stability.experiment import agent_config, eval_grid, pretrain
from trqam_jax.stability.settings import Settings as StabilitySettings
from trqam_jax.stability.tables import tail_mean
from trqam_jax.trust_region import path_kl


def stability_check(budgets=(0.1, 0.3, 1.0), seed: int = 0) -> dict:
    """TRQAM on the stability experiment's bandit (its default settings, one seed), then at its
    evaluation contexts: k-NN KL of the deployed ODE law and of the training SDE's terminal law
    to the same sampler run on the EMA base, the estimator's reading between two independent
    sample sets of one law, the share of deployed actions clipped onto the box, and D_hat over
    all K steps and over the K - 1 stochastic ones (the data-processing bound of the SDE's).

    Returns {budget: dict of floats (means over contexts)}.
    """
    s = dataclasses.replace(StabilitySettings(), budgets=tuple(budgets), seeds=1, seed=seed)
    spec = bandit.BanditSpec(critic_error=s.critic_error)
    data_key, bc_key, run_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    dataset = bandit.make_dataset(spec, data_key, s.dataset_size)
    bases, _ = pretrain(s, dataset, bc_key[None])
    base = jax.tree.map(lambda b: b[0], bases)
    config = agent_config("trqam", s)
    example = (jnp.zeros(bandit.OBS_DIM), jnp.zeros((1, bandit.ACTION_DIM)))
    contexts = eval_grid(s)
    num, num_steps = s.eval_samples, s.flow_steps
    times = flow_times(num_steps)
    g_sq = noise_scale_sq(times, 1.0 / num_steps)

    def laws(state, context, key):
        module = state.config.field_module()
        fine = as_field(module, state.params["fine"], context)
        ref = as_field(module, state.params["target_base"], context)
        keys = jax.random.split(key, 6)
        sde = {}
        for name, f, k0, k1 in (("fine", fine, keys[0], keys[1]), ("ref", ref, keys[2], keys[3])):
            xs = sde_rollout(f, jax.random.normal(k0, (num, bandit.ACTION_DIM)), k1, num_steps)
            v_ref = stacked(ref, xs, times)
            sde[name] = final_step(xs[-1], v_ref[-1], num_steps)
            if name == "fine":
                dv = stacked(fine, xs, times) - v_ref
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
        return dict(out, kl_ema=tail_mean(metrics["kl_ema"]))

    values = jnp.asarray(budgets, jnp.float32)
    result = jax.jit(jax.vmap(run_row))(values, jax.random.split(run_key, len(budgets)))
    return {f"{b:g}": {k: float(v[i]) for k, v in result.items()} for i, b in enumerate(budgets)}
