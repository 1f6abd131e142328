"""BC pretraining of the flow policy: flow matching of the base field alone.

The paper's pipeline pretrains one base field per seed by BC, then every agent starts from it
(`<agent>.with_pretrained_base`). The state holds only what BC trains: the base field and its
optimizer. Its config is the fine-tuning agent's (the shared fields of `common.SharedConfig`),
so the BC stage of a run trains with that agent's network, learning rate and clipping.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from trqam_jax import networks
from trqam_jax.agents import common
from trqam_jax.flow import flow_matching_loss

__all__ = ["init", "update", "act"]


@flax.struct.dataclass
class BCState:
    """One seed's BC state (a pytree; `config` is static)."""

    params: dict[str, Any]  # base
    opt_state: Any
    hparams: dict[str, jax.Array]  # none: BC sweeps nothing
    step: jax.Array
    config: common.SharedConfig = flax.struct.field(pytree_node=False)


def init(key, config, example_obs, example_actions) -> BCState:
    """Fresh BC state; its base equals the base of any agent initialised with the same key.

    Args:
      key: PRNG key.
      config: any agent's ml_collections config (its shared fields are used).
      example_obs: (D,) one observation.
      example_actions: (H, A) one action chunk.
    """
    cfg = common.from_config(common.SharedConfig, config, example_obs, example_actions)
    _, base_key, _ = common.init_keys(key)
    params = {
        "base": networks.init_vector_field(base_key, cfg.field_module(), cfg.obs_dim, cfg.chunk_dim)
    }
    return BCState(
        params=params,
        opt_state=common.optimizer(cfg).init(params),
        hparams={},
        step=jnp.zeros((), jnp.int32),
        config=cfg,
    )


def update(state: BCState, batch, key):
    """One step of L_BC on the base field (pure; jit / vmap over rows).

    Args:
      batch: the chunk batch layout of `common.check_batch`.
      key: PRNG key of the flow-matching noise and times.
    Returns:
      (new state, {"bc_loss", "grad_norm"}).
    """
    cfg = state.config
    common.check_batch(batch, cfg)
    obs = batch["observations"]
    actions, weights = common.flat_actions(batch, cfg)
    module = cfg.field_module()

    def loss_fn(train):
        loss = flow_matching_loss(common.field(module, train["base"], obs), actions, weights, key)
        return loss, {"bc_loss": loss}

    params, opt_state, metrics = common.gradient_step(state, cfg, loss_fn)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics


def act(state: BCState, observations, key):
    """The BC policy: deterministic Euler sample of the base field from noise drawn with `key`.

    Args: observations (N, D). Returns (N, H, A) action chunks in [-1, 1].
    """
    return common.flow_policy(state.config, state.params["base"], observations, key)
