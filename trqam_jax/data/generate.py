"""Local generation of OGBench manipulation datasets with OGBench's packaged scripted oracles.

This mirrors OGBench's `data_gen_scripts/generate_manipspace.py` (facts carried over: play datasets
use the plan oracles with smoothed noise 0.1 / smoothing 0.5; noisy datasets use the markov oracles
with min_norm 0.4, per-episode Gaussian noise scale xi ~ U[0, 0.1] on (x, y, z, yaw, gripper) scaled
by (1, 1, 1, 3, 10), and random actions with probability 0.1 (cube, scene) or 0.2 (puzzle); episodes
of 1001 steps; the cube stacking probability per episode; the scene health check) and writes the
same npz layout, so `ogbench.make_env_and_datasets(dataset_dir=...)` loads the result unchanged.

Differences from the official generator, on purpose:
  - every episode is seeded on its own (`numpy` global RNG and `env.reset(seed=...)`) from
    (seed, shard, episode index, retry), so the output is bit-for-bit the same for any `workers`;
  - the validation split has max(1, episodes // 10) episodes (official: episodes // 10), because an
    empty validation file cannot be loaded;
  - npz members are written with a fixed timestamp so identical data gives identical files.
Generated data is never official data: a `{dataset_name}-provenance.json` is written next to the
npz files and the loader labels such datasets `data_source = "generated"`.
"""

import hashlib
import json
import multiprocessing
import os
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

from trqam_jax.data.datasets import close_matches, official_episodes
from trqam_jax.data.errors import LocomotionGenerationError, UnknownEnvironmentError
from trqam_jax.data.names import LOCOMOTION_PREFIXES, dataset_name_of
from trqam_jax.data.provenance import provenance_path
from trqam_jax.envs import ignore_box_precision_warnings
from trqam_jax.seeds import hash_seed
from trqam_jax.versions import versions

MANIPULATION_FAMILIES = (
    "cube-single",
    "cube-double",
    "cube-triple",
    "cube-quadruple",
    "cube-octuple",
    "scene",
    "puzzle-3x3",
    "puzzle-4x4",
    "puzzle-4x5",
    "puzzle-4x6",
)
GENERATOR_VERSION = "trqam_jax.data.generate/1"


@dataclass(frozen=True)
class GenerationSpec:
    """What to run for one dataset name (all numbers from OGBench's generator)."""

    dataset_name: str
    env_id: str
    family: str
    dataset_type: str  # "play" (plan oracles) or "noisy" (markov oracles)
    noise: float = 0.1
    noise_smoothing: float = 0.5
    min_norm: float = 0.4
    p_random_action: float = 0.0
    max_episode_steps: int = 1001


def generation_spec(name: str, max_episode_steps: int = 1001) -> GenerationSpec:
    """Validate a dataset name (or single-task env name) and return its GenerationSpec.

    Raises:
      LocomotionGenerationError: for antmaze / humanoidmaze / pointmaze / antsoccer.
      UnknownEnvironmentError: for anything that is not a manipulation play / noisy dataset.
    """
    dataset_name = dataset_name_of(name)
    parts = dataset_name.split("-")
    if parts[0] in LOCOMOTION_PREFIXES:
        raise LocomotionGenerationError(
            f"{dataset_name!r} is a locomotion dataset: OGBench collects it with trained expert "
            "policies (SAC checkpoints) that are not packaged with ogbench, so it cannot be "
            "generated here. Download it on a machine with internet access, e.g. "
            f"`python -c \"import ogbench; ogbench.download_datasets(['{dataset_name}'], "
            "'~/.ogbench/data')\"`, and copy the .npz files into OGBENCH_DATA_DIR."
        )
    valid = [f"{f}-{t}-v0" for f in MANIPULATION_FAMILIES for t in ("play", "noisy")]
    if dataset_name not in valid:
        hint = close_matches(dataset_name, valid)
        raise UnknownEnvironmentError(
            f"cannot generate {dataset_name!r}: the generator supports the state-based "
            f"manipulation datasets {{cube-*, scene, puzzle-*}}-{{play,noisy}}-v0.{hint}"
        )
    family, dataset_type = "-".join(parts[:-2]), parts[-2]
    p_random = 0.0
    if dataset_type == "noisy":
        p_random = 0.2 if family.startswith("puzzle") else 0.1
    return GenerationSpec(
        dataset_name=dataset_name,
        env_id=f"{family}-v0",
        family=family,
        dataset_type=dataset_type,
        p_random_action=p_random,
        max_episode_steps=max_episode_steps,
    )


def episode_seed(seed: int, shard: int, index: int, attempt: int = 0) -> int:
    """Independent 32-bit seed of one episode attempt (order- and worker-count-free)."""
    return hash_seed(seed, shard, index, attempt)


def make_collection_env(spec: GenerationSpec):
    """The data-collection environment and its oracles, as OGBench's generator builds them."""
    import gymnasium
    import ogbench.manipspace  # noqa: F401  (registers the environments)
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    ignore_box_precision_warnings()
    env = gymnasium.make(
        spec.env_id,
        terminate_at_goal=False,
        mode="data_collection",
        max_episode_steps=spec.max_episode_steps,
    )
    plan = dict(noise=spec.noise, noise_smoothing=spec.noise_smoothing)
    markov = dict(min_norm=spec.min_norm)
    if spec.family.startswith("cube"):
        if spec.dataset_type == "play":
            agents = {"cube": CubePlanOracle(env=env, **plan)}
        else:
            agents = {"cube": CubeMarkovOracle(env=env, **markov)}
    elif spec.family == "scene":
        if spec.dataset_type == "play":
            agents = {
                "cube": CubePlanOracle(env=env, **plan),
                "button": ButtonPlanOracle(env=env, **plan),
                "drawer": DrawerPlanOracle(env=env, **plan),
                "window": WindowPlanOracle(env=env, **plan),
            }
        else:
            agents = {
                "cube": CubeMarkovOracle(env=env, max_step=100, **markov),
                "button": ButtonMarkovOracle(env=env, **markov),
                "drawer": DrawerMarkovOracle(env=env, **markov),
                "window": WindowMarkovOracle(env=env, **markov),
            }
    else:  # puzzle
        if spec.dataset_type == "play":
            agents = {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **plan)}
        else:
            agents = {"button": ButtonMarkovOracle(env=env, gripper_always_closed=True, **markov)}
    return env, agents


def stack_probability(family: str) -> float:
    """Per-episode cube stacking probability, drawn from the global numpy RNG as OGBench does."""
    if "single" in family:
        return 0.0
    ranges = {"double": (0.0, 0.25), "triple": (0.05, 0.35), "quadruple": (0.1, 0.5)}
    ranges["octuple"] = (0.0, 0.35)
    for word, (low, high) in ranges.items():
        if word in family:
            return float(np.random.uniform(low, high))
    return 0.5


def scene_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene check: the cube stays visible unless it is inside the drawer."""
    xyz = qpos[:, 14:17]
    if (xyz[:, 1] >= 0.29).any():
        return False
    left = xyz[:, 1] <= -0.3
    return not (left & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()


def run_episode(env, agents, spec: GenerationSpec, seed: int) -> dict:
    """Roll out one episode from a fixed seed; returns per-step lists as numpy arrays."""
    np.random.seed(seed)
    ob, info = env.reset(seed=seed)
    p_stack = stack_probability(spec.family)
    xi = np.random.uniform(0, spec.noise) if spec.dataset_type == "noisy" else 0.0
    agent = agents[info["privileged/target_task"]]
    agent.reset(ob, info)
    has_buttons = hasattr(env.unwrapped, "_cur_button_states")
    steps = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
    if has_buttons:
        steps["button_states"] = []
    done = False
    while not done:
        if np.random.rand() < spec.p_random_action:
            action = env.action_space.sample()
        else:
            action = np.array(agent.select_action(ob, info))
            if spec.dataset_type == "noisy":
                scale = [xi, xi, xi, xi * 3, xi * 10]
                action = action + np.random.normal(0, scale, action.shape)
        action = np.clip(action, -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if agent.done:
            agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
            agent = agents[agent_info["privileged/target_task"]]
            agent.reset(agent_ob, agent_info)
        steps["observations"].append(ob)
        steps["actions"].append(action)
        steps["terminals"].append(done)
        steps["qpos"].append(info["prev_qpos"])
        steps["qvel"].append(info["prev_qvel"])
        if has_buttons:
            steps["button_states"].append(info["prev_button_states"])
        ob = next_ob
    return {k: np.asarray(v) for k, v in steps.items()}


def generate_episode(env, agents, spec: GenerationSpec, seed: int, shard: int, index: int):
    """One accepted episode (scene episodes failing the health check are retried, reseeded)."""
    attempt = 0
    while True:
        episode = run_episode(env, agents, spec, episode_seed(seed, shard, index, attempt))
        if spec.family != "scene" or scene_is_healthy(episode["qpos"]):
            return episode
        attempt += 1


# Per-process cache so each worker builds its environment once.
_WORKER: dict = {}


def _worker_init(spec: GenerationSpec) -> None:
    _WORKER["spec"] = spec
    _WORKER["env"], _WORKER["agents"] = make_collection_env(spec)


def _worker_episode(job):
    seed, shard, index = job
    return generate_episode(_WORKER["env"], _WORKER["agents"], _WORKER["spec"], seed, shard, index)


def file_dtype(key: str, value: np.ndarray):
    """The dtypes OGBench's generator stores."""
    if key == "terminals":
        return bool
    if key == "button_states":
        return np.int64
    if key == "observations" and value.dtype == np.uint8:
        return np.uint8
    return np.float32


def concat_episodes(episodes: list) -> dict:
    """Concatenate episodes into the flat OGBench file layout."""
    return {
        k: np.concatenate([ep[k] for ep in episodes]).astype(file_dtype(k, episodes[0][k]))
        for k in episodes[0]
    }


def write_npz(path: str, arrays: dict) -> str:
    """Write an npz (deflate-compressed, fixed timestamps) atomically; returns its sha256."""
    tmp = f"{path}.tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    os.replace(tmp, path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _episode_stream(spec, jobs, workers):
    """Episodes in job order, from this process or from a pool of `workers` processes."""
    if workers <= 1:
        env, agents = make_collection_env(spec)
        for seed, shard, index in jobs:
            yield generate_episode(env, agents, spec, seed, shard, index)
        env.close()
        return
    # "spawn": the parent may have JAX (threads) loaded, which does not survive fork().
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(spec,)) as pool:
        yield from pool.imap(_worker_episode, jobs, chunksize=1)


def generate_dataset(
    name: str,
    episodes: int,
    seed: int,
    out_dir: str,
    workers: int = 1,
    max_episode_steps: int = 1001,
    val_episodes: int | None = None,
    shards: int | None = None,
    progress: bool = True,
) -> dict:
    """Generate a manipulation dataset with OGBench's scripted oracles and write it to `out_dir`.

    Args:
      name: dataset name (`cube-single-play-v0`) or single-task env name.
      episodes: training episodes (per shard when `shards` is given).
      seed: base seed; the output depends only on (name, episodes, seed, steps, val, shards).
      out_dir: output directory (created).
      workers: processes used for the rollouts.
      max_episode_steps: episode length limit (OGBench: 1001, giving 1000 transitions).
      val_episodes: validation episodes; default max(1, episodes // 10).
      shards: None writes `{name}.npz` + `{name}-val.npz`; K writes `{name}-000.npz` ... and
        `{name}-000-val.npz` ..., the layout of OGBench's large (100M) releases.
      progress: show a tqdm bar.
    Returns:
      the provenance dict, also written to `{out_dir}/{name}-provenance.json`.
    """
    from tqdm import tqdm

    spec = generation_spec(name, max_episode_steps)
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if max_episode_steps < 2:
        raise ValueError(f"--max-episode-steps must be >= 2, got {max_episode_steps}")
    val_episodes = max(1, episodes // 10) if val_episodes is None else val_episodes
    if val_episodes < 1:
        raise ValueError("at least one validation episode is needed (ogbench loads -val.npz)")
    os.makedirs(out_dir, exist_ok=True)
    shard_ids = [None] if shards is None else list(range(shards))
    per_shard = episodes + val_episodes
    jobs = [(seed, s or 0, i) for s in shard_ids for i in range(per_shard)]

    rng_state = np.random.get_state()  # the oracles use the global RNG; leave the caller's alone
    files = []
    try:
        stream = _episode_stream(spec, jobs, workers)
        bar = tqdm(total=len(jobs), desc=spec.dataset_name, unit="ep", disable=not progress)
        for shard in shard_ids:
            collected = []
            for _ in range(per_shard):
                collected.append(next(stream))
                bar.update(1)
            stem = spec.dataset_name if shard is None else f"{spec.dataset_name}-{shard:03d}"
            for suffix, part in (("", collected[:episodes]), ("-val", collected[episodes:])):
                arrays = concat_episodes(part)
                path = os.path.join(out_dir, f"{stem}{suffix}.npz")
                digest = write_npz(path, arrays)
                files.append(
                    {
                        "file": os.path.basename(path),
                        "sha256": digest,
                        "episodes": len(part),
                        "rows": int(len(arrays["terminals"])),
                    }
                )
        bar.close()
        stream.close()
    finally:
        np.random.set_state(rng_state)

    provenance = {
        "data_source": "generated",
        "generator": GENERATOR_VERSION,
        "method": "OGBench packaged scripted oracles ("
        + ("plan oracles, smoothed noise" if spec.dataset_type == "play" else "markov oracles")
        + ")",
        "dataset_name": spec.dataset_name,
        "seed": seed,
        "episodes": episodes,
        "val_episodes": val_episodes,
        "shards": shards,
        "official_episodes": official_episodes(spec.family),
        "spec": asdict(spec),
        "versions": versions(),
        "files": files,
    }
    with open(provenance_path(out_dir, spec.dataset_name), "w") as f:
        json.dump(provenance, f, indent=2, sort_keys=True)
    return provenance
