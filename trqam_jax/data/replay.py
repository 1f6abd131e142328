"""On-device ring replay buffer for offline-to-online training, as pure functions.

The state is a pytree (`ReplayState`), so `insert` and `sample` run inside `jax.jit`, `lax.scan`
and `vmap` over seeds. Storage has a fixed capacity (static shape); `size` and `pointer` are int32
scalars on the device.

Layout: rows [0, n) hold the offline data after `init_replay`; online transitions are written at
`pointer`, which wraps to 0 once the capacity is reached, overwriting the oldest rows. Sampling maps
a uniform *logical* start k in [0, size - H] (logical 0 = the oldest row) to the physical row
`(oldest + k) mod capacity`, so a chunk covers H consecutive transitions in insertion order and
never runs across the write pointer from the newest row into stale data.

Inside a jitted step, `insert` updates the buffer in place when the state is donated
(`jax.jit(..., donate_argnums=...)`) or carried through `lax.scan`; called eagerly it copies.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax.data.sampler import chunks_at, uniform_starts

FIELDS = ("observations", "actions", "rewards", "terminals", "masks", "next_observations")


class ReplayState(NamedTuple):
    """Ring buffer state.

    data: dict of arrays with leading dimension `capacity` (the FIELDS above).
    size: int32 scalar, number of filled rows (<= capacity).
    pointer: int32 scalar, the row the next `insert` writes.
    """

    data: dict
    size: jax.Array
    pointer: jax.Array


def init_replay(offline: dict, capacity: int) -> ReplayState:
    """Allocate a buffer of `capacity` rows holding `offline` in rows [0, n).

    Args:
      offline: dict of host or device arrays with the FIELDS, leading dimension n.
      capacity: static number of rows; must be >= n (dataset size + online steps to keep all).
    Returns:
      ReplayState with size = n and pointer = n mod capacity.
    """
    missing = [k for k in FIELDS if k not in offline]
    if missing:
        raise ValueError(f"replay buffer needs fields {FIELDS}; missing {missing}")
    n = int(np.shape(offline["rewards"])[0])
    if capacity < n:
        raise ValueError(
            f"replay capacity {capacity} is smaller than the offline data ({n} rows); use at least "
            "dataset size + online steps"
        )

    def alloc(x):
        x = jnp.asarray(x)
        buf = jnp.zeros((capacity, *x.shape[1:]), x.dtype)
        return buf.at[:n].set(x)

    data = {k: alloc(offline[k]) for k in FIELDS}
    return ReplayState(data, jnp.int32(n), jnp.int32(n % capacity))


def capacity_of(state: ReplayState) -> int:
    """Static capacity (number of rows) of a buffer."""
    return state.data["rewards"].shape[0]


def insert(state: ReplayState, transition: dict) -> ReplayState:
    """Write one single-step transition at the pointer (jittable).

    Args:
      state: ReplayState.
      transition: dict with the FIELDS as unbatched values: observations (D,), actions (A,),
        rewards (), terminals () (1.0 when the episode ended: terminated or truncated),
        masks () (0.0 only when terminated, i.e. success), next_observations (D,).
    Returns:
      the new ReplayState.
    """
    for k in FIELDS:  # a value of another shape would be broadcast into the row silently
        chex.assert_shape(
            transition[k], state.data[k].shape[1:], custom_message=f"replay.insert: {k}"
        )
    capacity = capacity_of(state)
    data = {
        k: state.data[k].at[state.pointer].set(jnp.asarray(transition[k], state.data[k].dtype))
        for k in FIELDS
    }
    pointer = (state.pointer + 1) % capacity
    size = jnp.minimum(state.size + 1, capacity)
    return ReplayState(data, size.astype(jnp.int32), pointer.astype(jnp.int32))


def oldest_row(state: ReplayState) -> jax.Array:
    """Physical row of the oldest stored transition (0 until the buffer wraps)."""
    capacity = capacity_of(state)
    return (state.pointer - state.size) % capacity


def sample(key: jax.Array, state: ReplayState, batch_size: int, horizon: int, discount) -> dict:
    """Sample a chunk batch (same contract as `sampler.sample_chunks`), wrap-around aware.

    Args:
      key: PRNG key.
      state: ReplayState with size >= horizon.
      batch_size: static B.
      horizon: static H.
      discount: gamma (float or traced scalar).
    Returns:
      observations (B, D), actions (B, H, A), rewards (B,), masks (B,), valid (B, H),
      next_observations (B, D).
    """
    logical = uniform_starts(key, batch_size, horizon, state.size)
    starts = (oldest_row(state) + logical) % capacity_of(state)
    return chunks_at(state.data, starts, horizon, discount)
