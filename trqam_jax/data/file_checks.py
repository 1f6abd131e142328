"""Checks of a raw OGBench dataset file before ogbench reads it: every array readable, finite and
of one length, the last episode ended, and the sizes those of the environment."""

import numpy as np

from trqam_jax.data.errors import CorruptDatasetError, DataError, NonFiniteDataError


def nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows that contain NaN or inf (empty for non-float arrays)."""
    if not np.issubdtype(values.dtype, np.floating):
        return np.zeros(0, np.int64)
    return np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))


def validate_npz(path: str, required: tuple) -> dict:
    """Read every array of a raw OGBench file once and check it; returns {key: shape}.

    Raises:
      CorruptDatasetError: unreadable / truncated zip, bad CRC, missing keys, ragged lengths,
        a last episode without its end marker.
      NonFiniteDataError: NaN/inf, naming the field and the first bad row.
    """
    fix = (
        "Delete it and download it again on a connected machine, or regenerate it with "
        "`python -m experiments.make_dataset ...`."
    )
    try:
        with np.load(path, allow_pickle=False) as file:
            keys = set(file.files)
            missing = [k for k in required if k not in keys]
            if missing:
                raise CorruptDatasetError(
                    f"{path} lacks the arrays {missing} (has {sorted(keys)}); it is not an OGBench "
                    f"dataset file or it is incomplete. {fix}"
                )
            shapes = {}
            for key in sorted(keys):
                values = file[key]  # decompresses and CRC-checks the member
                shapes[key] = values.shape
                bad = nonfinite_rows(values)
                if bad.size:
                    raise NonFiniteDataError(
                        f"{path}: field {key!r} has a non-finite value (NaN or inf) at row "
                        f"{int(bad[0])} (row of the file; {bad.size} bad rows in all). {fix}"
                    )
                if key == "terminals" and (len(values) == 0 or not values[-1]):
                    raise CorruptDatasetError(
                        f"{path}: the last episode has no end marker (terminals[-1] = 0) or the "
                        f"file is empty; the file is truncated or was not written by an OGBench "
                        f"generator. {fix}"
                    )
    except DataError:
        raise
    except Exception as err:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError
        raise CorruptDatasetError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}). {fix}"
        ) from err
    lengths = {k: v[0] if v else 0 for k, v in shapes.items()}
    if len(set(lengths.values())) != 1:
        raise CorruptDatasetError(f"{path}: arrays have different lengths {lengths}. {fix}")
    return shapes


def check_against_env(shapes: dict, env, path: str) -> None:
    """The file's observation / action sizes (from `validate_npz`) must match the environment's.

    Checked before ogbench relabels, whose indexing would otherwise fail obscurely.
    """
    want = (
        int(np.prod(env.observation_space.shape)),
        int(np.prod(env.action_space.shape)),
    )
    got = (int(np.prod(shapes["observations"][1:])), int(np.prod(shapes["actions"][1:])))
    if got != want:
        raise CorruptDatasetError(
            f"{path} has observation/action sizes {got} but the environment expects {want}: the "
            "file belongs to a different environment. Check the data directory and file names."
        )
