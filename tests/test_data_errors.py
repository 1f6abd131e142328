"""Every bad input gets a DataError subclass whose message says what is wrong and how to fix it."""

import os
import shutil

import numpy as np
import pytest

from tests.runs import run_module
from trqam_jax.data import errors
from trqam_jax.data.datasets import load_offline_data
from trqam_jax.data.generate import write_npz

ENV = "cube-double-play-singletask-task1-v0"
TRAIN, VAL = "cube-double-play-v0.npz", "cube-double-play-v0-val.npz"


@pytest.fixture
def copy_dir(tiny_dataset_dir, tmp_path):
    for name in (TRAIN, VAL):
        shutil.copy(os.path.join(tiny_dataset_dir, name), tmp_path / name)
    return tmp_path


def rewrite(path, edit):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    write_npz(str(path), arrays)


def test_missing_files_name_paths_and_both_remedies(tmp_path):
    with pytest.raises(errors.DatasetNotFoundError) as err:
        load_offline_data(ENV, str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / TRAIN) in msg and str(tmp_path / VAL) in msg
    assert "ogbench.download_datasets(['cube-double-play-v0']" in msg
    assert "python -m experiments.make_dataset --env=cube-double-play-v0" in msg
    assert f"--out={tmp_path}" in msg


def test_missing_locomotion_files_say_download_only(tmp_path):
    with pytest.raises(errors.DatasetNotFoundError) as err:
        load_offline_data("antmaze-large-navigate-singletask-task1-v0", str(tmp_path))
    msg = str(err.value)
    assert "antmaze-large-navigate-v0.npz" in msg and "cannot be generated" in msg
    assert "make_dataset --env" not in msg


def test_missing_validation_file(copy_dir):
    os.remove(copy_dir / VAL)
    with pytest.raises(errors.DatasetNotFoundError, match="-val.npz"):
        load_offline_data(ENV, str(copy_dir))


def test_truncated_npz(copy_dir):
    path = copy_dir / TRAIN
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CorruptDatasetError, match="truncated or corrupt") as err:
        load_offline_data(ENV, str(copy_dir))
    assert str(path) in str(err.value) and "make_dataset" in str(err.value)


def test_corrupt_npz_member(copy_dir):
    path = copy_dir / TRAIN
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # damage compressed data, keep the zip directory
    path.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptDatasetError, match="truncated or corrupt"):
        load_offline_data(ENV, str(copy_dir))


@pytest.mark.parametrize(("field", "row", "value"), [("actions", 7, np.nan), ("qpos", 123, np.inf)])
def test_nonfinite_values_name_field_and_first_row(copy_dir, field, row, value):
    def poison(arrays):
        arrays[field][row, 1] = value
        arrays[field][row + 5, 0] = value

    rewrite(copy_dir / VAL, poison)
    with pytest.raises(errors.NonFiniteDataError) as err:
        load_offline_data(ENV, str(copy_dir), with_val=True)
    msg = str(err.value)
    assert f"field '{field}'" in msg and f"at row {row} " in msg and "2 bad rows" in msg
    assert VAL in msg


def test_missing_array(copy_dir):
    rewrite(copy_dir / TRAIN, lambda a: a.pop("qpos"))
    with pytest.raises(errors.CorruptDatasetError, match=r"lacks the arrays \['qpos'\]"):
        load_offline_data(ENV, str(copy_dir))


def test_cut_off_last_episode(copy_dir):
    def cut(arrays):
        for k in arrays:
            arrays[k] = arrays[k][:-10]

    rewrite(copy_dir / TRAIN, cut)
    with pytest.raises(errors.CorruptDatasetError, match="no end marker"):
        load_offline_data(ENV, str(copy_dir))


def test_file_of_another_environment(copy_dir):
    for name in (TRAIN, VAL):
        os.rename(copy_dir / name, copy_dir / name.replace("double", "triple"))
    with pytest.raises(errors.CorruptDatasetError, match="different environment"):
        load_offline_data("cube-triple-play-singletask-task1-v0", str(copy_dir))


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("cube-doble-play-singletask-task1-v0", "cube-double-play-singletask-task1-v0"),
        ("cube-double-play-v0", "cube-double-play-singletask"),
        ("cube-double-stitch-singletask-task1-v0", "cube-double-play-singletask-task1-v0"),
    ],
)
def test_unknown_environment_names(tmp_path, name, hint):
    with pytest.raises(errors.UnknownEnvironmentError) as err:
        load_offline_data(name, str(tmp_path))
    assert name in str(err.value) and hint in str(err.value)


def test_generator_cli_rejects_locomotion_with_nonzero_exit(tmp_path):
    proc = run_module(
        "experiments.make_dataset",
        "--env=antmaze-large-navigate-v0",
        "--episodes=1",
        f"--out={tmp_path}",
        timeout=120,
    )
    assert proc.returncode != 0
    assert "expert policies" in proc.stderr and "download" in proc.stderr.lower()
    assert not any(tmp_path.iterdir())  # nothing written
