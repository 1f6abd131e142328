"""Rotation through the shards of a large OGBench release (`{dataset}-000.npz`, `-001.npz`, ...).

The training set is one shard at a time on the device. While the compiled loop trains on the
current shard, a background thread reads, validates, relabels and (by default) transfers the next
one, so `advance()` at a rotation point is a pointer swap. Memory stays bounded: the device holds
the current shard plus at most one prefetched shard (`device_prefetch=False`: the prefetched shard
waits on the host and is transferred inside `advance()`, one shard on the device); the host holds at
most the shard being prepared. Callers must not keep references to old shards (rebind the result of
`advance()`), otherwise those stay alive too.

Every shard is padded to the same number of rows (the largest shard), so the compiled step sees one
shape and never recompiles; `size` (an int32 device scalar) tells `sample_chunks` how many rows are
real. Rotation schedule (the reference QAM / horizon-reduction code: every 1000 gradient steps, in
file order, wrapping around) is the caller's choice.
"""

import concurrent.futures
import threading
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax.data import names
from trqam_jax.data.datasets import load_shard, parse_env_name
from trqam_jax.data.errors import CorruptDatasetError
from trqam_jax.data.options import ACTION_CLIP_EPS, postprocess
from trqam_jax.envs import make_env


def transition_count(path: str) -> int:
    """Transitions a raw OGBench file yields (rows minus one per episode), reading only terminals.

    Raises:
      CorruptDatasetError: when the file or its `terminals` array cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as file:
            terminals = np.asarray(file["terminals"])
    except Exception as err:
        raise CorruptDatasetError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}). Delete it and download "
            "it again, or regenerate it with `python -m experiments.make_dataset ... --shards=K`."
        ) from err
    return int(len(terminals) - np.count_nonzero(terminals))


def pad_rows(data: dict, rows: int) -> dict:
    """Zero-pad every array to `rows` leading rows (never read: `size` excludes them)."""
    n = len(data["rewards"])
    if n > rows:
        raise ValueError(f"shard has {n} rows, more than the padded size {rows}")
    return {
        k: np.concatenate([v, np.zeros((rows - n, *v.shape[1:]), v.dtype)]) if rows > n else v
        for k, v in data.items()
    }


def shard_loader(
    env_name: str,
    sparse: bool = False,
    action_clip_eps: float | None = ACTION_CLIP_EPS,
    validate: bool = True,
    tasks: tuple[int, ...] | None = None,
) -> Callable[[str], dict]:
    """A `path -> transitions` function applying the same relabelling and options as the loader.

    With `tasks`, every shard is labelled for each of the domain's tasks ((N, T) rewards and
    masks, as `load_offline_data(..., tasks=...)`). It owns private environments (built on first
    use), because relabelling resets them and must not race with evaluation on the caller's.
    """
    spec = parse_env_name(env_name)
    state = {}
    lock = threading.Lock()

    def load(path: str) -> dict:
        with lock:
            if "env" not in state:
                state["env"] = make_env(env_name)
                state["tasks"] = None
                if tasks is not None:
                    state["tasks"] = [make_env(names.env_name(spec.domain, t)) for t in tasks]
            data = load_shard(path, spec, state["env"], validate, task_envs=state["tasks"])
        return postprocess(data, sparse, action_clip_eps)

    return load


class ShardRotator:
    """Current shard on the device, next one prepared in the background.

    Args:
      paths: shard files in rotation order (e.g. `OfflineData.shard_paths`).
      load_fn: `path -> dict` of numpy arrays with the sampler fields (e.g. `shard_loader(...)`).
      rows: padded row count; default the largest shard's transition count (reads only the
        `terminals` of every shard once).
      device_prefetch: also transfer the next shard to the device in the background (two shards on
        the device, no stall); False keeps one shard on the device and transfers at `advance()`.
      put: host -> device transfer (default `jax.device_put`; pass a sharding-aware one if needed).
      first: optionally the already loaded first shard (numpy dict) to avoid reading it twice.
    """

    def __init__(
        self,
        paths: Sequence[str],
        load_fn: Callable[[str], dict],
        rows: int | None = None,
        device_prefetch: bool = True,
        put: Callable = jax.device_put,
        first: dict | None = None,
    ):
        if not paths:
            raise ValueError("ShardRotator needs at least one shard path")
        self.paths = tuple(paths)
        self.rows = rows if rows is not None else max(transition_count(p) for p in self.paths)
        self._load_fn = load_fn
        self._put = put
        self._device_prefetch = device_prefetch
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shards")
        self.index = 0
        host = first if first is not None else load_fn(self.paths[0])
        self.data, self.size = self._to_device(host)
        self._pending = self._schedule(1)

    def _prepare(self, index: int):
        """Runs on the background thread: read + relabel + pad (+ transfer)."""
        host = self._load_fn(self.paths[index])
        if self._device_prefetch:
            return self._to_device(host)
        return host

    def _to_device(self, host: dict):
        n = len(host["rewards"])
        data = self._put(pad_rows(host, self.rows))
        return data, jnp.int32(n)

    def _schedule(self, index: int):
        if len(self.paths) == 1:
            return None  # nothing to rotate; keep the only shard
        return self._executor.submit(self._prepare, index % len(self.paths))

    @property
    def current(self):
        """(data, size): dict of device arrays padded to `rows`, int32 number of real rows."""
        return self.data, self.size

    def advance(self):
        """Switch to the next shard (wrapping around) and start preparing the one after.

        Returns:
          (data, size) of the new current shard. Errors of the background load (e.g. a corrupt
          shard) are raised here.
        """
        if self._pending is None:
            return self.current
        # Drop the old shard before the next transfer can start, to keep the two-shard bound.
        self.data = self.size = None
        prepared = self._pending.result()
        self.data, self.size = prepared if self._device_prefetch else self._to_device(prepared)
        self.index = (self.index + 1) % len(self.paths)
        self._pending = self._schedule(self.index + 1)
        return self.current

    def seek(self, index: int):
        """Make shard `index % len(paths)` current (loaded now) and prepare the one after it.

        The launcher seeks to `step // shard_interval` when a stage starts, so the shard a step
        trains on depends only on the stage and the step: a resumed run sees the shards an
        uninterrupted one did. Returns (data, size) of the new current shard.
        """
        index %= len(self.paths)
        if index == self.index:
            return self.current
        if index == (self.index + 1) % len(self.paths):
            return self.advance()  # already being prepared in the background
        if self._pending is not None:
            self._pending.result()  # one background load at a time
        self.data = self.size = None
        self.data, self.size = self._to_device(self._load_fn(self.paths[index]))
        self.index = index
        self._pending = self._schedule(index + 1)
        return self.current

    def close(self) -> None:
        """Stop the background thread (a pending load is finished first)."""
        self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
