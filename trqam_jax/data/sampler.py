"""On-device action-chunk sampling: the batch contract of ALGORITHM.md section 4.

Everything here is a pure, jittable function of device arrays, so it can sit inside the compiled
training loop (`jax.jit` / `lax.scan` / `vmap` over seeds) with no host round-trip.

Data layout (flat transitions, OGBench meaning):
  observations (N, D), actions (N, A), rewards (N,), terminals (N,) (1.0 at the last transition of
  an episode), masks (N,) (0.0 where the transition is a true terminal / success state, else 1.0),
  next_observations (N, D).
  The tasks of a domain share everything but their labels: rewards and masks may be (N, T)
  tables, one column per task (`datasets.load_offline_data(..., tasks=...)`), and a sampler
  call then reads the column `task`.

Semantics follow the reference QAM `Dataset.sample_sequence` (ColinQiyangLi/qam, utils/datasets.py):
  - the start index is uniform over every start whose chunk fits in the data (chunks may run across
    an episode end; those positions are marked invalid, and the losses weight by `valid[:, -1]`);
  - `valid[:, 0] = 1`, `valid[:, j] = 1 - max(terminals[i : i + j])`;
  - `rewards = sum_j valid_j * gamma^j * r_{i+j}`, accumulated left to right;
  - `masks = min` of the masks over the valid positions;
  - `next_observations` = `next_observations[i + last valid j]`.
Differences from the reference, by design: only the chunk-level quantities the agents use are
returned (the reference returns per-position running values and takes `[..., -1]` in the agent),
`observations` is the first observation only, and `gamma^j` is built by repeated float32
multiplication so that a traced discount gives the same numbers as a static one.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from trqam_jax.data.names import LABEL_FIELDS

Batch = dict[str, jax.Array]


def chunk_rows(starts: jax.Array, horizon: int, num_rows: int) -> jax.Array:
    """Row indices of the chunks that begin at `starts`.

    Args:
      starts: (B,) int, physical start rows.
      horizon: static chunk length H.
      num_rows: static number of rows N of the storage arrays.
    Returns:
      (B, H) int32 rows `(start + j) mod N`; the modulo only matters for a ring buffer, a dataset
      never produces a start whose chunk passes row N - 1.
    """
    offsets = jnp.arange(horizon, dtype=jnp.int32)
    return (starts.astype(jnp.int32)[:, None] + offsets[None, :]) % num_rows


def take_rows(data: Batch, task=None) -> Callable[[str, jax.Array], jax.Array]:
    """`(field, rows) -> data[field][rows]`, reading task `task`'s column of (N, T) labels."""

    def take(name, rows):
        values = data[name]
        if name in LABEL_FIELDS and values.ndim == 2:
            return values[rows, 0 if task is None else task]
        return values[rows]

    return take


def chunks_at(data: Batch, starts: jax.Array, horizon: int, discount, task=None) -> Batch:
    """Chunk batch for given start rows (the deterministic part of `sample_chunks`).

    Args:
      data: flat transition arrays (see module docstring), leading dimension N.
      starts: (B,) int start rows.
      horizon: static chunk length H >= 1.
      discount: float scalar gamma (Python float or traced).
      task: int scalar (may be traced) column of (N, T) labels; None = column 0.
    Returns:
      observations (B, D), actions (B, H, A), rewards (B,), masks (B,), valid (B, H),
      next_observations (B, D); all float32 except as stored.
    """
    rows = chunk_rows(starts, horizon, data["terminals"].shape[0])
    return chunks_from(take_rows(data, task), rows, discount)


def chunks_from(take, rows: jax.Array, discount) -> Batch:
    """The chunk batch of `chunks_at` from any storage that `take(field, index) -> values` reads.

    Args:
      take: reads a field at an int index array: a dataset (`take_rows`), or a replay buffer's
        map of logical rows onto its shared offline part and its own online part.
      rows: (B, H) int the rows of each chunk, in order.
      discount: float scalar gamma.
    """
    horizon = rows.shape[1]
    rewards = take("rewards", rows).astype(jnp.float32)
    masks = take("masks", rows).astype(jnp.float32)
    terminals = take("terminals", rows).astype(jnp.float32)
    discount = jnp.asarray(discount, jnp.float32)

    # valid[j] = 1 until an episode has ended at some position < j (terminals are 0/1 floats).
    ended_before = jnp.cumsum(terminals, axis=1)[:, :-1] > 0
    valid = jnp.concatenate(
        [jnp.ones_like(terminals[:, :1]), 1.0 - ended_before.astype(jnp.float32)], axis=1
    )

    # Left-to-right accumulation (a static, unrolled loop over H) keeps the float32 rounding
    # identical to the reference's running sum; a tree reduction would differ in the last ulp.
    # `valid * (r * power)` multiplies by the 0/1 weight last, so that product is exact and a
    # compiler contracting the add into an FMA cannot change the rounding either.
    chunk_return = jnp.zeros_like(rewards[:, 0])
    power = jnp.ones((), jnp.float32)
    for j in range(horizon):
        chunk_return = chunk_return + valid[:, j] * (rewards[:, j] * power)
        power = power * discount

    chunk_mask = jnp.min(jnp.where(valid > 0, masks, 1.0), axis=1)
    # valid is 1...1 0...0, so the last valid offset is its sum minus one.
    last = jnp.sum(valid, axis=1).astype(jnp.int32) - 1
    return {
        "observations": take("observations", rows[:, 0]),
        "actions": take("actions", rows),
        "rewards": chunk_return,
        "masks": chunk_mask,
        "valid": valid,
        "next_observations": take(
            "next_observations", jnp.take_along_axis(rows, last[:, None], 1)[:, 0]
        ),
    }


def uniform_starts(key: jax.Array, batch_size: int, horizon: int, size) -> jax.Array:
    """Uniform start offsets in [0, size - horizon] (at least [0, 0] when size < horizon).

    Args:
      key: PRNG key.
      batch_size: static B.
      horizon: static H.
      size: int scalar (static or traced) number of usable rows.
    Returns:
      (B,) int32 offsets.
    """
    num_starts = jnp.maximum(jnp.asarray(size, jnp.int32) - horizon + 1, 1)
    return jax.random.randint(key, (batch_size,), 0, num_starts, dtype=jnp.int32)


def sample_chunks(
    key: jax.Array, data: Batch, batch_size: int, horizon: int, discount, size=None, task=None
) -> Batch:
    """Sample a batch of action chunks from flat transitions, on the device.

    Args:
      key: PRNG key.
      data: dict of device arrays `observations` (N, D), `actions` (N, A), `rewards` (N,),
        `terminals` (N,), `masks` (N,), `next_observations` (N, D).
      batch_size: static B.
      horizon: static chunk length H (1 = no chunking).
      discount: gamma, Python float or traced float scalar.
      size: optional int scalar (may be traced) number of valid leading rows; default N. Rows at
        or beyond `size` are never read. Requires size >= H.
      task: optional int scalar (may be traced): the column of (N, T) rewards and masks.
    Returns:
      dict with `observations` (B, D), `actions` (B, H, A), `rewards` (B,) discounted chunk return
      stopping at the episode end, `masks` (B,) 0 if the chunk hit a true terminal, `valid` (B, H),
      `next_observations` (B, D) the observation after the last valid step.
    """
    size = data["terminals"].shape[0] if size is None else size
    starts = uniform_starts(key, batch_size, horizon, size)
    return chunks_at(data, starts, horizon, discount, task)
