"""OGBench data: loading, shards, on-device chunk sampling, replay buffer, local generation.

Launcher entry points:
  - `load_offline_data(env_name, data_dir=None, *, sparse, action_clip_eps, proportion)`
    -> OfflineData(env, train, val, provenance, spec, shard_paths)
  - `ShardRotator(offline.shard_paths, shard_loader(env_name, sparse, action_clip_eps),
    first=offline.train)` when `offline.shard_paths` is non-empty
  - `sample_chunks(key, data, batch_size, horizon, discount, size=None)` inside the compiled step
  - `replay.init_replay / replay.insert / replay.sample` for offline-to-online
  - every user-fixable problem raises a `DataError` subclass: print it and exit non-zero.
The generator (`trqam_jax.data.generate`) is imported on demand; it does not need JAX.
"""

from trqam_jax.data.datasets import (
    OfflineData,
    load_offline_data,
    parse_env_name,
    resolve_data_dir,
)
from trqam_jax.data.errors import (
    CorruptDatasetError,
    DataError,
    DatasetNotFoundError,
    LocomotionGenerationError,
    NonFiniteDataError,
    UnknownEnvironmentError,
)
from trqam_jax.data.options import ACTION_CLIP_EPS, sparsify_rewards


def __getattr__(name):
    # The sampler imports JAX; loaded on first use so the generator's worker processes stay light.
    if name in ("sample_chunks", "chunks_at"):
        from trqam_jax.data import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'trqam_jax.data' has no attribute {name!r}")


__all__ = [
    "ACTION_CLIP_EPS",
    "CorruptDatasetError",
    "DataError",
    "DatasetNotFoundError",
    "LocomotionGenerationError",
    "NonFiniteDataError",
    "OfflineData",
    "UnknownEnvironmentError",
    "chunks_at",
    "load_offline_data",
    "parse_env_name",
    "resolve_data_dir",
    "sample_chunks",
    "sparsify_rewards",
]
