"""OGBench single-task datasets: names, location and loading.

Loading goes through OGBench's own loaders (`ogbench.load_dataset` +
`ogbench.relabel_utils.relabel_dataset` per file, what `ogbench.make_env_and_datasets` does for a
train / val pair), so rewards and masks are OGBench's task relabelling: for manipulation, with k
subtasks (cubes / buttons / drawer / window) the reward of row t is (number solved in s_t) - k and
the mask is 0 exactly when all k are solved (success), computed from the row's own state `s_t`.

The paper's options (sparse rewards, action clipping, a proportion of the data) are
`trqam_jax.data.options`; the file checks `trqam_jax.data.file_checks`; the provenance record
`trqam_jax.data.provenance`. Every problem the user can fix raises a `DataError` subclass
(`trqam_jax.data.errors`) whose message names the paths / fields and the fix; launchers should
print it and exit non-zero.
"""

import difflib
import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np

from trqam_jax.data.errors import DatasetNotFoundError, UnknownEnvironmentError
from trqam_jax.data.file_checks import check_against_env, validate_npz
from trqam_jax.data.names import LABEL_FIELDS, LOCOMOTION_PREFIXES, dataset_name_of
from trqam_jax.data.names import env_name as env_name_of
from trqam_jax.data.options import ACTION_CLIP_EPS, FIELDS, postprocess, take_proportion
from trqam_jax.data.provenance import data_source_of, read_provenance
from trqam_jax.envs import make_env

DATA_DIR_ENV_VAR = "OGBENCH_DATA_DIR"
DEFAULT_DATA_DIR = "~/.ogbench/data"
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


# ----------------------------------------------------------------------------------------------
# Names and paths


def resolve_data_dir(data_dir: str | None = None) -> str:
    """The data directory: the argument, else $OGBENCH_DATA_DIR, else ~/.ogbench/data (expanded)."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV_VAR) or DEFAULT_DATA_DIR
    return os.path.abspath(os.path.expanduser(chosen))


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


# ----------------------------------------------------------------------------------------------
# Loading


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
      sparse, action_clip_eps, proportion: the options of `trqam_jax.data.options`.
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
