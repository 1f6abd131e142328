"""FQL (Park, Li, Levine 2025) as pure init / update / act functions.

A BC flow `v_bc` (the same vector field as the adjoint-matching base, trained with L_BC) is
distilled into a one-step policy `mu(s, z)` that also maximises the critic:
  L_actor = alpha * mean ||mu(s, z) - euler_bc(s, z)||^2 - mean_e Q_e(s, clip(mu(s, z))).
The critic is the shared chunked TD learner; its next actions are `clip(mu(s', z'))`.

Two presets (configs/fql.py, configs/fql_chunked.py) differ only in numbers: the original
(2 critics, `q_agg` mean or min, H = 1, plain Adam) and the chunked variant of the QAM / TRQAM
papers (10 critics, target mean - rho * std, gamma^H bootstrap, chunks of H actions).
`alpha` is a traced value of the state (`state.hparams`), so a sweep over it is a vmap.
"""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import common
from trqam_jax.agents.common import SharedConfig, sample_field
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import flow_matching_loss

# The traced hparam whose values a sweep's rows take (experiment.swept_values); None: this
# agent's rows are tasks x seeds. Name one of `init`'s hparams to sweep it.
SWEPT = None

Q_AGGS = ("mean", "min")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FQLConfig(SharedConfig):
    """Static FQL configuration (hashable: part of the state's tree structure).

    `rho` is the pessimism of q_agg="mean" (target mean - rho * std); `grad_clip <= 0` means
    plain Adam, as in both FQL references.
    """

    q_agg: str
    normalize_q_loss: bool


@flax.struct.dataclass
class FQLState:
    """One seed's FQL agent (a pytree; `config` is static)."""

    params: dict[str, Any]  # critic, target_critic, base (the BC flow v_bc), onestep (mu)
    opt_state: Any
    hparams: dict[str, jax.Array]  # alpha (traced, sweepable)
    step: jax.Array
    config: FQLConfig = flax.struct.field(pytree_node=False)


def fql_config(config, example_obs, example_actions) -> FQLConfig:
    """Static `FQLConfig` from an ml_collections agent config (configs/fql.py)."""
    if config.q_agg not in Q_AGGS:
        raise ValueError(f"q_agg={config.q_agg!r}; expected one of {Q_AGGS}")
    return common.from_config(FQLConfig, config, example_obs, example_actions)


def _modules(cfg: FQLConfig):
    """(BC vector field, one-step policy, critic member) modules."""
    # mu(s, z) is the vector field's MLP without the time input, as in the reference.
    onestep = networks.MLP(
        tuple(cfg.actor_hidden_dims), cfg.chunk_dim, cfg.actor_layer_norm, cfg.compute_dtype
    )
    return cfg.field_module(), onestep, cfg.critic_module()


def _onestep(module, params, obs, noise):
    """mu(s, z), unclipped: obs (B, D), noise (B, d) -> (B, d)."""
    return module.apply(params, jnp.concatenate([obs, noise], axis=-1))


def aggregate_next_q(next_q, q_agg: str):
    """The ensemble the TD target sees: (E, B) as is for "mean", its (1, B) minimum for "min".

    `td_target` takes mean - rho * std over the member axis; a single member has std 0, so the
    minimum passes through unchanged (the original FQL's clipped double Q with q_agg="min").
    """
    if q_agg == "min":
        return jnp.min(next_q, axis=0, keepdims=True)
    return next_q


def init(key, config, example_obs, example_actions) -> FQLState:
    """Fresh FQL state.

    Args:
      key: PRNG key.
      config: ml_collections agent config (configs/fql.py or configs/fql_chunked.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    cfg = fql_config(config, example_obs, example_actions)
    field, onestep, critic = _modules(cfg)
    critic_key, base_key, onestep_key = common.init_keys(key)
    critic_params = networks.init_critic_ensemble(
        critic_key, critic, cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
    )
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "base": networks.init_vector_field(base_key, field, cfg.obs_dim, cfg.chunk_dim),
        "onestep": onestep.init(onestep_key, jnp.zeros((1, cfg.obs_dim + cfg.chunk_dim))),
    }
    return FQLState(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        hparams={"alpha": jnp.asarray(config.alpha, jnp.float32)},
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def with_pretrained_base(state: FQLState, base_params) -> FQLState:
    """Load the shared BC checkpoint (an adjoint-matching `base`) as the BC flow v_bc.

    The one-step policy and the critic keep their fresh initialisation; the optimizer restarts.
    """
    params = dict(state.params, base=base_params)
    return state.replace(
        params=params, opt_state=common.optimizer(state.config).init(common.trainable(params))
    )


def update(state: FQLState, batch, key):
    """One gradient step: critic TD + BC flow + distillation / Q actor loss, then the target EMA.

    Pure: `jax.jit(update)` and `jax.vmap(update)` over a leading seed axis both work.

    Args:
      state: `FQLState` of one seed.
      batch: dict with observations (B, D), actions (B, H, A), rewards (B,), masks (B,),
        valid (B, H), next_observations (B, D).
      key: PRNG key.
    Returns:
      (new state, dict of scalar metrics).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    field, onestep, critic = _modules(cfg)
    params = state.params
    obs, next_obs = batch["observations"], batch["next_observations"]
    batch_size = obs.shape[0]
    actions, weights = common.flat_actions(batch, cfg)
    bc_key, next_key, noise_key = jax.random.split(key, 3)

    # Critic target: the deployed one-step policy at s', scored by the target ensemble.
    next_noise = jax.random.normal(next_key, (batch_size, cfg.chunk_dim))
    next_actions = jnp.clip(_onestep(onestep, params["onestep"], next_obs, next_noise), -1.0, 1.0)
    next_q = networks.apply_critic_ensemble(critic, params["target_critic"], next_obs, next_actions)
    targets = td_target(
        batch["rewards"],
        batch["masks"],
        aggregate_next_q(next_q, cfg.q_agg),
        cfg.discount,
        cfg.horizon,
        cfg.rho,
    )

    # Distillation target: the BC flow's Euler sample from the same noise as mu; no gradient.
    noise = jax.random.normal(noise_key, (batch_size, cfg.chunk_dim))
    flow_actions = sample_field(cfg, params["base"], obs, noise)
    alpha = state.hparams["alpha"]

    def loss_fn(train):
        q = networks.apply_critic_ensemble(critic, train["critic"], obs, actions)
        q_loss = critic_loss(q, targets, weights)
        bc_field = common.field(field, train["base"], obs)
        bc_loss = flow_matching_loss(bc_field, actions, weights, bc_key)
        policy_actions = _onestep(onestep, train["onestep"], obs, noise)
        distill_loss = jnp.mean(jnp.square(policy_actions - flow_actions))
        # The actor is scored by the online critic of this step, which it does not train.
        q_pi = jnp.mean(
            networks.apply_critic_ensemble(
                critic, params["critic"], obs, jnp.clip(policy_actions, -1.0, 1.0)
            ),
            axis=0,
        )
        actor_q_loss = -jnp.mean(q_pi)
        if cfg.normalize_q_loss:
            # Makes alpha invariant to the scale of Q (FQL's normalize_q_loss option).
            actor_q_loss = actor_q_loss / jax.lax.stop_gradient(jnp.mean(jnp.abs(q_pi)))
        actor_loss = alpha * distill_loss + actor_q_loss
        aux = {
            "critic_loss": q_loss,
            "bc_loss": bc_loss,
            "distill_loss": distill_loss,
            "actor_q_loss": actor_q_loss,
            "actor_loss": actor_loss,
            "q_mean": jnp.mean(q),
            "q_policy": jnp.mean(q_pi),
        }
        return q_loss + bc_loss + actor_loss, aux

    new_params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)
    metrics.update(alpha=alpha)
    return state.replace(params=new_params, opt_state=opt_state, step=state.step + 1), metrics


def act(state: FQLState, observations, key):
    """The one-step policy: clip(mu(s, z)) with z ~ N(0, I) drawn from `key`.

    Args:
      observations: (N, D).
      key: PRNG key for the noise z.
    Returns:
      (N, H, A) action chunks in [-1, 1].
    """
    cfg = state.config
    _, onestep, _ = _modules(cfg)
    num = observations.shape[0]
    noise = jax.random.normal(key, (num, cfg.chunk_dim))
    actions = jnp.clip(_onestep(onestep, state.params["onestep"], observations, noise), -1.0, 1.0)
    return actions.reshape(num, cfg.horizon, cfg.action_dim)
