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

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from trqam_jax import networks
from trqam_jax.adjoint import adjoint_matching_loss, lean_adjoint, terminal_adjoint
from trqam_jax.critic import critic_loss, td_target
from trqam_jax.flow import euler_sample, flow_matching_loss, flow_times
from trqam_jax.sde import final_step, noise_scale_sq, sde_rollout
from trqam_jax.trust_region import DualConfig, dual_update, effective_lambda, ema_update, path_kl

AGENT_KINDS = ("trqam", "qam")
TRAINABLE = ("critic", "base", "fine")
TARGET_PREFIX = "target_"


@dataclasses.dataclass(frozen=True)
class SharedConfig:
    """Static fields every agent has: shapes, networks, optimizer, TD learning (hashable)."""

    obs_dim: int
    horizon: int
    action_dim: int
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    actor_layer_norm: bool = False
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    critic_layer_norm: bool = True
    num_qs: int = 10
    flow_steps: int = 10
    lr: float = 3e-4
    grad_clip: float = 1.0
    discount: float = 0.995
    rho: float = 0.5
    tau: float = 0.005
    flow_unroll: int = 1
    compute_dtype: str = "float32"  # matmul dtype; parameters and losses stay float32

    @property
    def chunk_dim(self) -> int:
        """d = H * |a|, the dimension of a flattened action chunk."""
        return self.horizon * self.action_dim

    def field_module(self) -> networks.MLP:
        """The actor architecture's vector field v(s, x, t) (base, fine, FQL's BC flow)."""
        return networks.vector_field_module(
            self.actor_hidden_dims, self.chunk_dim, self.actor_layer_norm, self.compute_dtype
        )

    def critic_module(self) -> networks.MLP:
        """One member of the critic ensemble."""
        return networks.critic_module(
            self.critic_hidden_dims, self.critic_layer_norm, self.compute_dtype
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentConfig(SharedConfig):
    """Static agent configuration (hashable: it is part of the state's tree structure)."""

    kind: str
    dual: DualConfig = DualConfig()
    bc_only: bool = False


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


def shared_fields(config, obs_dim: int, horizon: int, action_dim: int) -> dict:
    """The `SharedConfig` fields from an ml_collections agent config, as keyword arguments.

    Checks that `config.horizon` (when set) matches the example chunk's length.
    """
    if config.get("horizon", horizon) != horizon:
        raise ValueError(
            f"config.horizon={config.horizon} but example_actions has {horizon} steps; "
            "sample chunks of config.horizon actions or change config.horizon"
        )
    return dict(
        obs_dim=obs_dim,
        horizon=horizon,
        action_dim=action_dim,
        actor_hidden_dims=tuple(config.actor_hidden_dims),
        actor_layer_norm=bool(config.actor_layer_norm),
        critic_hidden_dims=tuple(config.critic_hidden_dims),
        critic_layer_norm=bool(config.critic_layer_norm),
        num_qs=int(config.num_qs),
        flow_steps=int(config.flow_steps),
        lr=float(config.lr),
        grad_clip=float(config.grad_clip),
        discount=float(config.discount),
        rho=float(config.rho),
        tau=float(config.tau),
        flow_unroll=int(config.flow_unroll),
        compute_dtype=networks.check_compute_dtype(config.get("compute_dtype", "float32")),
    )


def agent_config(config, kind: str, obs_dim: int, horizon: int, action_dim: int) -> AgentConfig:
    """Static `AgentConfig` from an ml_collections agent config (see configs/trqam.py)."""
    if kind not in AGENT_KINDS:
        raise ValueError(f"unknown adjoint-matching agent {kind!r}; expected one of {AGENT_KINDS}")
    return AgentConfig(
        kind=kind,
        **shared_fields(config, obs_dim, horizon, action_dim),
        dual=DualConfig(
            eta=float(config.eta_lambda),
            ema_coef=float(config.kl_ema_coef),
            clip_coef=float(config.kl_clip_coef),
            lam_min=float(config.lambda_min),
            lam_max=float(config.lambda_max),
            lam_scale=float(config.lam_scale),
        ),
        bc_only=bool(config.bc_only),
    )


def optimizer(lr: float, grad_clip: float) -> optax.GradientTransformation:
    """Adam after global-norm clipping at `grad_clip`; `grad_clip <= 0` means plain Adam.

    Every agent builds its single optimizer here (the FQL references use plain Adam).
    """
    if grad_clip <= 0:
        return optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(lr))


def make_optimizer(cfg: AgentConfig) -> optax.GradientTransformation:
    """One Adam over critic + base + fine after global-norm clipping."""
    return optimizer(cfg.lr, cfg.grad_clip)


def trainable(params: dict[str, Any]) -> dict[str, Any]:
    """The parameter sets the optimizer updates: all but the EMA targets.

    For TRQAM / QAM these are `TRAINABLE`; an `Extension` adds its own sets to the same dict.
    """
    return {k: v for k, v in params.items() if not k.startswith(TARGET_PREFIX)}


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


def _modules(cfg: AgentConfig):
    return cfg.field_module(), cfg.critic_module()


def _field(module, params, obs):
    """Close a vector field over its parameters and observations: (x, t) -> v."""
    return lambda x, t: networks.apply_vector_field(module, params, obs, x, t)


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
    chex.assert_rank(example_obs, 1)
    chex.assert_rank(example_actions, 2)
    horizon, action_dim = example_actions.shape
    cfg = agent_config(config, kind, example_obs.shape[0], horizon, action_dim)
    field, critic = _modules(cfg)
    critic_key, base_key, fine_key = jax.random.split(key, 3)
    critic_params = networks.init_critic_ensemble(
        critic_key, critic, cfg.num_qs, cfg.obs_dim, cfg.chunk_dim
    )
    base_params = networks.init_vector_field(base_key, field, cfg.obs_dim, cfg.chunk_dim)
    fine_params = networks.init_vector_field(fine_key, field, cfg.obs_dim, cfg.chunk_dim)
    params = {
        "critic": critic_params,
        "target_critic": critic_params,
        "base": base_params,
        "target_base": base_params,
        "fine": fine_params,
    }
    hparams = {"kl_budget": config.kl_budget} if kind == "trqam" else {"inv_temp": config.inv_temp}
    return AgentState(
        params=params,
        opt_state=make_optimizer(cfg).init(trainable(params)),
        lam=jnp.asarray(config.lam_init, jnp.float32),
        kl_ema=jnp.zeros((), jnp.float32),
        hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()},
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def with_pretrained_base(state: AgentState, base_params) -> AgentState:
    """Start fine-tuning from a BC-pretrained field: base, target_base and fine all take it.

    The critic keeps its fresh initialisation and the optimizer restarts, as in the paper's
    pipeline (BC pretraining, then fine-tuning).
    """
    params = dict(state.params, base=base_params, target_base=base_params, fine=base_params)
    opt_state = make_optimizer(state.config).init(trainable(params))
    return state.replace(params=params, opt_state=opt_state)


def check_batch(batch, cfg):
    """Assert the batch layout; `cfg` is any static config with obs_dim, horizon, action_dim."""
    batch_size = batch["observations"].shape[0]
    chex.assert_shape(batch["observations"], (batch_size, cfg.obs_dim))
    chex.assert_shape(batch["actions"], (batch_size, cfg.horizon, cfg.action_dim))
    chex.assert_shape(batch["valid"], (batch_size, cfg.horizon))
    chex.assert_shape([batch["rewards"], batch["masks"]], (batch_size,))
    chex.assert_shape(batch["next_observations"], (batch_size, cfg.obs_dim))


def _bc_update(state: AgentState, batch, key):
    """L_BC alone on the base field; targets and dual untouched."""
    cfg = state.config
    field, _ = _modules(cfg)
    obs = batch["observations"]
    actions = batch["actions"].reshape(obs.shape[0], cfg.chunk_dim)
    weights = batch["valid"][:, -1]
    tx = make_optimizer(cfg)
    train_params = trainable(state.params)

    def loss_fn(train):
        return flow_matching_loss(_field(field, train["base"], obs), actions, weights, key)

    bc_loss, grads = jax.value_and_grad(loss_fn)(train_params)
    updates, opt_state = tx.update(grads, state.opt_state, train_params)
    train_params = optax.apply_updates(train_params, updates)
    state = state.replace(
        params=dict(state.params, **train_params), opt_state=opt_state, step=state.step + 1
    )
    return state, {"bc_loss": bc_loss, "grad_norm": optax.global_norm(grads)}


def _temperature(state: AgentState):
    """(lambda_eff, adjoint scale): TRQAM's adapted lambda, or QAM's fixed beta = inv_temp."""
    if state.config.kind == "trqam":
        return effective_lambda(state.lam, state.config.dual), jnp.ones(())
    return jnp.ones(()), state.hparams["inv_temp"]


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
    check_batch(batch, cfg)
    if cfg.bc_only:
        return _bc_update(state, batch, key)

    field, critic = _modules(cfg)
    params = state.params
    k_steps, h = cfg.flow_steps, 1.0 / cfg.flow_steps
    obs, next_obs = batch["observations"], batch["next_observations"]
    batch_size = obs.shape[0]
    actions = batch["actions"].reshape(batch_size, cfg.chunk_dim)
    weights = batch["valid"][:, -1]
    bc_key, next_key, x0_key, sde_key = jax.random.split(key, 4)

    # Critic target: the deployed (deterministic) policy at s', scored by the target ensemble.
    next_noise = jax.random.normal(next_key, (batch_size, cfg.chunk_dim))
    next_actions = euler_sample(
        _field(field, params["fine"], next_obs), next_noise, k_steps, cfg.flow_unroll
    )
    if extension is not None:
        # A key of its own, so that TRQAM / QAM draw exactly the same numbers as without hooks.
        ext_next_key, ext_loss_key = jax.random.split(jax.random.fold_in(key, 1))
        next_actions = extension.policy(params, state.hparams, next_obs, next_actions, ext_next_key)
    next_q = networks.apply_critic_ensemble(critic, params["target_critic"], next_obs, next_actions)
    targets = td_target(
        batch["rewards"], batch["masks"], next_q, cfg.discount, cfg.horizon, cfg.rho
    )

    # Memoryless SDE rollout of the fine field and lean adjoint through the EMA reference.
    lambda_eff, adj_scale = _temperature(state)
    ref = _field(field, params["target_base"], obs)
    x0 = jax.random.normal(x0_key, (batch_size, cfg.chunk_dim))
    xs = sde_rollout(_field(field, params["fine"], obs), x0, sde_key, k_steps, cfg.flow_unroll)
    times = flow_times(k_steps)
    v_ref = _stacked_field(field, params["target_base"], obs, xs, times)
    x_final = final_step(xs[-1], v_ref[-1], k_steps)
    q_fn = lambda a: networks.apply_critic_ensemble(critic, params["target_critic"], obs, a)
    adj_final = adj_scale * terminal_adjoint(q_fn, x_final)
    adjs = lean_adjoint(ref, xs, adj_final, k_steps, cfg.flow_unroll)
    g_sq = noise_scale_sq(times, h)
    sigma = jnp.sqrt(g_sq / lambda_eff)

    def loss_fn(train):
        q = networks.apply_critic_ensemble(critic, train["critic"], obs, actions)
        q_loss = critic_loss(q, targets, weights)
        bc_loss = flow_matching_loss(_field(field, train["base"], obs), actions, weights, bc_key)
        dv = _stacked_field(field, train["fine"], obs, xs, times) - v_ref
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

    tx = make_optimizer(cfg)
    train_params = trainable(params)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_params)
    updates, opt_state = tx.update(grads, state.opt_state, train_params)
    new_trainable = optax.apply_updates(train_params, updates)

    # Targets blend the online parameters from before this step's update (as the reference does).
    new_params = dict(
        params,
        **new_trainable,
        target_critic=optax.incremental_update(params["critic"], params["target_critic"], cfg.tau),
        target_base=optax.incremental_update(params["base"], params["target_base"], cfg.tau),
    )

    if cfg.kind == "trqam":
        budget = state.hparams["kl_budget"]
        lam, kl_ema, clipped = dual_update(state.lam, state.kl_ema, metrics["kl"], budget, cfg.dual)
        metrics.update(kl_budget=budget, kl_clipped=clipped.astype(jnp.float32))
    else:
        # QAM has no dual; the KL EMA is kept as a diagnostic of how far the policy drifts.
        lam, kl_ema = state.lam, ema_update(state.kl_ema, metrics["kl"], cfg.dual.ema_coef)
    new_state = state.replace(
        params=new_params, opt_state=opt_state, lam=lam, kl_ema=kl_ema, step=state.step + 1
    )
    new_lambda_eff, _ = _temperature(new_state)
    metrics.update(
        kl_ema=kl_ema,
        grad_norm=optax.global_norm(grads),
        # `lambda` is the temperature in sigma: lambda_eff for TRQAM, 1 / beta for QAM.
        **{"lambda": new_lambda_eff / adj_scale},
    )
    return new_state, metrics


def act(state: AgentState, observations, key):
    """Deterministic Euler sample of the deployed field (fine; base while BC pretraining).

    Args:
      observations: (N, D).
      key: PRNG key for the initial noise.
    Returns:
      (N, H, A) action chunks in [-1, 1].
    """
    cfg = state.config
    params = state.params["base" if cfg.bc_only else "fine"]
    noise = jax.random.normal(key, (observations.shape[0], cfg.chunk_dim))
    actions = sample_field(cfg, params, observations, noise)
    return actions.reshape(observations.shape[0], cfg.horizon, cfg.action_dim)


def sample_field(cfg, field_params, obs, noise):
    """Clipped deterministic Euler sample (§3) of a vector field of the actor architecture.

    Shared by every agent's flow policy; `cfg` is a `SharedConfig` (`AgentConfig`, FQL's config).
    Args: obs (N, D), noise (N, d). Returns (N, d) actions in [-1, 1].
    """
    field = cfg.field_module()
    return euler_sample(_field(field, field_params, obs), noise, cfg.flow_steps, cfg.flow_unroll)
