"""Loading OGBench datasets (generated here) through ogbench's API, relabelling and options."""

import os
import shutil

import numpy as np
import ogbench
import pytest

from trqam_jax.data import datasets, options
from trqam_jax.data.datasets import load_offline_data

ENV = "cube-double-play-singletask-task{}-v0"


@pytest.fixture(scope="module")
def task4(tiny_dataset_dir):
    return load_offline_data(ENV.format(4), tiny_dataset_dir, action_clip_eps=None, with_val=True)


def raw(tiny_dataset_dir, split=""):
    with np.load(os.path.join(tiny_dataset_dir, f"cube-double-play-v0{split}.npz")) as f:
        return {k: f[k] for k in f.files}


def transition_rows(terminals):
    """File rows that become transitions (ogbench drops the last state of every episode)."""
    return np.flatnonzero(~terminals.astype(bool))


def test_layout_and_provenance(task4, tiny_dataset_dir):
    train, val = task4.train, task4.val
    file = raw(tiny_dataset_dir)
    n = len(file["terminals"]) - 2  # two episodes, one dropped final state each
    assert train["observations"].shape == (n, 37) and train["actions"].shape == (n, 5)
    for k in options.FIELDS:
        assert train[k].dtype == np.float32 and len(train[k]) == n, k
    # OGBench meaning: terminal 1.0 at the last transition of each episode.
    np.testing.assert_array_equal(np.flatnonzero(train["terminals"]), [148, 297])
    # next_observations[t] is observations[t + 1] inside an episode.
    inside = train["terminals"][:-1] == 0
    np.testing.assert_array_equal(
        train["next_observations"][:-1][inside], train["observations"][1:][inside]
    )
    np.testing.assert_array_equal(
        train["observations"], file["observations"][transition_rows(file["terminals"])]
    )
    assert len(val["rewards"]) == 149
    prov = task4.provenance
    assert prov["data_source"] == "generated"
    assert prov["generator"]["seed"] == 0 and prov["generator"]["episodes"] == 2
    assert prov["generator"]["versions"]["ogbench"] == ogbench_version()
    assert prov["dataset_dir"] == tiny_dataset_dir and prov["train_transitions"] == n
    assert task4.env.action_space.shape == (5,)


def ogbench_version():
    from importlib import metadata

    return metadata.version("ogbench")


@pytest.mark.parametrize("task", [1, 4])
def test_rewards_and_masks_are_relabelled_per_task(tiny_dataset_dir, task):
    data = load_offline_data(ENV.format(task), tiny_dataset_dir).train
    # Independent recomputation from the raw cube positions and the task's goal positions.
    file = raw(tiny_dataset_dir)
    qpos = file["qpos"][transition_rows(file["terminals"])]
    env = ogbench.make_env_and_datasets(ENV.format(task), env_only=True)
    goals = env.unwrapped.task_infos[task - 1]["goal_xyzs"]
    cubes = np.stack([qpos[:, 14:17], qpos[:, 21:24]], axis=1)
    solved = (np.linalg.norm(cubes - goals, axis=-1) <= 0.04).sum(axis=1)
    np.testing.assert_array_equal(data["rewards"], solved - 2.0)
    np.testing.assert_array_equal(data["masks"], (solved < 2).astype(np.float32))


def test_validation_file_is_read_only_when_asked(tiny_dataset_dir, task4):
    data = load_offline_data(ENV.format(4), tiny_dataset_dir, action_clip_eps=None)
    assert data.val is None and data.provenance["val_transitions"] is None
    assert data.provenance["files"] == ["cube-double-play-v0.npz"]
    assert task4.provenance["val_transitions"] == len(task4.val["rewards"])
    for k in options.FIELDS:  # the same training arrays as when the pair is read
        assert data.train[k].dtype == task4.train[k].dtype
        np.testing.assert_array_equal(data.train[k], task4.train[k])


def test_tasks_differ_on_the_same_data(tiny_dataset_dir, task4):
    task1 = load_offline_data(ENV.format(1), tiny_dataset_dir).train
    np.testing.assert_array_equal(task1["observations"], task4.train["observations"])
    assert (task1["rewards"] != task4.train["rewards"]).any()


def test_sparse_rewards(tiny_dataset_dir, task4):
    dense = task4.train["rewards"]
    assert set(np.unique(dense)) == {-2.0, -1.0}  # partial progress exists in this data
    sparse = load_offline_data(ENV.format(4), tiny_dataset_dir, sparse=True).train
    np.testing.assert_array_equal(sparse["rewards"], np.full_like(dense, -1.0))
    np.testing.assert_array_equal(sparse["masks"], task4.train["masks"])
    np.testing.assert_array_equal(
        options.sparsify_rewards(np.array([-3.0, -1.0, 0.0, -2.0])), [-1.0, -1.0, 0.0, -1.0]
    )


def test_action_clipping(tiny_dataset_dir, task4):
    unclipped = task4.train["actions"]
    assert np.abs(unclipped).max() == 1.0  # the oracles saturate, so clipping matters
    clipped = load_offline_data(ENV.format(4), tiny_dataset_dir).train["actions"]
    assert clipped.min() >= -1 + 1e-5 and clipped.max() <= 1 - 1e-5
    np.testing.assert_array_equal(clipped, np.clip(unclipped, -1 + 1e-5, 1 - 1e-5))
    val = load_offline_data(ENV.format(4), tiny_dataset_dir, with_val=True).val["actions"]
    assert np.abs(val).max() <= 1 - 1e-5


def test_proportion(tiny_dataset_dir, task4):
    full = task4.train
    half = load_offline_data(
        ENV.format(4), tiny_dataset_dir, proportion=0.4, action_clip_eps=None, with_val=True
    )
    keep = int(len(full["rewards"]) * 0.4)
    assert half.provenance["train_transitions"] == keep
    for k in ("observations", "actions", "rewards", "masks", "next_observations"):
        np.testing.assert_array_equal(half.train[k], full[k][:keep])
    # The cut episode is closed, so a chunk cannot run past the cut.
    np.testing.assert_array_equal(np.flatnonzero(half.train["terminals"]), [keep - 1])
    assert len(half.val["rewards"]) == len(task4.val["rewards"])  # only training data is cut
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="proportion"):
            load_offline_data(ENV.format(4), tiny_dataset_dir, proportion=bad)


def test_data_dir_setting(tiny_dataset_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("OGBENCH_DATA_DIR", tiny_dataset_dir)
    assert datasets.resolve_data_dir() == tiny_dataset_dir
    assert load_offline_data(ENV.format(4)).provenance["dataset_dir"] == tiny_dataset_dir
    assert datasets.resolve_data_dir(str(tmp_path)) == str(tmp_path)  # the argument wins
    monkeypatch.delenv("OGBENCH_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.resolve_data_dir() == os.path.join(str(tmp_path), ".ogbench", "data")


def test_without_provenance_file_data_is_official(tiny_dataset_dir, tmp_path, task4):
    for name in ("cube-double-play-v0.npz", "cube-double-play-v0-val.npz"):
        shutil.copy(os.path.join(tiny_dataset_dir, name), tmp_path / name)
    data = load_offline_data(ENV.format(4), str(tmp_path), action_clip_eps=None)
    assert data.provenance["data_source"] == "official" and data.provenance["generator"] is None
    np.testing.assert_array_equal(data.train["rewards"], task4.train["rewards"])
