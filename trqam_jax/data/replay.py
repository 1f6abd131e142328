"""On-device replay for offline-to-online training: a shared offline part and per-row ring
buffers of online transitions, as pure functions.

The offline dataset is read-only and the same for every row, so it is stored once (on each
device) and passed to `sample` next to a row's own `ReplayState`, which holds only that row's
online transitions: R rows cost one dataset plus R online buffers, not R copies of the dataset.

Sampling sees the logical sequence [offline rows 0..n-1, then the row's online transitions in
insertion order], exactly the buffer that holds the dataset followed by the online steps: a
uniform logical start k in [0, n + size - H] and the H logical rows after it. Online storage has
a fixed capacity (static shape); once full, `insert` overwrites the oldest online transition (the
offline part is never overwritten), and a logical online row j maps to the physical row
`(oldest + j) mod capacity`, so a chunk never runs across the write pointer into stale data.

Inside a jitted step, `insert` updates the buffer in place when the state is donated
(`jax.jit(..., donate_argnums=...)`) or carried through `lax.scan`; called eagerly it copies.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax.data.names import LABEL_FIELDS
from trqam_jax.data.options import FIELDS  # a buffer holds what the loader returns
from trqam_jax.data.sampler import chunk_rows, chunks_from, take_rows, uniform_starts


class ReplayState(NamedTuple):
    """One row's online ring buffer.

    data: dict of arrays with leading dimension `capacity` (`options.FIELDS`; rewards and masks
      are the row's own task's, shape (capacity,)).
    size: int32 scalar, number of stored online transitions (<= capacity).
    pointer: int32 scalar, the row the next `insert` writes.
    """

    data: dict
    size: jax.Array
    pointer: jax.Array


def init_replay(like: dict, capacity: int) -> ReplayState:
    """An empty online buffer of `capacity` rows for transitions shaped like `like`'s rows.

    Args:
      like: dict with the FIELDS, leading dimension n (e.g. the offline dataset; (n, T) labels
        give per-task columns, of which a row stores only its own).
      capacity: static number of online transitions kept (>= 1).
    Returns:
      ReplayState with size 0 and pointer 0.
    """
    missing = [k for k in FIELDS if k not in like]
    if missing:
        raise ValueError(f"replay buffer needs fields {FIELDS}; missing {missing}")
    if capacity < 1:
        raise ValueError(f"replay capacity must be >= 1 online transitions, got {capacity}")

    def alloc(name):
        shape = () if name in LABEL_FIELDS else np.shape(like[name])[1:]
        return jnp.zeros((capacity, *shape), jnp.asarray(like[name]).dtype)

    return ReplayState({k: alloc(k) for k in FIELDS}, jnp.int32(0), jnp.int32(0))


def capacity_of(state: ReplayState) -> int:
    """Static capacity (number of online rows) of a buffer."""
    return state.data["terminals"].shape[0]


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
    """Physical row of the oldest stored online transition (0 until the buffer wraps)."""
    return (state.pointer - state.size) % capacity_of(state)


def sample(
    key: jax.Array,
    state: ReplayState,
    batch_size: int,
    horizon: int,
    discount,
    offline: dict | None = None,
    task=None,
) -> dict:
    """Sample a chunk batch (same contract as `sampler.sample_chunks`) from offline + online.

    Args:
      key: PRNG key.
      state: the row's ReplayState.
      batch_size: static B.
      horizon: static H.
      discount: gamma (float or traced scalar).
      offline: the shared offline transitions (leading dimension n), or None for online only.
      task: the column of the offline part's (n, T) labels this row reads (may be traced).
    Returns:
      observations (B, D), actions (B, H, A), rewards (B,), masks (B,), valid (B, H),
      next_observations (B, D). Needs n + size >= H.
    """
    num_offline = 0 if offline is None else offline["terminals"].shape[0]
    capacity = capacity_of(state)
    starts = uniform_starts(key, batch_size, horizon, num_offline + state.size)
    # Logical rows never pass n + size - 1, so no chunk wraps around the logical end.
    logical = chunk_rows(starts, horizon, num_offline + capacity)
    oldest = oldest_row(state)

    def take_online(name, rows):
        return state.data[name][(oldest + rows - num_offline) % capacity]

    if offline is None:
        return chunks_from(take_online, logical, discount)
    take_offline = take_rows(offline, task)

    def take(name, rows):
        from_offline = take_offline(name, jnp.minimum(rows, num_offline - 1))
        from_online = take_online(name, rows)
        in_offline = (rows < num_offline).reshape(
            rows.shape + (1,) * (from_online.ndim - rows.ndim)
        )
        return jnp.where(in_offline, from_offline, from_online)

    return chunks_from(take, logical, discount)
