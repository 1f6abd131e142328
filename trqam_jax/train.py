"""The compiled training loop: vmap over rows (budgets x seeds) o lax.scan over steps o update.

Agents know nothing of seeds or devices; this module stacks per-row agent states on a leading
axis, shards that axis over the local devices, and runs `steps_per_call` updates per call with the
batches sampled on the device. The host only logs, evaluates and checkpoints between calls.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trqam_jax.data import replay
from trqam_jax.data.sampler import sample_chunks

ROW_AXIS = "rows"
# Metrics whose last value in a call is the meaningful one (dual state), not the call's mean.
LAST_VALUE_METRICS = ("kl_ema", "lambda")


@dataclasses.dataclass(frozen=True)
class Rows:
    """The rows one launcher runs, each an independent agent: tasks x swept values x seeds.

    ids: (R,) global row ids in the whole sweep; seeds: (R,) seed index of each row; swept:
    name -> (R,) traced value of each row (e.g. {"kl_budget": ...}); tasks: (R,) the OGBench
    task of each row; task_ids: the sweep's tasks in label-column order, so row r reads column
    `task_columns[r]` of the (N, T) rewards and masks; total: rows of the whole sweep.
    Every quantity of a row (init key, training keys, evaluation and reset seeds) depends only
    on its place within its task's block (`key_ids`) and its seed, so the parts of a split sweep
    together equal the whole, and a task's rows equal the single-task run of that task.
    """

    ids: np.ndarray
    seeds: np.ndarray
    swept: dict[str, np.ndarray]
    total: int
    tasks: np.ndarray
    task_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def key_ids(self) -> np.ndarray:
        """(R,) each row's id within its task's block: what its random numbers are drawn by."""
        return self.ids % (self.total // len(self.task_ids))

    @property
    def task_columns(self) -> np.ndarray:
        """(R,) int32 column of each row's task in the (N, T) label tables."""
        return np.asarray([self.task_ids.index(t) for t in self.tasks], np.int32)

    def columns(self) -> dict[str, np.ndarray]:
        """What identifies each row in the logs: task, seed and swept values, (R,) each."""
        return {"task": self.tasks, "seed": self.seeds, **self.swept}


def make_rows(
    seeds: int,
    swept: dict[str, Sequence[float]],
    part: int = 0,
    parts: int = 1,
    tasks: Sequence[int] = (1,),
) -> Rows:
    """Rows of `tasks` x `swept` values x `seeds` seeds (task-major), block `part` of `parts`.

    Rows of different values share seeds 0..seeds-1, so they differ only in the value. Part p of
    a split sweep runs rows [p * R / parts, (p + 1) * R / parts).
    Raises:
      ValueError when the part is out of range or the rows do not split into equal parts.
    """
    (name, values), *others = list(swept.items()) or [(None, [None])]
    if others:
        raise ValueError(f"one swept value at a time, got {sorted(swept)}")
    tasks = tuple(int(t) for t in tasks)
    per_task = len(values) * seeds
    total = len(tasks) * per_task
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(
            f"rows_part={part} of rows_parts={parts}: need 0 <= rows_part < rows_parts"
        )
    if total % parts:
        raise ValueError(
            f"{total} rows (tasks x swept values x seeds) do not split into {parts} equal parts; "
            f"use a multiple of {parts} rows"
        )
    size = total // parts
    ids = np.arange(part * size, (part + 1) * size)
    within = ids % per_task
    columns = {} if name is None else {name: np.asarray(values, np.float32)[within // seeds]}
    return Rows(
        ids=ids,
        seeds=within % seeds,
        swept=columns,
        total=total,
        tasks=np.asarray(tasks)[ids // per_task],
        task_ids=tasks,
    )


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


def call_keys(key, seeds, call_index):
    """Per-row keys of one call, fold_in(fold_in(key, call index), seed): (R, 2) raw keys.

    A pure function of (key, seed, call index), jittable (`call_index` may be traced). Rows with
    the same seed (different swept values) get the same keys, so a sweep differs only in the
    value; a resumed run gets the same keys as an uninterrupted one.
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


def all_finite(tree) -> jax.Array:
    """True when every floating-point value of `tree` is finite (a scalar bool)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves]))


def nonfinite(state, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Where one row's call first went non-finite, to stop a diverging run (int32 scalars).

    bad_step: the first update (0-based, within the call) with a non-finite metric; the number
      of updates if only the final state is non-finite; -1 if everything is finite.
    bad_metric: index of that update's first non-finite metric in `sorted(metrics)`; -1 if none.
    """
    names = sorted(metrics)
    bad = jnp.stack([~jnp.isfinite(metrics[name].astype(jnp.float32)) for name in names], -1)
    bad_any = jnp.any(bad, axis=-1)  # (updates,)
    first = jnp.argmax(bad_any)
    state_step = jnp.where(all_finite(state), -1, bad_any.shape[0])
    bad_step = jnp.where(jnp.any(bad_any), first, state_step)
    bad_metric = jnp.where(jnp.any(bad_any), jnp.argmax(bad[first]), -1)
    return {"bad_step": bad_step.astype(jnp.int32), "bad_metric": bad_metric.astype(jnp.int32)}


@functools.cache  # one compiled program per setting, also across runs in one process
def make_train_call(
    update: Callable, batch_size: int, horizon: int, discount: float, steps: int
) -> Callable:
    """A compiled `(states, data, size, keys, tasks=None) -> (states, summaries, health)`.

    `steps` updates per row. `data` is a dict of device arrays of flat transitions (see
    data/sampler.py), shared by every row; its rewards and masks may be (N, T) tables, of which
    row r reads column `tasks[r]` ((R,) int; None = column 0 for every row). `size` is its number
    of valid rows (traced, so a replay buffer or a padded shard reuses the compiled program);
    `keys` are per-row keys (R, 2). Summaries are per-row scalars (R,): the mean over the call's
    updates, the last value for the dual state. `health` is `nonfinite` per row, (R,) each.
    """

    def one_row(state, data, size, key, task):
        sample = lambda k: sample_chunks(k, data, batch_size, horizon, discount, size, task)
        state, metrics = scan_updates(update, sample, state, jax.random.split(key, steps))
        return state, mean_metrics(add_metrics(None, metrics), steps), nonfinite(state, metrics)

    def call(states, data, size, keys, tasks=None):
        # tasks=None is an empty pytree: every row reads column 0 (`sampler.take_rows`).
        return jax.vmap(one_row, in_axes=(0, None, None, 0, 0))(states, data, size, keys, tasks)

    return jax.jit(call)


@functools.lru_cache(maxsize=16)
def make_replay_calls(update: Callable, batch_size: int, horizon: int, discount, utd: int):
    """Compiled `(insert, insert_and_update)` of online training on per-row replay buffers.

    insert(replays, transitions) -> replays: one transition (leaves (R, ...)) into each row's
      online buffer (leaves (R, capacity, ...)).
    insert_and_update(states, replays, totals, transitions, key, step, seeds, offline, tasks)
      -> (states, replays, totals): the insert, then `utd` updates per row on chunk batches from
      the shared `offline` transitions followed by its own online ones (`replay.sample`; row r
      reads the offline labels' column `tasks[r]`), with the keys `call_keys(key, seeds, step)`;
      `totals` accumulates the metrics (`add_metrics`, axis 1 = the updates). States, buffers and
      totals are donated.
    """

    def one_row(state, buffer, key, offline, task):
        sample = lambda k: replay.sample(k, buffer, batch_size, horizon, discount, offline, task)
        keys = key[None] if utd == 1 else jax.random.split(key, utd)
        return scan_updates(update, sample, state, keys)

    def insert(replays, transitions):
        return jax.vmap(replay.insert)(replays, transitions)

    def insert_and_update(states, replays, totals, transitions, key, step, seeds, offline, tasks):
        replays = insert(replays, transitions)
        keys = call_keys(key, seeds, step)
        rows = jax.vmap(one_row, in_axes=(0, 0, 0, None, 0))
        states, metrics = rows(states, replays, keys, offline, tasks)
        return states, replays, add_metrics(totals, metrics, axis=1)

    return (
        jax.jit(insert, donate_argnums=0),
        jax.jit(insert_and_update, donate_argnums=(0, 1, 2)),
    )


def to_host(tree) -> Any:
    """Device arrays -> numpy (one transfer per leaf)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
