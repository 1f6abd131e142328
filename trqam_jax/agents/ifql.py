"""IFQL, implicit flow Q-learning (the flow version of IDQL), as pure init / update / act functions.

Three losses summed into one optimizer step, as in the authors' release (github.com/yonghdong/trqam
and github.com/ColinQiyangLi/qam, `agents/ifql.py`):
  - value, by expectile regression towards the pessimistic target ensemble at the dataset chunk:
    L_V = mean_b |kappa - 1[u_b < 0]| u_b^2,  u = (mean_e - rho std_e) Q'_e(s, A) - V(s);
  - critic, by TD towards the value of the next state (no next action is sampled):
    L_Q = mean_{e,b} valid_last (Q_e(s, A) - (R + gamma^H mask V(s')))^2;
  - the flow `base`, by behaviour cloning (L_BC): it is the behaviour model, never steered.
The policy draws `num_samples` chunks from the base flow's Euler sampler and executes the one the
online critic ensemble scores highest by its minimum (best of N).

This protocol against QAM's release: the discounts of configs/domains.py (the release: 0.99,
0.995 on giant / humanoidmaze), 1024-wide LayerNorm flows on the 10M / 100M domains and a start
from the shared BC checkpoint (the release trains from scratch); chunking (H = 5 on manipulation,
1 on locomotion), 10 critics, rho and plain Adam as the release.
N = 32 as the release. The TRQAM release's BC-checkpoint loader misses IFQL (it looks for
`modules_actor`; IFQL names its flow `actor_flow`), so there IFQL's flow starts fresh; here it
starts from the checkpoint like every agent's.
`kappa` is a traced value of `state.hparams` (sweepable by vmap).
"""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import common
from trqam_jax.agents.common import SharedConfig
from trqam_jax.critic import critic_loss, pessimistic_value, td_target
from trqam_jax.flow import flow_matching_loss

# The traced hparam whose values a sweep's rows take (experiment.swept_values); None: this
# agent's rows are tasks x seeds. Name one of `init`'s hparams to sweep it.
SWEPT = None

__all__ = ["init", "update", "act", "with_pretrained_base", "expectile_loss"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class IFQLConfig(SharedConfig):
    """Static IFQL configuration: the shared fields and the best-of-N sample count."""

    num_samples: int


@flax.struct.dataclass
class IFQLState:
    """One seed's IFQL agent (a pytree; `config` is static)."""

    params: dict[str, Any]  # critic, target_critic, value, base (the behaviour flow)
    opt_state: Any
    hparams: dict[str, jax.Array]  # kappa (traced, sweepable)
    step: jax.Array
    config: IFQLConfig = flax.struct.field(pytree_node=False)


def ifql_config(config, example_obs, example_actions) -> IFQLConfig:
    """Static `IFQLConfig` from an ml_collections agent config (configs/ifql.py)."""
    if config.num_samples < 1:
        raise ValueError(f"num_samples={config.num_samples}; the best-of-N policy needs N >= 1")
    if not 0.0 < config.kappa < 1.0:
        raise ValueError(f"kappa={config.kappa}; the expectile must lie in (0, 1), e.g. 0.9")
    return common.from_config(IFQLConfig, config, example_obs, example_actions)


def expectile_loss(diff, kappa):
    """mean |kappa - 1[diff < 0]| diff^2: its minimiser over a constant is the kappa-expectile.

    Args: diff (B,) target minus prediction; kappa scalar in (0, 1). Returns a scalar.
    """
    weight = jnp.where(diff >= 0.0, kappa, 1.0 - kappa)
    return jnp.mean(weight * jnp.square(diff))


def _value_module(cfg: IFQLConfig) -> networks.MLP:
    """V(s): one member of the critic architecture on the observation alone."""
    return cfg.critic_module()


def state_value(cfg: IFQLConfig, value_params, obs):
    """V(s) for obs (B, D) -> (B,)."""
    return _value_module(cfg).apply(value_params, obs)[..., 0]


def value_loss(cfg: IFQLConfig, value_params, target_critic_params, obs, actions, kappa):
    """(L_V, V(s) (B,)): expectile regression of V(s) on the pessimistic target Q at (s, A).

    Args: obs (B, D), actions (B, d) dataset chunks, kappa scalar.
    """
    target_q = networks.apply_critic_ensemble(
        cfg.critic_module(), target_critic_params, obs, actions
    )
    v = state_value(cfg, value_params, obs)
    return expectile_loss(pessimistic_value(target_q, cfg.rho) - v, kappa), v


def init(key, config, example_obs, example_actions) -> IFQLState:
    """Fresh IFQL state.

    Args:
      key: PRNG key (the base field is drawn as every agent's, `common.init_keys`).
      config: ml_collections agent config (configs/ifql.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    cfg = ifql_config(config, example_obs, example_actions)
    critic_key, base_key, value_key = common.init_keys(key)
    critic_params = networks.init_critic_ensemble(
        critic_key, cfg.critic_module(), cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
    )
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "value": _value_module(cfg).init(value_key, jnp.zeros((1, cfg.obs_dim))),
        "base": networks.init_vector_field(
            base_key, cfg.field_module(), cfg.obs_dim, cfg.chunk_dim
        ),
    }
    return IFQLState(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        hparams={"kappa": jnp.asarray(config.kappa, jnp.float32)},
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def with_pretrained_base(state, base_params):
    """Load the shared BC checkpoint into `base` (and `target_base`, where the agent has one).

    The other parameter sets keep their fresh initialisation; the optimizer restarts. DSRL and
    CGQL use this function too.
    """
    loaded = {name: base_params for name in ("base", "target_base") if name in state.params}
    params = dict(state.params, **loaded)
    return state.replace(
        params=params, opt_state=common.optimizer(state.config).init(common.trainable(params))
    )


def update(state: IFQLState, batch, key):
    """One gradient step: expectile value + TD critic + BC flow, then the target critic's EMA.

    Pure: `jax.jit(update)` and `jax.vmap(update)` over a leading seed axis both work.

    Args:
      state: `IFQLState` of one seed.
      batch: the chunk batch layout of `common.check_batch`.
      key: PRNG key of the flow-matching noise and times.
    Returns:
      (new state, metrics: critic_loss, value_loss, bc_loss, q_mean, v_mean, kappa, grad_norm).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    critic, field = cfg.critic_module(), cfg.field_module()
    params, kappa = state.params, state.hparams["kappa"]
    obs = batch["observations"]
    actions, weights = common.flat_actions(batch, cfg)
    # V(s') of this step's value network (not trained by the TD loss); one member, rho irrelevant.
    next_v = state_value(cfg, params["value"], batch["next_observations"])
    targets = td_target(
        batch["rewards"], batch["masks"], next_v[None], cfg.discount, cfg.horizon, 0.0
    )

    def loss_fn(train):
        v_loss, v = value_loss(cfg, train["value"], params["target_critic"], obs, actions, kappa)
        q = networks.apply_critic_ensemble(critic, train["critic"], obs, actions)
        q_loss = critic_loss(q, targets, weights)
        bc_loss = flow_matching_loss(common.field(field, train["base"], obs), actions, weights, key)
        aux = {
            "critic_loss": q_loss,
            "value_loss": v_loss,
            "bc_loss": bc_loss,
            "q_mean": jnp.mean(q),
            "v_mean": jnp.mean(v),
        }
        return q_loss + v_loss + bc_loss, aux

    new_params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)
    metrics.update(kappa=kappa)
    return state.replace(params=new_params, opt_state=opt_state, step=state.step + 1), metrics


def act(state: IFQLState, observations, key):
    """Best of N: N base-flow samples per observation, the one with the highest min_e Q_e.

    Args:
      observations: (M, D).
      key: PRNG key of the N flow noises per observation.
    Returns:
      (M, H, A) action chunks in [-1, 1].
    """
    cfg = state.config
    num, samples = observations.shape[0], cfg.num_samples
    repeated = jnp.repeat(observations, samples, axis=0)  # (M * N, D), observation-major
    noise = jax.random.normal(key, (num * samples, cfg.chunk_dim))
    candidates = common.sample_field(cfg, state.params["base"], repeated, noise)
    q = networks.apply_critic_ensemble(
        cfg.critic_module(), state.params["critic"], repeated, candidates
    )
    best = jnp.argmax(jnp.min(q, axis=0).reshape(num, samples), axis=1)
    chosen = jnp.take_along_axis(
        candidates.reshape(num, samples, cfg.chunk_dim), best[:, None, None], axis=1
    )
    return chosen.reshape(num, cfg.horizon, cfg.action_dim)
