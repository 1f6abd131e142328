"""DSRL, diffusion steering (Wagenmaker et al. 2025), as pure init / update / act functions.

The flow policy's initial noise is the action of a latent policy: a tanh-Gaussian
pi_w(z | s) over (-1, 1)^d, scaled by `noise_scale`, whose chunk is then the Euler sample of the
BC flow from that noise, a = euler_{target_base}(s, noise_scale * z). One optimizer step sums, as
in the authors' release (github.com/yonghdong/trqam and github.com/ColinQiyangLi/qam,
`agents/dsrl.py`):
  - critic: chunked TD with the pessimistic target ensemble at a' = the DSRL action at s';
  - latent critic Q^z_e(s, w), distilled from the online action critic through the flow:
    L_distill = mean_{e,b} (Q^z_e(s, w) - Q_e(s, euler_{target_base}(s, w)))^2, w ~ N(0, I);
  - latent policy: mean_b (alpha log pi(z | s) - mean_e Q^z_e(s, noise_scale * z)) with z
    reparameterised (Q^z and alpha constant there), and the temperature loss
    alpha (H[pi] - target_entropy), alpha = exp(log_alpha), target -0.5 d by default;
  - the flow `base` keeps training by BC (L_BC); the steered flow is its EMA `target_base`.
Targets: `target_critic` and `target_base` (EMA rate tau).

This protocol against QAM's release: the discounts of configs/domains.py (the release: 0.99,
0.995 on giant / humanoidmaze), 1024-wide LayerNorm flows on the 10M / 100M domains and a start
from the shared BC checkpoint (the release trains from scratch); chunking (H = 5 on manipulation,
1 on locomotion), 10 critics, rho and plain Adam as the release.
Base and target_base both take the checkpoint; one latent sample per state (best of 1), as the
release.
`noise_scale` and `target_entropy` are traced values of `state.hparams` (sweepable by vmap).
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import common
from trqam_jax.agents.common import SharedConfig, sample_field
from trqam_jax.agents.ifql import with_pretrained_base
from trqam_jax.agents.qam_e import LOG_STD_MAX, LOG_STD_MIN, sample_tanh_gaussian
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import flow_matching_loss

# The traced hparam whose values a sweep's rows take (experiment.swept_values); None: this
# agent's rows are tasks x seeds. Name one of `init`'s hparams to sweep it.
SWEPT = None

__all__ = ["init", "update", "act", "with_pretrained_base"]


@flax.struct.dataclass
class DSRLState:
    """One seed's DSRL agent (a pytree; `config` is static)."""

    # critic, target_critic, z_critic, base, target_base, latent, log_alpha
    params: dict[str, Any]
    opt_state: Any
    hparams: dict[str, jax.Array]  # noise_scale, target_entropy (traced, sweepable)
    step: jax.Array
    config: SharedConfig = flax.struct.field(pytree_node=False)


def _latent_module(cfg: SharedConfig) -> networks.MLP:
    """MLP on s -> (mean, log_std) of the pre-tanh Gaussian, 2 d outputs (QAM-E's edit head)."""
    return networks.MLP(tuple(cfg.actor_hidden_dims), 2 * cfg.chunk_dim, False, cfg.compute_dtype)


def latent_sample(cfg: SharedConfig, latent_params, obs, key):
    """(z (B, d) in (-1, 1), log pi(z | s) (B,)) from the latent policy at obs (B, D)."""
    mean, log_std = jnp.split(_latent_module(cfg).apply(latent_params, obs), 2, axis=-1)
    return sample_tanh_gaussian(mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX), key)


def steered_actions(cfg: SharedConfig, params, hparams, obs, key):
    """The DSRL action: euler_{target_base}(s, noise_scale * z), z ~ pi_w(. | s); (B, d)."""
    z, _ = latent_sample(cfg, params["latent"], obs, key)
    return sample_field(cfg, params["target_base"], obs, hparams["noise_scale"] * z)


def init(key, config, example_obs, example_actions) -> DSRLState:
    """Fresh DSRL state.

    Args:
      key: PRNG key (the base field is drawn as every agent's, `common.init_keys`).
      config: ml_collections agent config (configs/dsrl.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    cfg = common.from_config(SharedConfig, config, example_obs, example_actions)
    critic_key, base_key, latent_key = common.init_keys(key)
    critic = cfg.critic_module()
    critic_params = networks.init_critic_ensemble(
        critic_key, critic, cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
    )
    base = networks.init_vector_field(base_key, cfg.field_module(), cfg.obs_dim, cfg.chunk_dim)
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "z_critic": networks.init_critic_ensemble(
            jax.random.fold_in(critic_key, 1), critic, cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
        ),
        "base": base,
        "target_base": base,
        "latent": _latent_module(cfg).init(latent_key, jnp.zeros((1, cfg.obs_dim))),
        "log_alpha": jnp.zeros((), jnp.float32),  # alpha starts at 1, as the release
    }
    hparams = {
        "noise_scale": jnp.asarray(config.noise_scale, jnp.float32),
        "target_entropy": jnp.asarray(
            -config.target_entropy_multiplier * cfg.chunk_dim, jnp.float32
        ),
    }
    return DSRLState(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        hparams=hparams,
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def update(state: DSRLState, batch, key):
    """One gradient step: critic TD + latent-critic distillation + latent policy and its
    temperature + BC flow, then the EMA of target_critic and target_base.

    Pure: `jax.jit(update)` and `jax.vmap(update)` over a leading seed axis both work.

    Args:
      state: `DSRLState` of one seed.
      batch: the chunk batch layout of `common.check_batch`.
      key: PRNG key.
    Returns:
      (new state, metrics: critic_loss, distill_loss, actor_loss, alpha_loss, alpha, entropy,
      bc_loss, q_mean, q_latent, noise_scale, grad_norm).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    critic, field = cfg.critic_module(), cfg.field_module()
    params, hparams = state.params, state.hparams
    obs, next_obs = batch["observations"], batch["next_observations"]
    actions, weights = common.flat_actions(batch, cfg)
    next_key, distill_key, latent_key, bc_key = jax.random.split(key, 4)

    next_actions = steered_actions(cfg, params, hparams, next_obs, next_key)
    next_q = networks.apply_critic_ensemble(critic, params["target_critic"], next_obs, next_actions)
    targets = td_target(
        batch["rewards"], batch["masks"], next_q, cfg.discount, cfg.horizon, cfg.rho
    )
    # The latent critic's regression target: the online critic at the flow's map of N(0, I).
    distill_noise = jax.random.normal(distill_key, actions.shape)
    distill_targets = networks.apply_critic_ensemble(
        critic, params["critic"], obs, sample_field(cfg, params["target_base"], obs, distill_noise)
    )

    def loss_fn(train):
        q = networks.apply_critic_ensemble(critic, train["critic"], obs, actions)
        q_loss = critic_loss(q, targets, weights)
        z_q = networks.apply_critic_ensemble(critic, train["z_critic"], obs, distill_noise)
        distill_loss = jnp.mean(jnp.square(z_q - distill_targets))
        z, log_prob = latent_sample(cfg, train["latent"], obs, latent_key)
        # The policy is scored by this step's latent critic, which its loss does not train.
        q_latent = jnp.mean(
            networks.apply_critic_ensemble(
                critic, params["z_critic"], obs, hparams["noise_scale"] * z
            ),
            axis=0,
        )
        alpha = jnp.exp(train["log_alpha"])
        actor_loss = jnp.mean(jnp.exp(params["log_alpha"]) * log_prob - q_latent)
        entropy = -jnp.mean(jax.lax.stop_gradient(log_prob))
        alpha_loss = alpha * (entropy - hparams["target_entropy"])
        bc_loss = flow_matching_loss(
            common.field(field, train["base"], obs), actions, weights, bc_key
        )
        aux = {
            "critic_loss": q_loss,
            "distill_loss": distill_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "alpha": alpha,
            "entropy": entropy,
            "bc_loss": bc_loss,
            "q_mean": jnp.mean(q),
            "q_latent": jnp.mean(q_latent),
        }
        return q_loss + distill_loss + actor_loss + alpha_loss + bc_loss, aux

    new_params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)
    metrics.update(noise_scale=hparams["noise_scale"])
    return state.replace(params=new_params, opt_state=opt_state, step=state.step + 1), metrics


def act(state: DSRLState, observations, key):
    """The steered flow: z ~ pi_w(. | s) from `key`, then euler_{target_base}(s, noise_scale z).

    Args:
      observations: (M, D).
      key: PRNG key of the latent sample.
    Returns:
      (M, H, A) action chunks in [-1, 1].
    """
    cfg = state.config
    actions = steered_actions(cfg, state.params, state.hparams, observations, key)
    return actions.reshape(observations.shape[0], cfg.horizon, cfg.action_dim)
