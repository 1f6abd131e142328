"""The local generator: names, reproducibility, the official file layout and provenance."""

import hashlib
import json
import os

import numpy as np
import ogbench
import pytest
from conftest import TINY

from experiments import make_dataset
from trqam_jax.data import generate
from trqam_jax.data.errors import LocomotionGenerationError, UnknownEnvironmentError


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_specs_follow_ogbench_generator_settings():
    play = generate.generation_spec("cube-double-play-singletask-task3-v0")
    assert (play.dataset_name, play.env_id, play.dataset_type) == (
        "cube-double-play-v0",
        "cube-double-v0",
        "play",
    )
    assert (play.noise, play.noise_smoothing, play.p_random_action) == (0.1, 0.5, 0.0)
    assert generate.generation_spec("cube-triple-noisy-v0").p_random_action == 0.1
    assert generate.generation_spec("scene-noisy-v0").p_random_action == 0.1
    assert generate.generation_spec("puzzle-4x4-noisy-v0").p_random_action == 0.2
    assert generate.generation_spec("puzzle-3x3-play-v0").env_id == "puzzle-3x3-v0"


@pytest.mark.parametrize(
    "name", ["antmaze-large-navigate-v0", "humanoidmaze-medium-navigate-singletask-task1-v0"]
)
def test_locomotion_is_refused(name):
    with pytest.raises(LocomotionGenerationError, match="expert policies"):
        generate.generation_spec(name)


def test_unknown_generator_name():
    with pytest.raises(UnknownEnvironmentError, match="cube-double-play-v0"):
        generate.generation_spec("cube-dubble-play-v0")


def test_cli_error_exit_code(tmp_path, capsys):
    assert (
        make_dataset.main(
            ["--env=antsoccer-arena-navigate-v0", "--episodes=1"] + [f"--out={tmp_path}"]
        )
        == 2
    )
    assert "antsoccer-arena-navigate-v0" in capsys.readouterr().err


def test_files_provenance_and_ogbench_loads_them_unchanged(tiny_dataset_dir):
    prov_path = os.path.join(tiny_dataset_dir, "cube-double-play-v0-provenance.json")
    with open(prov_path) as f:
        prov = json.load(f)
    assert prov["data_source"] == "generated" and prov["seed"] == TINY["seed"]
    assert prov["episodes"] == 2 and prov["val_episodes"] == 1
    assert prov["versions"]["ogbench"] and prov["versions"]["mujoco"]
    for entry in prov["files"]:
        assert sha256(os.path.join(tiny_dataset_dir, entry["file"])) == entry["sha256"]
    # The stock ogbench loader reads the files as they are (no download attempted: files exist).
    train, val = ogbench.make_env_and_datasets(
        "cube-double-play-singletask-task1-v0",
        dataset_dir=tiny_dataset_dir,
        dataset_only=True,
        cur_env=ogbench.make_env_and_datasets(
            "cube-double-play-singletask-task1-v0", env_only=True
        ),
    )
    assert len(train["observations"]) == 2 * (TINY["max_episode_steps"] - 1)
    assert len(val["observations"]) == TINY["max_episode_steps"] - 1
    with np.load(os.path.join(tiny_dataset_dir, "cube-double-play-v0.npz")) as f:
        assert f["terminals"].dtype == bool and f["observations"].dtype == np.float32
        assert set(f.files) == {"observations", "actions", "terminals", "qpos", "qvel"}
        # Every episode is exactly max_episode_steps long and ends with its terminal flag.
        np.testing.assert_array_equal(np.flatnonzero(f["terminals"]), [149, 299])


def test_bit_for_bit_reproducible_with_any_worker_count(tiny_dataset_dir, tmp_path):
    generate.generate_dataset(out_dir=str(tmp_path), workers=2, progress=False, **TINY)
    for name in ("cube-double-play-v0.npz", "cube-double-play-v0-val.npz"):
        assert sha256(tmp_path / name) == sha256(os.path.join(tiny_dataset_dir, name))


def test_different_seed_gives_different_data(tiny_dataset_dir, tmp_path):
    options = dict(TINY, seed=5, episodes=1, max_episode_steps=30)
    generate.generate_dataset(out_dir=str(tmp_path), progress=False, **options)
    new = tmp_path / "cube-double-play-v0.npz"
    old = os.path.join(tiny_dataset_dir, "cube-double-play-v0.npz")
    with np.load(new) as a, np.load(old) as b:
        assert not np.array_equal(a["observations"][:30], b["observations"][:30])


def test_episode_seeds_are_independent_of_order():
    seeds = {generate.episode_seed(0, s, i, a) for s in range(3) for i in range(50) for a in (0, 1)}
    assert len(seeds) == 300
    assert generate.episode_seed(0, 0, 7) == generate.episode_seed(0, 0, 7)
