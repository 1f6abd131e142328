"""Shard rotation: order, padding, background prefetch, the memory bound, no recompilation."""

import os
import threading

import jax
import numpy as np
import pytest

from trqam_jax.data import datasets, options, shards
from trqam_jax.data.datasets import load_offline_data
from trqam_jax.data.errors import CorruptDatasetError
from trqam_jax.data.sampler import sample_chunks

ENV = "cube-double-play-singletask-task2-v0"


def synthetic_shard(index, rows):
    """A transition dict whose observations encode (shard, row)."""
    r = np.arange(rows, dtype=np.float32)
    terminals = np.zeros(rows, np.float32)
    terminals[rows // 2] = terminals[-1] = 1.0
    return {
        "observations": np.stack([np.full(rows, index, np.float32), r], axis=1),
        "actions": np.stack([r / 100, -r / 100], axis=1),
        "rewards": -np.ones(rows, np.float32),
        "terminals": terminals,
        "masks": np.ones(rows, np.float32),
        "next_observations": np.stack([np.full(rows, index, np.float32), r + 1], axis=1),
    }


class RecordingLoader:
    """load_fn for synthetic shards that records which thread loaded what, and when."""

    def __init__(self, sizes):
        self.sizes = sizes
        self.calls = []  # (path index, thread name)
        self.lock = threading.Lock()

    def __call__(self, path):
        index = int(path.rsplit("-", 1)[1])
        with self.lock:
            self.calls.append((index, threading.current_thread().name))
        return synthetic_shard(index, self.sizes[index])


def test_rotation_order_padding_and_background_loading():
    sizes = [30, 42, 25]
    loader = RecordingLoader(sizes)
    paths = [f"shard-{i}" for i in range(3)]
    with shards.ShardRotator(paths, loader, rows=max(sizes)) as rot:
        seen = [rot.index]
        data, size = rot.current
        assert int(size) == 30 and data["observations"].shape == (42, 2)
        for step in range(5):
            data, size = rot.advance()
            seen.append(rot.index)
            index = rot.index
            np.testing.assert_array_equal(data["observations"][: sizes[index], 0], index)
            assert int(size) == sizes[index]
            np.testing.assert_array_equal(data["rewards"][sizes[index] :], 0.0)  # padding
            # At most one shard is prepared ahead of the current one.
            assert len(loader.calls) <= step + 3
        rot.close()
    assert seen == [0, 1, 2, 0, 1, 2]
    # Everything after the first shard was loaded on the background thread, in rotation order.
    assert [i for i, _ in loader.calls] == [0, 1, 2, 0, 1, 2, 0]
    assert all(name.startswith("shards") for _, name in loader.calls[1:])


def test_seek_resumes_the_rotation_where_an_uninterrupted_one_would_be():
    sizes = [30, 42, 25, 17]
    paths = [f"shard-{i}" for i in range(4)]
    with shards.ShardRotator(paths, RecordingLoader(sizes), rows=42) as straight:
        for _ in range(6):  # shards 1, 2, 3, 0, 1, 2
            straight.advance()
        expected = [straight.index] + [straight.advance() and straight.index for _ in range(3)]
    loader = RecordingLoader(sizes)
    with shards.ShardRotator(paths, loader, rows=42) as resumed:
        data, size = resumed.seek(6)  # step // shard_interval of a resumed stage
        assert resumed.index == 2 and int(size) == 25
        np.testing.assert_array_equal(data["observations"][:25, 0], 2)
        seen = [resumed.index] + [resumed.advance() and resumed.index for _ in range(3)]
        resumed.seek(3)
        assert resumed.index == 3
        assert resumed.seek(3)[0] is resumed.current[0]  # already there: nothing reloaded
        on_main = lambda: [i for i, name in loader.calls if not name.startswith("shards")]
        before = on_main()
        resumed.seek(4)  # the next shard: its background load is used, nothing read again
        assert resumed.index == 0 and on_main() == before
    assert seen == expected == [2, 3, 0, 1]


def test_host_prefetch_mode_gives_the_same_data():
    sizes = [12, 20]
    paths = [f"shard-{i}" for i in range(2)]
    a = shards.ShardRotator(paths, RecordingLoader(sizes), rows=20)
    b = shards.ShardRotator(paths, RecordingLoader(sizes), rows=20, device_prefetch=False)
    for _ in range(3):
        (da, sa), (db, sb) = a.advance(), b.advance()
        assert int(sa) == int(sb)
        for k in da:
            np.testing.assert_array_equal(da[k], db[k])
    a.close()
    b.close()


def test_compiled_step_is_traced_once_across_shards():
    sizes = [30, 42, 25]
    traces = []

    @jax.jit
    def step(key, data, size):
        traces.append(1)  # runs only while tracing
        return sample_chunks(key, data, 16, 4, 0.99, size=size)

    rot = shards.ShardRotator([f"s-{i}" for i in range(3)], RecordingLoader(sizes), rows=42)
    key = jax.random.PRNGKey(0)
    for _ in range(4):
        batch = step(key, *rot.current)
        # Samples come only from the real rows of the current shard.
        assert (np.asarray(batch["observations"][:, 0]) == rot.index).all()
        assert np.asarray(batch["observations"][:, 1]).max() <= sizes[rot.index] - 4
        rot.advance()
    rot.close()
    assert len(traces) == 1


def test_single_shard_never_reloads():
    loader = RecordingLoader([10])
    rot = shards.ShardRotator(["only-0"], loader, rows=10)
    first = rot.current[0]
    assert rot.advance()[0] is first and len(loader.calls) == 1
    rot.close()


def test_generated_shards_load_and_rotate(tiny_shard_dir):
    offline = load_offline_data(ENV, tiny_shard_dir, with_val=True)
    names = [os.path.basename(p) for p in offline.shard_paths]
    assert names == [f"cube-double-play-v0-00{i}.npz" for i in range(3)]
    assert offline.provenance["data_source"] == "generated"
    assert offline.provenance["num_shards"] == 3 and offline.val is not None
    assert shards.transition_count(offline.shard_paths[1]) == 39  # one 40-step episode

    load = shards.shard_loader(ENV)
    env = datasets.parse_env_name(ENV)
    with shards.ShardRotator(offline.shard_paths, load, first=offline.train) as rot:
        assert rot.rows == 39
        np.testing.assert_array_equal(rot.current[0]["observations"], offline.train["observations"])
        data, size = rot.advance()
        direct = options.postprocess(datasets.load_shard(offline.shard_paths[1], env, offline.env))
        for k in options.FIELDS:
            np.testing.assert_array_equal(data[k], direct[k])
        assert not np.array_equal(data["observations"], offline.train["observations"])
        assert int(size) == 39


def test_shard_proportion_selects_leading_shards(tiny_shard_dir):
    offline = load_offline_data(ENV, tiny_shard_dir, proportion=0.7)
    assert len(offline.shard_paths) == 2  # max(1, int(3 * 0.7))


def test_corrupt_shard_raises_at_advance(tiny_shard_dir, tmp_path):
    for name in os.listdir(tiny_shard_dir):
        with open(os.path.join(tiny_shard_dir, name), "rb") as f:
            data = f.read()
        if name == "cube-double-play-v0-001.npz":
            data = data[: len(data) // 3]
        (tmp_path / name).write_bytes(data)
    offline = load_offline_data(ENV, str(tmp_path))
    rot = shards.ShardRotator(
        offline.shard_paths, shards.shard_loader(ENV), rows=39, first=offline.train
    )
    with pytest.raises(CorruptDatasetError, match="001.npz"):
        rot.advance()
    rot.close()
