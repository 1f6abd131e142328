"""What every agent shares: the static config core, its one conversion, the optimizer, batch
checks, the flow policy's sampler and the swept values of a state.

Agent configs arrive as ml_collections dicts (configs/<agent>.py, the one place defaults live) and
become frozen, hashable dataclasses here by one rule: every dataclass field takes the config
entry of the same name. Shapes come from the example inputs, never from the config.
"""

import dataclasses
import typing
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from trqam_jax import networks
from trqam_jax.flow import euler_sample

TARGET_PREFIX = "target_"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SharedConfig:
    """Static fields every agent has: shapes, networks, optimizer, TD learning (hashable).

    No defaults: they live in configs/ (one owner); `from_config` fills every field.
    """

    obs_dim: int
    horizon: int
    action_dim: int
    actor_hidden_dims: tuple[int, ...]
    actor_layer_norm: bool
    critic_hidden_dims: tuple[int, ...]
    critic_layer_norm: bool
    num_qs: int
    flow_steps: int
    lr: float
    grad_clip: float  # <= 0: plain Adam
    discount: float
    rho: float
    tau: float
    flow_unroll: int
    compute_dtype: str  # matmul dtype; parameters and losses stay float32

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


def _convert(value, annotation):
    """A config value as the field's type: sequences become tuples, numbers their type."""
    if typing.get_origin(annotation) is tuple:
        return tuple(int(v) for v in value)
    if annotation in (int, float, bool, str):
        return annotation(value)
    return value


def from_config(cls, config, example_obs, example_actions, **fields):
    """The static config `cls` (a `SharedConfig` subclass) of an agent.

    Args:
      config: the ml_collections agent config; every field of `cls` not given in `fields` or
        derived from the examples is read from the entry of the same name.
      example_obs: (D,) one observation; example_actions: (H, A) one action chunk.
      fields: values of fields that are not plain config entries (e.g. an agent's kind).
    Raises:
      ValueError when `config.horizon` disagrees with the example chunk or an entry is missing.
    """
    chex.assert_rank(example_obs, 1)
    chex.assert_rank(example_actions, 2)
    horizon, action_dim = example_actions.shape
    if config.get("horizon", horizon) != horizon:
        raise ValueError(
            f"config.horizon={config.horizon} but example_actions has {horizon} steps; "
            "sample chunks of config.horizon actions or change config.horizon"
        )
    fields = dict(fields, obs_dim=example_obs.shape[0], horizon=horizon, action_dim=action_dim)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in fields:
            continue
        if field.name not in config:
            raise ValueError(
                f"agent config {config.get('agent_name', '?')!r} has no field {field.name!r}, "
                f"which {cls.__name__} needs; build it with its configs/<agent>.py"
            )
        fields[field.name] = _convert(config[field.name], hints[field.name])
    fields["compute_dtype"] = networks.check_compute_dtype(fields["compute_dtype"])
    return cls(**fields)


def init_keys(key) -> jax.Array:
    """(critic, base field, actor) keys of a fresh agent.

    Every agent draws its base field from the same position, so a BC state and a fine-tuning
    state made from one key start from the same base.
    """
    return jax.random.split(key, 3)


def optimizer(cfg: SharedConfig) -> optax.GradientTransformation:
    """Adam after global-norm clipping at `grad_clip`; `grad_clip <= 0` means plain Adam.

    Every agent trains all its parameter sets with this single optimizer (the FQL references
    use plain Adam).
    """
    if cfg.grad_clip <= 0:
        return optax.adam(cfg.lr)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(cfg.lr))


def trainable(params: dict[str, Any]) -> dict[str, Any]:
    """The parameter sets the optimizer updates: all but the EMA targets (`target_*`)."""
    return {k: v for k, v in params.items() if not k.startswith(TARGET_PREFIX)}


def gradient_step(state, cfg: SharedConfig, loss_fn) -> tuple[dict, Any, dict]:
    """One optimizer step on all trainable parameters, then the EMA targets.

    Args:
      state: an agent state (`params`, `opt_state`).
      loss_fn: trainable params -> (total loss, metrics dict).
    Returns:
      (new params, new opt_state, metrics + grad_norm). Every `target_X` blends X from before
      this step's update at rate `cfg.tau` (as the reference does).
    """
    train_params = trainable(state.params)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_params)
    updates, opt_state = optimizer(cfg).update(grads, state.opt_state, train_params)
    targets = {
        name: optax.incremental_update(
            state.params[name.removeprefix(TARGET_PREFIX)], state.params[name], cfg.tau
        )
        for name in state.params
        if name.startswith(TARGET_PREFIX)
    }
    params = dict(state.params, **optax.apply_updates(train_params, updates), **targets)
    return params, opt_state, dict(metrics, grad_norm=optax.global_norm(grads))


def check_batch(batch, cfg: SharedConfig) -> None:
    """Assert the batch layout against the static shapes of `cfg`."""
    batch_size = batch["observations"].shape[0]
    chex.assert_shape(batch["observations"], (batch_size, cfg.obs_dim))
    chex.assert_shape(batch["actions"], (batch_size, cfg.horizon, cfg.action_dim))
    chex.assert_shape(batch["valid"], (batch_size, cfg.horizon))
    chex.assert_shape([batch["rewards"], batch["masks"]], (batch_size,))
    chex.assert_shape(batch["next_observations"], (batch_size, cfg.obs_dim))


def flat_actions(batch, cfg: SharedConfig):
    """(chunks (B, d), BC weights (B,)): a chunk counts for BC only if all H actions are valid."""
    obs = batch["observations"]
    return batch["actions"].reshape(obs.shape[0], cfg.chunk_dim), batch["valid"][:, -1]


def field(module, params, obs):
    """Close a vector field over its parameters and observations: (x, t) -> v."""
    return lambda x, t: networks.apply_vector_field(module, params, obs, x, t)


def sample_field(cfg: SharedConfig, field_params, obs, noise):
    """Clipped deterministic Euler sample of a field of the actor architecture.

    Args: obs (N, D), noise (N, d). Returns (N, d) actions in [-1, 1].
    """
    return euler_sample(
        field(cfg.field_module(), field_params, obs), noise, cfg.flow_steps, cfg.flow_unroll
    )


def flow_policy(cfg: SharedConfig, field_params, observations, key):
    """The deployed flow policy: noise ~ N(0, I) from `key`, then `sample_field`.

    Args: observations (N, D). Returns (N, H, A) action chunks in [-1, 1].
    """
    num = observations.shape[0]
    noise = jax.random.normal(key, (num, cfg.chunk_dim))
    return sample_field(cfg, field_params, observations, noise).reshape(
        num, cfg.horizon, cfg.action_dim
    )


def set_hparams(states, values: dict[str, Any]):
    """`states` (one agent's or stacked rows') with some swept values replaced.

    Args:
      states: any agent state with an `hparams` dict of traced scalars (leading row axis R when
        stacked).
      values: name -> value broadcastable to the existing entry (R,) for stacked states.
    Raises:
      ValueError naming the agent's sweepable values when a name is not one of them.
    """
    unknown = sorted(set(values) - set(states.hparams))
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} is not a sweepable value of this agent; its values are "
            f"{', '.join(sorted(states.hparams))}"
        )
    hparams = dict(states.hparams)
    for name, value in values.items():
        hparams[name] = jnp.broadcast_to(jnp.asarray(value, jnp.float32), hparams[name].shape)
    return states.replace(hparams=hparams)
