"""The adjoint-matching agent family (TRQAM and QAM) as pure init / update / act functions.

TRQAM and QAM assemble the same pieces and differ in two places only:
  - the noise scale of the matching loss and the terminal adjoint: TRQAM uses
    sigma_k = g_k / sqrt(lambda_eff) with the plain critic gradient, QAM uses sigma_k = g_k with
    the critic gradient scaled by a fixed inverse temperature beta;
  - TRQAM adapts lambda by projected dual descent on the path-KL estimate after every step.

The agent kind and every shape are static (`AgentConfig`, a hashable field of the state); the
numbers a sweep varies (`kl_budget`, `inv_temp`) are traced values in `state.hparams`, so whole
sweeps are one `jax.vmap` over stacked states.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.adjoint import adjoint_matching_loss, lean_adjoint, terminal_adjoint
from trqam_jax.agents import common
from trqam_jax.agents.common import SharedConfig, field
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import euler_sample, flow_matching_loss, flow_times
from trqam_jax.sde import final_step, noise_scale_sq, ode_and_sde_rollout, sde_rollout
from trqam_jax.trust_region import DualConfig, dual_update, effective_lambda, ema_update, path_kl

AGENT_KINDS = ("trqam", "qam")
# The traced value of each kind that a sweep varies (configs/trqam.py, configs/qam.py).
SWEPT = {"trqam": "kl_budget", "qam": "inv_temp"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentConfig(SharedConfig):
    """Static agent configuration (hashable: it is part of the state's tree structure).

    QAM keeps the dual's KL EMA as a diagnostic (`dual.kl_ema_coef`) and never moves lambda.
    """

    kind: str
    dual: DualConfig
    fuse_rollouts: bool


@flax.struct.dataclass
class AgentState:
    """Everything one seed's agent carries between updates (a pytree; `config` is static)."""

    params: dict[str, Any]  # critic, target_critic, base, target_base, fine
    opt_state: Any
    lam: jax.Array
    kl_ema: jax.Array
    hparams: dict[str, jax.Array]  # traced sweepable scalars: kl_budget (trqam), inv_temp (qam)
    step: jax.Array
    config: AgentConfig = flax.struct.field(pytree_node=False)


@dataclasses.dataclass(frozen=True)
class Extension:
    """Extra trainable parts an agent adds to the adjoint-matching step (e.g. QAM-E's edit).

    Its parameter sets live in `state.params` next to the core ones and share the optimizer.
      policy(params, hparams, obs (B, D), flow_actions (B, d), key) -> (B, d): the acting policy
        built on the fine field's clipped Euler actions; it also gives the critic's next actions.
      loss(train, params, hparams, obs (B, D), key) -> (scalar, metrics): added to the step's
        loss; `train` holds the parameters being differentiated, `params` the step's old ones.
    """

    policy: Callable
    loss: Callable


def _stacked_field(module, params, obs, xs, times):
    """v at K states at once: xs (K, B, d), times (K,) -> (K, B, d) in one batched call."""
    num_steps, batch, _ = xs.shape
    obs_k = jnp.broadcast_to(obs, (num_steps,) + obs.shape)
    t_k = jnp.broadcast_to(times[:, None, None], (num_steps, batch, 1))
    return networks.apply_vector_field(module, params, obs_k, xs, t_k)


def init(key, config, example_obs, example_actions, kind: str) -> AgentState:
    """Fresh agent state.

    Args:
      key: PRNG key.
      config: ml_collections agent config (configs/trqam.py or configs/qam.py).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
      kind: "trqam" or "qam".
    """
    if kind not in AGENT_KINDS:
        raise ValueError(f"unknown adjoint-matching agent {kind!r}; expected one of {AGENT_KINDS}")
    dual = DualConfig(**{name: float(config[name]) for name in DualConfig._fields})
    cfg = common.from_config(
        AgentConfig, config, example_obs, example_actions, kind=kind, dual=dual
    )
    module, critic = cfg.field_module(), cfg.critic_module()
    critic_key, base_key, fine_key = common.init_keys(key)
    critic_params = networks.init_critic_ensemble(
        critic_key, critic, cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
    )
    base_params = networks.init_vector_field(base_key, module, cfg.obs_dim, cfg.chunk_dim)
    fine_params = networks.init_vector_field(fine_key, module, cfg.obs_dim, cfg.chunk_dim)
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "base": base_params,
        "target_base": base_params,
        "fine": fine_params,
    }
    swept = SWEPT[kind]
    return AgentState(
        params=params,
        opt_state=common.optimizer(cfg).init(common.trainable(params)),
        lam=jnp.asarray(config.lam_init, jnp.float32),
        kl_ema=jnp.zeros((), jnp.float32),
        hparams={swept: jnp.asarray(config[swept], jnp.float32)},
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def with_pretrained_base(state: AgentState, base_params) -> AgentState:
    """Start fine-tuning from a BC-pretrained field: base, target_base and fine all take it.

    The critic keeps its fresh initialisation and the optimizer restarts, as in the paper's
    pipeline (BC pretraining, then fine-tuning).
    """
    params = dict(state.params, base=base_params, target_base=base_params, fine=base_params)
    opt_state = common.optimizer(state.config).init(common.trainable(params))
    return state.replace(params=params, opt_state=opt_state)


def _temperature(state: AgentState):
    """(lambda_eff, adjoint scale): TRQAM's adapted lambda, or QAM's fixed beta = inv_temp."""
    if state.config.kind == "trqam":
        return effective_lambda(state.lam, state.config.dual), jnp.ones(())
    return jnp.ones(()), state.hparams["inv_temp"]


def _fine_rollouts(cfg: AgentConfig, module, fine_params, next_obs, obs, next_noise, x0, sde_key):
    """(next actions (B, d) of the Euler sampler at s', SDE states (K, B, d) at s).

    `cfg.fuse_rollouts` runs both as one chain of K calls on a 2B batch (`ode_and_sde_rollout`);
    otherwise one after the other (the reference's order). Same numbers up to round-off.
    """
    if cfg.fuse_rollouts:
        paired = field(module, fine_params, jnp.concatenate([next_obs, obs], axis=0))
        return ode_and_sde_rollout(paired, next_noise, x0, sde_key, cfg.flow_steps, cfg.flow_unroll)
    next_actions = euler_sample(
        field(module, fine_params, next_obs), next_noise, cfg.flow_steps, cfg.flow_unroll
    )
    xs = sde_rollout(field(module, fine_params, obs), x0, sde_key, cfg.flow_steps, cfg.flow_unroll)
    return next_actions, xs


def update(state: AgentState, batch, key, extension: Extension | None = None):
    """One gradient step: critic TD + BC flow + adjoint matching, targets, dual update.

    Pure: `jax.jit(update)` and `jax.vmap(update)` over a leading seed axis both work.

    Args:
      state: `AgentState` of one seed.
      batch: dict with observations (B, D), actions (B, H, A), rewards (B,), masks (B,),
        valid (B, H), next_observations (B, D).
      key: PRNG key.
      extension: optional extra policy and loss (QAM-E); None for TRQAM and QAM.
    Returns:
      (new state, dict of scalar metrics).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    module, critic = cfg.field_module(), cfg.critic_module()
    params = state.params
    k_steps, h = cfg.flow_steps, 1.0 / cfg.flow_steps
    obs, next_obs = batch["observations"], batch["next_observations"]
    batch_size = obs.shape[0]
    actions, weights = common.flat_actions(batch, cfg)
    bc_key, next_key, x0_key, sde_key = jax.random.split(key, 4)

    # The deployed (deterministic) policy at s' for the critic target, and the memoryless SDE
    # rollout of the fine field at s for adjoint matching.
    next_noise = jax.random.normal(next_key, (batch_size, cfg.chunk_dim))
    x0 = jax.random.normal(x0_key, (batch_size, cfg.chunk_dim))
    next_actions, xs = _fine_rollouts(
        cfg, module, params["fine"], next_obs, obs, next_noise, x0, sde_key
    )
    if extension is not None:
        # A key of its own, so that TRQAM / QAM draw exactly the same numbers as without hooks.
        ext_next_key, ext_loss_key = jax.random.split(jax.random.fold_in(key, 1))
        next_actions = extension.policy(params, state.hparams, next_obs, next_actions, ext_next_key)
    next_q = networks.apply_critic_ensemble(critic, params["target_critic"], next_obs, next_actions)
    targets = td_target(
        batch["rewards"], batch["masks"], next_q, cfg.discount, cfg.horizon, cfg.rho
    )

    # Lean adjoint through the EMA reference.
    lambda_eff, adj_scale = _temperature(state)
    ref = field(module, params["target_base"], obs)
    times = flow_times(k_steps)
    v_ref = _stacked_field(module, params["target_base"], obs, xs, times)
    x_final = final_step(xs[-1], v_ref[-1], k_steps)
    q_fn = lambda a: networks.apply_critic_ensemble(critic, params["target_critic"], obs, a)
    adj_final = adj_scale * terminal_adjoint(q_fn, x_final)
    adjs = lean_adjoint(ref, xs, adj_final, k_steps, cfg.flow_unroll)
    g_sq = noise_scale_sq(times, h)
    sigma = jnp.sqrt(g_sq / lambda_eff)

    def loss_fn(train):
        q = networks.apply_critic_ensemble(critic, train["critic"], obs, actions)
        q_loss = critic_loss(q, targets, weights)
        bc_loss = flow_matching_loss(field(module, train["base"], obs), actions, weights, bc_key)
        dv = _stacked_field(module, train["fine"], obs, xs, times) - v_ref
        am_loss = adjoint_matching_loss(dv, adjs, sigma)
        kl = path_kl(jax.lax.stop_gradient(dv), g_sq, k_steps, cfg.horizon)
        aux = {
            "critic_loss": q_loss,
            "bc_loss": bc_loss,
            "am_loss": am_loss,
            "kl": kl,
            "q_mean": jnp.mean(q),
        }
        total = q_loss + bc_loss + am_loss
        if extension is not None:
            ext_loss, ext_aux = extension.loss(train, params, state.hparams, obs, ext_loss_key)
            aux.update(ext_aux)
            total = total + ext_loss
        return total, aux

    new_params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)

    if cfg.kind == "trqam":
        budget = state.hparams["kl_budget"]
        lam, kl_ema, clipped = dual_update(state.lam, state.kl_ema, metrics["kl"], budget, cfg.dual)
        metrics.update(kl_budget=budget, kl_clipped=clipped.astype(jnp.float32))
    else:
        # QAM has no dual; the KL EMA is kept as a diagnostic of how far the policy drifts.
        lam, kl_ema = state.lam, ema_update(state.kl_ema, metrics["kl"], cfg.dual.kl_ema_coef)
    new_state = state.replace(
        params=new_params, opt_state=opt_state, lam=lam, kl_ema=kl_ema, step=state.step + 1
    )
    new_lambda_eff, _ = _temperature(new_state)
    metrics.update(
        kl_ema=kl_ema,
        # `lambda` is the temperature in sigma: lambda_eff for TRQAM, 1 / beta for QAM.
        **{"lambda": new_lambda_eff / adj_scale},
    )
    return new_state, metrics


def act(state: AgentState, observations, key):
    """Deterministic Euler sample of the fine field from noise drawn with `key`.

    Args:
      observations: (N, D).
      key: PRNG key for the initial noise.
    Returns:
      (N, H, A) action chunks in [-1, 1].
    """
    return common.flow_policy(state.config, state.params["fine"], observations, key)
