"""Part 3 of the known-answer experiment: the full agent (`agents.bc` then `agents.trqam`) on
samples of the base with noisy rewards of the quadratic critic."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import trqam as trqam_config
from trqam_jax import bandit, networks, train
from trqam_jax import gaussian_tilt as gt
from trqam_jax.adjoint import terminal_adjoint
from trqam_jax.agents import bc, common, trqam
from trqam_jax.known_answer.problem import OBS_DIM, PROBLEM, Settings


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
