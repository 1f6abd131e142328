"""The compiled training loop: vmap over rows (budgets x seeds) o lax.scan over steps o update.

Agents know nothing of seeds or devices; this module stacks per-row agent states on a leading
axis, shards that axis over the local devices, and runs `steps_per_call` updates per call with the
batches sampled on the device. The host only logs, evaluates and checkpoints between calls.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trqam_jax.data.sampler import sample_chunks

ROW_AXIS = "rows"
# Metrics whose last value in a call is the meaningful one (dual state), not the call's mean.
LAST_VALUE_METRICS = ("kl_ema", "lambda")


def row_budgets(kl_budgets: Sequence[float], default_budget: float, seeds: int) -> np.ndarray:
    """The kl_budget of every row: budgets x seeds, budget-major; (R,) with R = len * seeds."""
    budgets = list(kl_budgets) or [default_budget]
    return np.repeat(np.asarray(budgets, np.float32), seeds)


def row_seeds(num_rows: int, seeds: int) -> np.ndarray:
    """Seed index of every row: rows of different budgets share seeds 0..seeds-1."""
    return np.arange(num_rows) % seeds


def part_rows(num_rows: int, part: int, parts: int) -> np.ndarray:
    """Global ids of the rows one launcher runs when a sweep is split into `parts` equal blocks.

    Part p runs rows [p * R / parts, (p + 1) * R / parts). Every quantity of a row (init key,
    training keys, evaluation and reset seeds) depends on its global id and seed only, so the
    parts of a split sweep together equal the sweep run in one piece.
    """
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(
            f"rows_part={part} of rows_parts={parts}: need 0 <= rows_part < rows_parts"
        )
    if num_rows % parts:
        raise ValueError(
            f"{num_rows} rows (kl_budgets x seeds) do not split into {parts} equal parts; "
            f"use a multiple of {parts} rows"
        )
    size = num_rows // parts
    return np.arange(part * size, (part + 1) * size)


def make_mesh(num_rows: int) -> Mesh:
    """A 1-D mesh of all local devices over the row axis; rows must divide among them."""
    devices = jax.local_devices()
    if num_rows % len(devices):
        raise ValueError(
            f"{num_rows} rows (kl_budgets x seeds) do not divide among {len(devices)} devices; "
            f"use a multiple of {len(devices)} seeds"
        )
    return Mesh(np.asarray(devices), (ROW_AXIS,))


def shard_rows(tree, mesh: Mesh):
    """Place a pytree whose leaves have a leading row axis with that axis split over devices."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(ROW_AXIS)))


def replicate(tree, mesh: Mesh):
    """Place a pytree on every device of the mesh (e.g. the dataset)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def init_rows(agent, agent_config, key, row_ids: Sequence[int], example_obs, example_actions):
    """Stacked states of independent agents: row id r gets `agent.init(fold_in(key, r))`.

    Args:
      row_ids: (R,) global row ids (`np.arange(R)` for a sweep run in one piece).
    """
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.asarray(row_ids))
    return jax.jit(jax.vmap(lambda k: agent.init(k, agent_config, example_obs, example_actions)))(
        keys
    )


def call_keys(key, seeds: np.ndarray, call_index: int):
    """Per-row keys of one training call, a pure function of (key, seed, call index).

    Rows with the same seed (different budgets) get the same keys, so a budget sweep differs only
    in the budget; a resumed run gets the same keys as an uninterrupted one.
    """
    call_key = jax.random.fold_in(key, call_index)
    return jax.vmap(lambda s: jax.random.fold_in(call_key, s))(jnp.asarray(seeds))


def scan_updates(update: Callable, sample: Callable, state, keys):
    """One `update` per key on a freshly sampled batch: the step every training loop runs.

    Args:
      update: `(state, batch, key) -> (state, metrics)` of one row.
      sample: `key -> batch` (e.g. `sample_chunks` over a dataset, or a replay buffer).
      keys: (N, 2) one key per update; each splits into (sample key, update key).
    Returns:
      (state after N updates, metrics with a leading axis N).
    """

    def step(state, key):
        sample_key, update_key = jax.random.split(key)
        return update(state, sample(sample_key), update_key)

    if keys.shape[0] == 1:  # no scan: a third less compile time (online training at UTD 1)
        state, metrics = step(state, keys[0])
        return state, jax.tree.map(lambda x: x[None], metrics)
    return jax.lax.scan(step, state, keys)


def add_metrics(totals: dict | None, metrics: dict[str, jax.Array], axis: int = 0) -> dict:
    """Running sums of `metrics` over `axis` (added to `totals`), or the last value for the dual
    state, whose latest value is the meaningful one; `mean_metrics` turns them into means."""
    out = {}
    for name, values in metrics.items():
        if name in LAST_VALUE_METRICS:
            out[name] = jnp.take(values, -1, axis=axis)
        else:
            total = jnp.sum(values.astype(jnp.float32), axis=axis)
            out[name] = total if totals is None else totals[name] + total
    return out


def mean_metrics(totals: dict, count) -> dict:
    """Means of `add_metrics` sums over `count` updates (last values pass through)."""
    return {
        name: value if name in LAST_VALUE_METRICS else value / count
        for name, value in totals.items()
    }


@functools.cache  # one compiled program per setting, also across runs in one process
def make_train_call(
    update: Callable, batch_size: int, horizon: int, discount: float, steps: int
) -> Callable:
    """A compiled `(states, data, size, keys) -> (states, summaries)` running `steps` updates.

    `data` is a dict of device arrays of flat transitions (see data/sampler.py), shared by every
    row; `size` is its number of valid rows (traced, so a replay buffer or a padded shard reuses
    the compiled program); `keys` are per-row keys (R, 2). Summaries are per-row scalars (R,):
    the mean over the call's updates, the last value for the dual state.
    """

    def one_row(state, data, size, key):
        sample = lambda k: sample_chunks(k, data, batch_size, horizon, discount, size)
        state, metrics = scan_updates(update, sample, state, jax.random.split(key, steps))
        return state, mean_metrics(add_metrics(None, metrics), steps)

    return jax.jit(jax.vmap(one_row, in_axes=(0, None, None, 0)))


def to_host(tree) -> Any:
    """Device arrays -> numpy (one transfer per leaf)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
