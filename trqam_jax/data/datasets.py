"""OGBench single-task datasets: location, validation, loading and the options of the paper.

Loading goes through OGBench's own loaders (`ogbench.load_dataset` +
`ogbench.relabel_utils.relabel_dataset` per file, what `ogbench.make_env_and_datasets` does for a
train / val pair), so rewards and masks are OGBench's task relabelling: for manipulation, with k
subtasks (cubes / buttons / drawer / window) the reward of row t is (number solved in s_t) - k and
the mask is 0 exactly when all k are solved (success), computed from the row's own state `s_t`.

Options (as in the reference QAM `main.py` / `envs/env_utils.py`):
  - `sparse`: reward -1 until every subtask is solved, 0 at success: `r <- -(r != 0)`.
  - `action_clip_eps`: dataset actions clipped to [-1 + eps, 1 - eps] (default 1e-5; None = off).
  - `proportion`: keep the first int(N * p) training transitions (for a directory of shards: the
    first max(1, int(num_shards * p)) shards). The cut episode is marked ended (terminal 1) so no
    chunk runs past the cut (QAM leaves it open; with a replay buffer that would join it to the
    first online episode).

Every problem the user can fix raises a `DataError` subclass whose message names the paths / fields
and the fix; launchers should print it and exit non-zero.
"""

import difflib
import glob
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from trqam_jax.data.names import LABEL_FIELDS, LOCOMOTION_PREFIXES, dataset_name_of
from trqam_jax.data.names import env_name as env_name_of
from trqam_jax.envs import make_env

DATA_DIR_ENV_VAR = "OGBENCH_DATA_DIR"
DEFAULT_DATA_DIR = "~/.ogbench/data"
ACTION_CLIP_EPS = 1e-5
FIELDS = ("observations", "actions", "rewards", "terminals", "masks", "next_observations")
# Episode counts of the official releases (OGBench data_gen_scripts/commands.sh); 1000 otherwise.
OFFICIAL_EPISODES = {
    "cube-triple": 3000,
    "cube-quadruple": 5000,
    "puzzle-4x5": 3000,
    "puzzle-4x6": 5000,
}
_DATASET_TYPES = {
    "cube": ("play", "noisy"),
    "scene": ("play", "noisy"),
    "puzzle": ("play", "noisy"),
    "pointmaze": ("navigate", "stitch"),
    "antmaze": ("navigate", "stitch", "explore"),
    "humanoidmaze": ("navigate", "stitch"),
    "antsoccer": ("navigate", "stitch"),
}


class DataError(Exception):
    """A data problem the user can fix; the message says how."""


class DatasetNotFoundError(DataError):
    """The dataset files are not where the data directory says."""


class CorruptDatasetError(DataError):
    """A dataset file cannot be read, is truncated, or has inconsistent contents."""


class NonFiniteDataError(DataError):
    """A dataset field contains NaN or inf."""


class UnknownEnvironmentError(DataError):
    """The environment / dataset name is not an OGBench single-task name this project supports."""


class LocomotionGenerationError(DataError):
    """A locomotion dataset was requested from the local generator (needs expert policies)."""


# ----------------------------------------------------------------------------------------------
# Names and paths


def resolve_data_dir(data_dir: str | None = None) -> str:
    """The data directory: the argument, else $OGBENCH_DATA_DIR, else ~/.ogbench/data (expanded)."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV_VAR) or DEFAULT_DATA_DIR
    return os.path.abspath(os.path.expanduser(chosen))


def provenance_path(directory: str, dataset_name: str) -> str:
    """Where the generator and fetch_data write, and the loader looks for, the provenance JSON."""
    return os.path.join(directory, f"{dataset_name}-provenance.json")


def close_matches(name: str, candidates) -> str:
    """' Did you mean ...?' for the closest candidates, or ''."""
    best = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(b) for b in best)}?" if best else ""


@dataclass(frozen=True)
class EnvSpec:
    """A parsed single-task name, e.g. cube-double-play-singletask-task2-v0."""

    env_name: str  # the full name given
    env_id: str  # gymnasium id: cube-double-singletask-task2-v0
    dataset_name: str  # file stem: cube-double-play-v0
    domain: str  # cube-double-play
    dataset_type: str  # play
    task: int | None  # 2 (None: the environment's default task)

    @property
    def is_locomotion(self) -> bool:
        return self.env_id.split("-")[0] in LOCOMOTION_PREFIXES


def _registered_singletask_ids() -> list:
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    return sorted(k for k in gymnasium.registry if "-singletask" in k and "powderworld" not in k)


def _supported_names() -> list:
    """Every supported full name, built from the registered single-task environments."""
    names = []
    for env_id in _registered_singletask_ids():
        parts = env_id.split("-")
        pos = parts.index("singletask")
        base = parts[1] if parts[0] == "visual" else parts[0]
        for kind in _DATASET_TYPES.get(base, ()):
            names.append("-".join(parts[:pos] + [kind] + parts[pos:]))
    return names


def parse_env_name(env_name: str) -> EnvSpec:
    """Validate an OGBench single-task name `{domain}-singletask[-task{n}]-v0`.

    Raises:
      UnknownEnvironmentError: naming the expected form and the closest valid names.
    """
    parts = env_name.split("-")
    example = "cube-double-play-singletask-task2-v0"
    if "singletask" not in parts or parts.index("singletask") < 2:
        raise UnknownEnvironmentError(
            f"unknown environment {env_name!r}: expected an OGBench single-task name "
            f"'{{domain}}-singletask-task{{n}}-v0', e.g. {example!r}."
            + close_matches(env_name, _supported_names())
        )
    pos = parts.index("singletask")
    env_id = "-".join(parts[: pos - 1] + parts[pos:])
    dataset_type = parts[pos - 1]
    base = parts[1] if parts[0] == "visual" else parts[0]
    if env_id not in _registered_singletask_ids() or dataset_type not in _DATASET_TYPES.get(
        base, ()
    ):
        raise UnknownEnvironmentError(
            f"unknown environment {env_name!r} (ogbench has no environment {env_id!r} with a "
            f"{dataset_type!r} dataset); expected e.g. {example!r}."
            + close_matches(env_name, _supported_names())
        )
    match = re.fullmatch(r"task(\d+)", parts[pos + 1]) if pos + 1 < len(parts) else None
    return EnvSpec(
        env_name=env_name,
        env_id=env_id,
        dataset_name=dataset_name_of(env_name),
        domain="-".join(parts[:pos]),
        dataset_type=dataset_type,
        task=int(match.group(1)) if match else None,
    )


@dataclass(frozen=True)
class DatasetFiles:
    """Resolved files: one train/val pair, or a sorted list of training shards."""

    train: str | None = None
    val: str | None = None
    shards: tuple = ()

    @property
    def is_sharded(self) -> bool:
        return bool(self.shards)


def shard_val_path(shard: str) -> str:
    """`x-003.npz` -> `x-003-val.npz` (ogbench's convention for a dataset_path)."""
    return shard[: -len(".npz")] + "-val.npz"


def official_episodes(family: str) -> int:
    """Number of episodes of the official release of a manipulation family (e.g. `cube-triple`)."""
    return OFFICIAL_EPISODES.get(family, 1000)


def generate_command(spec: EnvSpec, data_dir: str) -> str:
    """The local-generation command for a manipulation dataset, as large as the official one."""
    family = spec.domain.rsplit("-", 1)[0]
    return (
        f"python -m experiments.make_dataset --env={spec.dataset_name} "
        f"--episodes={official_episodes(family)} --seed=0 --out={data_dir} --workers=2"
    )


def find_dataset_files(spec: EnvSpec, data_dir: str) -> DatasetFiles:
    """Locate `{dataset}.npz` + `{dataset}-val.npz`, else shards `{dataset}-NNN.npz`.

    Raises:
      DatasetNotFoundError: naming the expected paths and the two remedies.
    """
    train = os.path.join(data_dir, f"{spec.dataset_name}.npz")
    val = os.path.join(data_dir, f"{spec.dataset_name}-val.npz")
    if os.path.isfile(train) and os.path.isfile(val):
        return DatasetFiles(train=train, val=val)
    pattern = os.path.join(glob.escape(data_dir), f"{glob.escape(spec.dataset_name)}-[0-9]*.npz")
    shards = tuple(sorted(p for p in glob.glob(pattern) if not p.endswith("-val.npz")))
    if shards and not os.path.isfile(train):
        return DatasetFiles(shards=shards)

    missing = [p for p in (train, val) if not os.path.isfile(p)]
    remedies = [
        f"  1. download them: `python -m experiments.fetch_data --env={spec.dataset_name} "
        f"--dataset_dir={data_dir}` (resumable, with mirrors; docs/data.md), or on a machine with "
        f'internet access run `python -c "import ogbench; '
        f"ogbench.download_datasets(['{spec.dataset_name}'], '{data_dir}')\"` (or let ogbench "
        f"download into ~/.ogbench/data) and copy the files to {data_dir};"
    ]
    if spec.is_locomotion:
        remedies.append(
            "  2. locomotion datasets cannot be generated locally (OGBench collects them with "
            "trained expert policies); they must be downloaded."
        )
    else:
        remedies.append(
            f"  2. or generate a local substitute (labelled 'generated', not official data): "
            f"`{generate_command(spec, data_dir)}`."
        )
    raise DatasetNotFoundError(
        f"dataset for {spec.env_name!r} not found. Missing: {', '.join(missing)} (and no shards "
        f"{spec.dataset_name}-000.npz, ... in {data_dir}). The data directory comes from "
        f"config.dataset_dir, else ${DATA_DIR_ENV_VAR}, else {DEFAULT_DATA_DIR}. Fix:\n"
        + "\n".join(remedies)
    )


# ----------------------------------------------------------------------------------------------
# File validation


def required_file_keys(spec: EnvSpec) -> tuple:
    """Arrays the raw OGBench file must hold for single-task relabelling."""
    keys = ["observations", "actions", "terminals", "qpos"]
    if not spec.is_locomotion:
        keys.append("qvel")
    if spec.domain.split("-")[0] in ("scene", "puzzle"):
        keys.append("button_states")
    return tuple(keys)


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


# ----------------------------------------------------------------------------------------------
# Options (pure numpy functions of a transition dict)


def sparsify_rewards(rewards):
    """-1 until every subtask is solved, 0 at success (works on numpy and jax arrays)."""
    return -1.0 * (rewards != 0.0)


def clip_actions(actions: np.ndarray, eps: float | None) -> np.ndarray:
    """Clip to [-1 + eps, 1 - eps] (no-op for eps None)."""
    return actions if eps is None else np.clip(actions, -1.0 + eps, 1.0 - eps)


def take_proportion(data: dict, proportion: float) -> dict:
    """First int(N * proportion) transitions; the cut episode is marked ended."""
    if not 0.0 < proportion <= 1.0:
        raise ValueError(f"dataset proportion must be in (0, 1], got {proportion}")
    n = len(data["terminals"])
    keep = max(1, int(n * proportion))
    if keep == n:
        return data
    out = {k: v[:keep] for k, v in data.items()}
    out["terminals"] = out["terminals"].copy()
    out["terminals"][-1] = 1.0
    return out


def postprocess(
    data: dict, sparse: bool = False, action_clip_eps: float | None = ACTION_CLIP_EPS
) -> dict:
    """Keep the contract fields as float32 (observations keep uint8), apply sparse and clipping."""
    out = {k: np.asarray(data[k]) for k in FIELDS}
    for k in FIELDS:
        # Pixel observations stay uint8 (4x smaller on the device); everything else is float32.
        if out[k].dtype != np.uint8:
            out[k] = out[k].astype(np.float32, copy=False)
    if sparse:
        out["rewards"] = sparsify_rewards(out["rewards"]).astype(np.float32)
    out["actions"] = clip_actions(out["actions"], action_clip_eps).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# Loading


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


def load_shard(
    path: str, spec: EnvSpec, env, validate: bool = True, ob_dtype=np.float32, task_envs=None
) -> dict:
    """One shard (or any single file) -> relabelled transition dict, through ogbench's loaders.

    `ob_dtype` is the observations' dtype (`ogbench.make_env_and_datasets` reads pixel
    observations as uint8). With `task_envs` (one single-task environment per task of the
    domain) the file is read once and relabelled for each: rewards and masks become (N, T)
    tables, column t for `task_envs[t]`; otherwise `env`'s task gives (N,) labels.
    """
    from ogbench.relabel_utils import relabel_dataset
    from ogbench.utils import load_dataset

    if validate:
        check_against_env(validate_npz(path, required_file_keys(spec)), env, path)
    data = load_dataset(path, ob_dtype=ob_dtype, add_info=True)
    if task_envs is None:
        relabel_dataset(spec.env_id, env, data)
        return {k: data[k] for k in FIELDS}
    labels = []
    for task_env in task_envs:
        relabelled = dict(data)  # relabel_dataset replaces the two label arrays of its dict
        relabel_dataset(spec.env_id, task_env, relabelled)
        labels.append((relabelled["rewards"], relabelled["masks"]))
    rewards, masks = (np.stack(column, axis=1) for column in zip(*labels, strict=True))
    return {k: data[k] for k in FIELDS if k not in LABEL_FIELDS} | {
        "rewards": rewards,
        "masks": masks,
    }


def read_provenance(directory: str, dataset_name: str) -> dict | None:
    """The provenance JSON next to the files (the generator's or fetch_data's), or None."""
    path = provenance_path(directory, dataset_name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        # Its presence alone marks the data as generated; keep the label even if unreadable.
        return {"unreadable": path}


def data_source_of(record: dict | None) -> str:
    """The label of a dataset from its provenance record (`read_provenance`).

    Args:
      record: dict | None, the provenance JSON next to the files, or None.
    Returns:
      str: "official" without a record (files put there by hand or by ogbench) or with the
      record of `trqam_jax.data.fetch` (data_source "official"); "generated" for any other record,
      an unreadable one included, so that generated data is never labelled official.
    """
    return "official" if record is None or record.get("data_source") == "official" else "generated"


@dataclass
class OfflineData:
    """What the launcher needs: env, train (val when asked) transitions, provenance, shards."""

    env: object
    train: dict
    val: dict | None
    provenance: dict
    spec: EnvSpec
    shard_paths: tuple = field(default_factory=tuple)


def load_offline_data(
    env_name: str,
    data_dir: str | None = None,
    *,
    sparse: bool = False,
    action_clip_eps: float | None = ACTION_CLIP_EPS,
    proportion: float = 1.0,
    validate: bool = True,
    with_val: bool = False,
    tasks: tuple[int, ...] | None = None,
) -> OfflineData:
    """Make the environment and load its OGBench dataset (official or generated).

    Args:
      env_name: single-task name, e.g. `cube-double-play-singletask-task2-v0`.
      data_dir: data directory; default $OGBENCH_DATA_DIR, else ~/.ogbench/data. Holding
        `{dataset}.npz` + `{dataset}-val.npz`, or shards `{dataset}-000.npz`,
        `{dataset}-001.npz`, ... (each optionally with its `-val` file).
      sparse, action_clip_eps, proportion: the options in the module docstring.
      validate: read and check every file before handing it to ogbench (recommended).
      with_val: also read (and check) the validation file; training never uses it, so by default
        it is only required to exist (OGBench's layout), not read.
      tasks: the domain's tasks to label the data for (e.g. (1, 2, 3, 4, 5)): the tasks share
        every array but rewards and masks, which become (N, T) tables, column t for tasks[t].
        None: `env_name`'s own task, (N,) labels.
    Returns:
      OfflineData with `train` / `val` dicts of numpy arrays observations (N, D), actions (N, A),
      rewards (N,) or (N, T), terminals (N,), masks (N,) or (N, T), next_observations (N, D);
      `env` is the environment of `env_name` (of tasks[0] with `tasks`); for shards `train` is
      the first shard and `shard_paths` lists the (proportion-selected) shards to rotate through
      with `shards.ShardRotator`; `val` is None unless `with_val` and a validation file exists.
    Raises:
      DataError subclasses (see module docstring).
    """
    spec = parse_env_name(env_name)
    if not 0.0 < proportion <= 1.0:
        raise ValueError(f"dataset proportion must be in (0, 1], got {proportion}")
    directory = resolve_data_dir(data_dir)
    files = find_dataset_files(spec, directory)

    # The environment first (cheap: MuJoCo compiles on reset), so files can be checked against it.
    task_envs = None
    if tasks is not None:
        task_envs = [make_env(env_name_of(spec.domain, task)) for task in tasks]
    env = make_env(env_name) if task_envs is None else task_envs[0]
    load = lambda path, ob_dtype=np.float32: load_shard(
        path, spec, env, validate, ob_dtype, task_envs
    )
    if files.is_sharded:
        count = max(1, int(len(files.shards) * proportion))
        shard_paths = files.shards[:count]
        train = load(shard_paths[0])
        val_path = shard_val_path(shard_paths[0])
        val = None
        if with_val and os.path.isfile(val_path):
            val = load(val_path)
        used = list(shard_paths)
    else:
        # The arrays ogbench.make_env_and_datasets(dataset_dir=...) returns, file by file; it
        # reads pixel observations as uint8.
        shard_paths = ()
        ob_dtype = np.uint8 if "visual" in spec.env_id else np.float32
        train = take_proportion(load(files.train, ob_dtype), proportion)
        val = load(files.val, ob_dtype) if with_val else None
        used = [files.train, files.val] if with_val else [files.train]

    train = postprocess(train, sparse, action_clip_eps)
    val = None if val is None else postprocess(val, sparse, action_clip_eps)
    record = read_provenance(directory, spec.dataset_name)
    label = data_source_of(record)
    provenance = {
        "data_source": label,
        "dataset_dir": directory,
        "dataset_name": spec.dataset_name,
        "env_name": env_name,
        **({} if tasks is None else {"tasks": list(tasks)}),
        "files": [os.path.basename(p) for p in used],
        "num_shards": len(shard_paths),
        "train_transitions": int(len(train["rewards"])),
        "val_transitions": None if val is None else int(len(val["rewards"])),
        "sparse": bool(sparse),
        "action_clip_eps": action_clip_eps,
        "proportion": proportion,
        # The generator's record (generated data) or fetch_data's (official data), else None.
        "generator": record if label == "generated" else None,
        "download": record if label == "official" else None,
    }
    return OfflineData(env, train, val, provenance, spec, tuple(shard_paths))
