"""Networks: MLP, flow vector field and critic ensemble as pure apply functions.

Parameters are plain pytrees (nested dicts of arrays) produced by flax.linen modules; every
function here takes them explicitly. The critic ensemble has independent members stacked on a
leading axis and evaluated with `jax.vmap` over that axis.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Xavier-uniform, as in the reference agents.
_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

# Dtypes the matmuls may run in (`compute_dtype`); parameters, outputs and losses stay float32.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_compute_dtype(name: str) -> str:
    """`name` if it is a key of `COMPUTE_DTYPES`, else a ValueError naming the choices."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype={name!r} is not supported; use one of {sorted(COMPUTE_DTYPES)}"
        )
    return name


class MLP(nn.Module):
    """Dense -> GELU (-> LayerNorm) for every hidden layer, then a linear output layer.

    `dtype` names the dtype of the matmuls and activations (a key of `COMPUTE_DTYPES`); the
    parameters are float32 and the output is cast back to float32, so losses, gradients and
    the optimizer stay in full precision whatever the compute dtype.
    """

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        dtype = COMPUTE_DTYPES[self.dtype]
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=_kernel_init, dtype=dtype)(x)
            x = nn.gelu(x)
            if self.layer_norm:
                x = nn.LayerNorm(dtype=dtype)(x)
        return nn.Dense(self.out_dim, kernel_init=_kernel_init, dtype=dtype)(x).astype(jnp.float32)


def vector_field_module(
    hidden_dims: Sequence[int], action_dim: int, layer_norm: bool, dtype: str = "float32"
) -> MLP:
    """The flow vector field v(s, x, t) maps concat(s, x, t) to a velocity of dim `action_dim`."""
    return MLP(tuple(hidden_dims), action_dim, layer_norm, dtype)


def init_vector_field(key, module: MLP, obs_dim: int, action_dim: int):
    """Parameters of v(s, x, t) for observations of dim `obs_dim` and flat actions `action_dim`."""
    return module.init(key, jnp.zeros((1, obs_dim + action_dim + 1)))


def apply_vector_field(module: MLP, params, obs, x, t):
    """v(s, x, t).

    Args:
      obs: (..., D) observations.
      x: (..., d) flat noisy actions.
      t: (..., 1) flow time in [0, 1], entered raw.
    Returns:
      (..., d) velocities.
    """
    return module.apply(params, jnp.concatenate([obs, x, t], axis=-1))


def critic_module(
    hidden_dims: Sequence[int], layer_norm: bool = True, dtype: str = "float32"
) -> MLP:
    """One critic member: Q(s, A) = MLP(concat(s, A)) -> scalar."""
    return MLP(tuple(hidden_dims), 1, layer_norm, dtype)


def init_critic_ensemble(key, module: MLP, num_members: int, obs_dim: int, action_dim: int):
    """Independent parameters for `num_members` critics, stacked on a leading member axis."""
    keys = jax.random.split(key, num_members)
    example = jnp.zeros((1, obs_dim + action_dim))
    return jax.vmap(lambda k: module.init(k, example))(keys)


def apply_critic_ensemble(module: MLP, params, obs, actions):
    """Q_e(s, A) for every member.

    Args:
      params: ensemble parameters with a leading member axis E.
      obs: (B, D) observations.
      actions: (B, d) flat action chunks.
    Returns:
      (E, B) Q-values.
    """
    inputs = jnp.concatenate([obs, actions], axis=-1)
    q = jax.vmap(lambda p: module.apply(p, inputs))(params)
    return q[..., 0]
