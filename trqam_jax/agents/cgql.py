"""CGQL, classifier-guidance Q-learning, as pure init / update / act functions.

The critic is time-conditioned, Q_e(s, x, t) (t = 1 for clean chunks), and guides the BC flow's
Euler sampler like a classifier: at flow times t > 0 the EMA field `target_base` gets
  v_g(x, t) = v(x, t) + guidance_coef (x + (1 - t) inv_temp grad_x mean_e Q_e(s, x, t_q)) / t,
with t_q = 1 for mode "simple" and t_q = t for "mse" / "linex" (the first step, t = 0, and
inv_temp = 0 are unguided). One optimizer step sums, as in the authors' release
(github.com/yonghdong/trqam and github.com/ColinQiyangLi/qam, `agents/cgql.py`):
  - critic: chunked TD at t = 1 with the pessimistic target ensemble at the guided action at s';
  - for "mse" / "linex", noisy_coef times a loss that teaches Q_e(s, x_t, t) at
    x_t = (1 - t) eps + t A the value y_e = target Q_e(s, A, 1): squared error ("mse") or the
    LINEX loss exp(delta) + inv_temp Q_e(s, x_t, t), delta = inv_temp (y_e - Q_e(s, x_t, t)),
    whose minimiser is the soft value (1 / inv_temp) log E exp(inv_temp y); where delta exceeds
    `linex_clip` the loss is delta itself, as in the release, which bounds its gradient;
  - the flow `base` keeps training by BC (L_BC); targets are target_critic and target_base.
CGQL-L (LINEX) is the TRQAM paper's variant and the default mode.

This protocol against QAM's release: the discounts of configs/domains.py (the release: 0.99,
0.995 on giant / humanoidmaze), 1024-wide LayerNorm flows on the 10M / 100M domains and a start
from the shared BC checkpoint (the release trains from scratch); chunking (H = 5 on manipulation,
1 on locomotion), 10 critics, rho and plain Adam as the release.
Base and target_base both take the checkpoint; one guided sample per state (best of 1), as the
release.
`inv_temp`, `guidance_coef` and `noisy_coef` are traced values of `state.hparams`.
"""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import common
from trqam_jax.agents.common import SharedConfig
from trqam_jax.agents.ifql import with_pretrained_base
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import euler_sample, flow_matching_loss

# The traced hparam whose values a sweep's rows take (experiment.swept_values); None: this
# agent's rows are tasks x seeds. Name one of `init`'s hparams to sweep it.
SWEPT = None

__all__ = ["init", "update", "act", "with_pretrained_base"]

MODES = ("simple", "mse", "linex")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CGQLConfig(SharedConfig):
    """Static CGQL configuration: the shared fields, the variant and the LINEX clip."""

    mode: str
    linex_clip: float


@flax.struct.dataclass
class CGQLState:
    """One seed's CGQL agent (a pytree; `config` is static)."""

    params: dict[str, Any]  # critic, target_critic (time-conditioned), base, target_base
    opt_state: Any
    hparams: dict[str, jax.Array]  # inv_temp, guidance_coef, noisy_coef (traced, sweepable)
    step: jax.Array
    config: CGQLConfig = flax.struct.field(pytree_node=False)


def cgql_config(config, example_obs, example_actions) -> CGQLConfig:
    """Static `CGQLConfig` from an ml_collections agent config (configs/cgql.py)."""
    if config.mode not in MODES:
        raise ValueError(f"mode={config.mode!r}; expected one of {MODES} (linex is CGQL-L)")
    return common.from_config(CGQLConfig, config, example_obs, example_actions)


def critic_values(cfg: CGQLConfig, critic_params, obs, x, t):
    """Q_e(s, x, t) of the time-conditioned ensemble: obs (B, D), x (B, d), t (B, 1) -> (E, B)."""
    return networks.apply_critic_ensemble(
        cfg.critic_module(), critic_params, obs, jnp.concatenate([x, t], axis=-1)
    )


def guided_field(cfg: CGQLConfig, field_params, critic_params, hparams, obs):
    """v_g(x, t) of the module docstring, closed over obs (B, D): (B, d), (B, 1) -> (B, d)."""
    base = common.field(cfg.field_module(), field_params, obs)
    inv_temp, coef = hparams["inv_temp"], hparams["guidance_coef"]

    def mean_q(x, t_q):
        return jnp.sum(jnp.mean(critic_values(cfg, critic_params, obs, x, t_q), axis=0))

    def velocity(x, t):
        t_q = jnp.ones_like(t) if cfg.mode == "simple" else t
        score = jax.grad(mean_q)(x, t_q)
        guided = (t > 0.0) & (inv_temp > 0.0)
        # The unguided first step would divide by t = 0; the mask zeroes it exactly.
        guidance = coef * (x + (1.0 - t) * inv_temp * score) / jnp.where(guided, t, 1.0)
        return base(x, t) + jnp.where(guided, guidance, 0.0)

    return velocity


def guided_actions(cfg: CGQLConfig, params, hparams, obs, noise):
    """Clipped Euler sample of the guided EMA field from noise (B, d), guided by the online
    critic; (B, d) actions in [-1, 1]."""
    velocity = guided_field(cfg, params["target_base"], params["critic"], hparams, obs)
    return euler_sample(velocity, noise, cfg.flow_steps, cfg.flow_unroll)


def noisy_critic_loss(cfg: CGQLConfig, noisy_q, targets, weights, inv_temp):
    """The time-conditioned critic's loss at noisy chunks ("mse" or "linex").

    Args: noisy_q, targets (E, B): Q_e(s, x_t, t) and target Q_e(s, A, 1); weights (B,).
    Returns a scalar.
    """
    if cfg.mode == "mse":
        per_sample = jnp.square(noisy_q - targets)
    else:
        delta = inv_temp * (targets - noisy_q)
        clipped = delta > cfg.linex_clip
        linex = jnp.exp(jnp.minimum(delta, cfg.linex_clip)) + inv_temp * noisy_q
        per_sample = jnp.where(clipped, delta, linex)
    return jnp.mean(weights[None] * per_sample)


def init(key, config, example_obs, example_actions) -> CGQLState:
    """Fresh CGQL state.

    Args:
      key: PRNG key (the base field is drawn as every agent's, `common.init_keys`).
      config: ml_collections agent config (configs/cgql.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    cfg = cgql_config(config, example_obs, example_actions)
    critic_key, base_key, _ = common.init_keys(key)
    # The flow time enters the critic as one more input next to the chunk.
    critic_params = networks.init_critic_ensemble(
        critic_key, cfg.critic_module(), cfg.num_qs, cfg.obs_dim, cfg.chunk_dim + 1
    )
    base = networks.init_vector_field(base_key, cfg.field_module(), cfg.obs_dim, cfg.chunk_dim)
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "base": base,
        "target_base": base,
    }
    hparams = {
        name: jnp.asarray(config[name], jnp.float32)
        for name in ("inv_temp", "guidance_coef", "noisy_coef")
    }
    return CGQLState(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        hparams=hparams,
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def update(state: CGQLState, batch, key):
    """One gradient step: critic TD (+ noisy critic loss) + BC flow, then the targets' EMA.

    Pure: `jax.jit(update)` and `jax.vmap(update)` over a leading seed axis both work.

    Args:
      state: `CGQLState` of one seed.
      batch: the chunk batch layout of `common.check_batch`.
      key: PRNG key.
    Returns:
      (new state, metrics: critic_loss, noisy_critic_loss ("mse" / "linex"), bc_loss, q_mean,
      inv_temp, guidance_coef, grad_norm).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    params, hparams = state.params, state.hparams
    obs, next_obs = batch["observations"], batch["next_observations"]
    actions, weights = common.flat_actions(batch, cfg)
    batch_size = obs.shape[0]
    next_key, time_key, noise_key, bc_key = jax.random.split(key, 4)
    clean = jnp.ones((batch_size, 1))

    next_noise = jax.random.normal(next_key, actions.shape)
    next_actions = guided_actions(cfg, params, hparams, next_obs, next_noise)
    next_q = critic_values(cfg, params["target_critic"], next_obs, next_actions, clean)
    targets = td_target(
        batch["rewards"], batch["masks"], next_q, cfg.discount, cfg.horizon, cfg.rho
    )
    noisy = cfg.mode != "simple"
    if noisy:
        t = jax.random.uniform(time_key, (batch_size, 1))
        x_t = (1.0 - t) * jax.random.normal(noise_key, actions.shape) + t * actions
        noisy_targets = critic_values(cfg, params["target_critic"], obs, actions, clean)

    def loss_fn(train):
        q = critic_values(cfg, train["critic"], obs, actions, clean)
        q_loss = critic_loss(q, targets, weights)
        bc_field = common.field(cfg.field_module(), train["base"], obs)
        bc_loss = flow_matching_loss(bc_field, actions, weights, bc_key)
        aux = {"critic_loss": q_loss, "bc_loss": bc_loss, "q_mean": jnp.mean(q)}
        total = q_loss + bc_loss
        if noisy:
            noisy_q = critic_values(cfg, train["critic"], obs, x_t, t)
            aux["noisy_critic_loss"] = noisy_critic_loss(
                cfg, noisy_q, noisy_targets, weights, hparams["inv_temp"]
            )
            total = total + hparams["noisy_coef"] * aux["noisy_critic_loss"]
        return total, aux

    new_params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)
    metrics.update(inv_temp=hparams["inv_temp"], guidance_coef=hparams["guidance_coef"])
    return state.replace(params=new_params, opt_state=opt_state, step=state.step + 1), metrics


def act(state: CGQLState, observations, key):
    """The guided flow policy: noise ~ N(0, I) from `key`, then `guided_actions`.

    Args:
      observations: (M, D).
      key: PRNG key of the flow noise.
    Returns:
      (M, H, A) action chunks in [-1, 1].
    """
    cfg = state.config
    num = observations.shape[0]
    noise = jax.random.normal(key, (num, cfg.chunk_dim))
    actions = guided_actions(cfg, state.params, state.hparams, observations, noise)
    return actions.reshape(num, cfg.horizon, cfg.action_dim)
