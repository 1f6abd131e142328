"""QAM-E: QAM plus a tanh-Gaussian edit policy that refines the flow policy's actions.

Everything of QAM stays (critic, BC base, adjoint matching of the fine field with a fixed inverse
temperature, QAM's `update` with its keys). On top, as in the QAM reference (`agents/qam.py` with
`edit_scale > 0`):
  - a_flow = the fine field's clipped Euler sample (no gradient into the fine field);
  - e ~ tanh N(m(s, a_flow), diag(exp(2 log_std(s, a_flow)))), an MLP on concat(s, a_flow);
  - the acting policy and the critic's next actions are clip(a_flow + edit_scale * e);
  - the edit is trained to maximise mean_e Q_e (online critic, not trained by this loss) with an
    entropy bonus alpha * log pi(e); alpha = exp(edit_log_alpha) is tuned towards the target
    entropy -edit_target_entropy_multiplier * d (0.5 * d by default), d = H * |a|.
The edit parameters share the single clipped Adam of the adjoint-matching step. `inv_temp`,
`edit_scale` and the target entropy are traced values of `state.hparams` (sweepable by vmap).
"""

import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import adjoint_matching, common
from trqam_jax.agents.adjoint_matching import (
    AgentConfig,
    AgentState,
    Extension,
    with_pretrained_base,  # base, target_base and fine take the checkpoint; the edit stays fresh
)
from trqam_jax.agents.common import sample_field

# The traced hparam whose values a sweep's rows take (experiment.swept_values); None: this
# agent's rows are tasks x seeds. Name one of `init`'s hparams to sweep it.
SWEPT = None

__all__ = ["init", "update", "act", "with_pretrained_base"]

# Bounds of the edit policy's log standard deviation (the reference's TanhNormal defaults).
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def _edit_module(cfg: AgentConfig) -> networks.MLP:
    """MLP on concat(s, a_flow) -> (mean, log_std) of the pre-tanh Gaussian, 2 * d outputs.

    GELU hidden layers and one linear output split in two equal the reference's MLP with an
    activated last hidden layer and two linear heads.
    """
    return networks.MLP(tuple(cfg.actor_hidden_dims), 2 * cfg.chunk_dim, False, cfg.compute_dtype)


def edit_distribution(cfg: AgentConfig, edit_params, obs, flow_actions):
    """(mean, log_std), each (B, d), of the pre-tanh Gaussian at obs (B, D), a_flow (B, d)."""
    out = _edit_module(cfg).apply(edit_params, jnp.concatenate([obs, flow_actions], axis=-1))
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def sample_tanh_gaussian(mean, log_std, key):
    """e = tanh(mean + std * eps) and its log density (change of variables through tanh).

    Args:
      mean, log_std: (B, d).
      key: PRNG key for eps ~ N(0, I).
    Returns:
      (e (B, d), log_prob (B,)).
    """
    eps = jax.random.normal(key, mean.shape)
    u = mean + jnp.exp(log_std) * eps
    gaussian = -0.5 * jnp.square(eps) - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(gaussian - log_det, axis=-1)


def _edited(cfg: AgentConfig, edit_params, hparams, obs, flow_actions, key):
    """(clip(a_flow + edit_scale * e), log pi(e)) for a_flow (B, d)."""
    mean, log_std = edit_distribution(cfg, edit_params, obs, flow_actions)
    edit, log_prob = sample_tanh_gaussian(mean, log_std, key)
    return jnp.clip(flow_actions + hparams["edit_scale"] * edit, -1.0, 1.0), log_prob


def edit_loss(cfg: AgentConfig, train, params, hparams, obs, key):
    """The edit policy's loss: -Q of the edited action + entropy term + temperature loss.

    Args:
      train: parameters being differentiated (uses `edit` and `edit_log_alpha`).
      params: the step's old parameters (the fine field and the online critic, not trained here).
      hparams: traced `edit_scale` and `target_entropy`.
      obs: (B, D).
      key: PRNG key for the flow noise and the edit sample.
    Returns:
      (scalar loss, metrics).
    """
    noise_key, edit_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (obs.shape[0], cfg.chunk_dim))
    flow_actions = sample_field(cfg, params["fine"], obs, noise)
    actions, log_prob = _edited(cfg, train["edit"], hparams, obs, flow_actions, edit_key)
    critic = cfg.critic_module()
    q = jnp.mean(networks.apply_critic_ensemble(critic, params["critic"], obs, actions), axis=0)
    alpha = jnp.exp(train["edit_log_alpha"])
    entropy = -jnp.mean(jax.lax.stop_gradient(log_prob))
    q_loss = -jnp.mean(q)
    # The policy sees alpha as a constant and alpha sees the entropy as one (SAC-style tuning).
    entropy_loss = jax.lax.stop_gradient(alpha) * jnp.mean(log_prob)
    alpha_loss = alpha * (entropy - hparams["target_entropy"])
    metrics = {
        "edit_q_loss": q_loss,
        "edit_entropy_loss": entropy_loss,
        "edit_alpha_loss": alpha_loss,
        "edit_entropy": entropy,
        "edit_alpha": alpha,
    }
    return q_loss + entropy_loss + alpha_loss, metrics


def extension(cfg: AgentConfig) -> Extension:
    """The adjoint-matching hook that adds the edit policy to QAM's step."""
    return Extension(
        policy=lambda params, hparams, obs, flow_actions, key: _edited(
            cfg, params["edit"], hparams, obs, flow_actions, key
        )[0],
        loss=lambda train, params, hparams, obs, key: edit_loss(
            cfg, train, params, hparams, obs, key
        ),
    )


def init(key, config, example_obs, example_actions) -> AgentState:
    """Fresh QAM-E state: QAM's state for `key` plus the edit policy and its temperature.

    Args:
      key: PRNG key (QAM's parameters are those `qam.init(key, ...)` gives).
      config: ml_collections agent config (configs/qam_e.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    state = adjoint_matching.init(key, config, example_obs, example_actions, kind="qam")
    cfg = state.config
    edit_params = _edit_module(cfg).init(
        jax.random.fold_in(key, 1), jnp.zeros((1, cfg.obs_dim + cfg.chunk_dim))
    )
    # alpha starts at 1 (log 0), as the reference's LogParam.
    params = dict(state.params, edit=edit_params, edit_log_alpha=jnp.zeros((), jnp.float32))
    hparams = dict(
        state.hparams,
        edit_scale=jnp.asarray(config.edit_scale, jnp.float32),
        target_entropy=jnp.asarray(
            -config.edit_target_entropy_multiplier * cfg.chunk_dim, jnp.float32
        ),
    )
    return state.replace(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        hparams=hparams,
    )


def update(state: AgentState, batch, key):
    """QAM's gradient step with the edit policy's loss and next actions (pure; jit / vmap).

    Args and returns as `adjoint_matching.update`; metrics add edit_q_loss, edit_entropy,
    edit_entropy_loss, edit_alpha, edit_alpha_loss.
    """
    return adjoint_matching.update(state, batch, key, extension=extension(state.config))


def act(state: AgentState, observations, key):
    """clip(a_flow + edit_scale * e): the fine field's Euler sample, then a sampled edit.

    Args:
      observations: (N, D).
      key: PRNG key (flow noise and edit sample).
    Returns:
      (N, H, A) action chunks in [-1, 1], deterministic given the key.
    """
    cfg = state.config
    flow_key, edit_key = jax.random.split(key)
    num = observations.shape[0]
    flow_actions = adjoint_matching.act(state, observations, flow_key).reshape(num, cfg.chunk_dim)
    actions = extension(cfg).policy(
        state.params, state.hparams, observations, flow_actions, edit_key
    )
    return actions.reshape(num, cfg.horizon, cfg.action_dim)
