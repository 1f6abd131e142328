"""The suite's launcher part: the launcher's stages as `experiment.run` builds them, timed.

TRQAM on a synthetic dataset of cube-double's shapes written in OGBench's file format, 64 rows,
no evaluation: `experiment.prepare`, then the BC stage and the fine-tuning stage from
`experiment.initial_states` / `experiment.offline_stage`, each run by `loop.run_stage` (logging,
health checks and its final checkpoint) and timed from outside: its wall time, its first call
(compilation included; the stage's compiled call is wrapped), one call of its compiled program
timed alone afterwards, and one checkpoint save of its final states timed alone. From these:
each stage's time outside compiled calls, and the hours the paper's sweep would take on this
device at that rate (`PAPER_SWEEP`: rows x (BC + fine-tuning) steps).
"""

import os
import tempfile
import time

import jax
import numpy as np

from benchmarks import presets, update_speed
from benchmarks.budget import Budget
from benchmarks.common import checkpoint_save_s
from configs import trqam as trqam_config
from trqam_jax import experiment, loop, train
from trqam_jax.agents import bc
from trqam_jax.data import generate, names
from trqam_jax.data.provenance import provenance_path
from trqam_jax.envs import make_env

LAUNCHER_DOMAIN = "cube-double-play"
LAUNCHER_ENV = names.env_name(LAUNCHER_DOMAIN, 1)
# The paper's sweep, for the launcher's projection: every method x domain x task x seed is one
# row of BC pretraining and fine-tuning (the projection prices every method at TRQAM's cost).
PAPER_SWEEP = dict(
    domains=10, tasks=5, seeds=8, methods=7, bc_steps=300_000, offline_steps=1_000_000
)
# Planning the launcher's steps from the update part's rate: BC updates are priced at this share
# of a fine-tuning update (BC is one flow-matching loss, a small part of TRQAM's work), and this
# many seconds are kept for data, initialisation and checkpoints.
BC_COST_SHARE = 0.25
LAUNCHER_FIXED_S = 45.0
LAUNCHER_OFFLINE_CHOICES = (5000, 4000, 3000, 2000, 1000)


def write_synthetic_dataset(out_dir: str, env_name: str, episodes: int, length: int) -> dict:
    """Random arrays of `env_name`'s shapes in OGBench's file layout (train and -val files).

    Observations, actions, `qpos` and `qvel` (what OGBench relabels rewards from) are random;
    the provenance file beside them labels the data generated, never official. Returns the
    shapes written.
    """
    env = make_env(env_name)
    model = env.unwrapped.model
    shapes = {
        "observations": env.observation_space.shape,
        "actions": env.action_space.shape,
        "qpos": (model.nq,),
        "qvel": (model.nv,),
    }
    env.close()
    rng = np.random.default_rng(0)
    dataset = names.dataset_name_of(env_name)
    os.makedirs(out_dir, exist_ok=True)
    for suffix, count in (("", episodes), ("-val", 1)):
        rows = count * length
        arrays = {
            name: rng.standard_normal((rows, *shape)).astype(np.float32)
            for name, shape in shapes.items()
        }
        arrays["actions"] = np.clip(arrays["actions"], -1.0, 1.0)
        arrays["terminals"] = np.arange(rows) % length == length - 1
        generate.write_npz(os.path.join(out_dir, f"{dataset}{suffix}.npz"), arrays)
    with open(provenance_path(out_dir, dataset), "w") as f:
        f.write('{"data_source": "generated", "method": "benchmarks.suite: random arrays"}\n')
    return {name: list(shape) for name, shape in shapes.items()}


def launcher_config(opts, data_dir: str, run_dir: str, bc_steps: int, offline_steps: int):
    """TRQAM on cube-double at the suite's size: no evaluation, a checkpoint at each stage's end."""
    config = trqam_config.get_config(LAUNCHER_DOMAIN)
    config.agent.update(presets.PRESET_OVERRIDES[opts.size])
    spc = opts.launcher_steps_per_call
    never = spc * 10**9  # a multiple of steps_per_call beyond any stage: only the end counts
    config.update(
        dataset_dir=data_dir,
        run_dir=run_dir,
        seeds=opts.launcher_rows,
        bc_steps=bc_steps,
        offline_steps=offline_steps,
        steps_per_call=spc,
        log_interval=spc,  # a metrics record after every call: the worst case
        eval_interval=never,
        save_interval=never,
        eval_episodes=0,
    )
    return config


def plan_launcher_steps(budget: Budget, opts, update: dict | None) -> tuple[int, int, str]:
    """(bc_steps, offline_steps, how they were chosen): the flags', or the most that fit."""
    spc = opts.launcher_steps_per_call
    if opts.launcher_offline_steps:
        bc_steps = opts.launcher_bc_steps
        return bc_steps, opts.launcher_offline_steps, "flags"
    rows = [
        r
        for r in (update or {}).get("rows", [])
        if r["compute_dtype"] == "float32" and r["seeds"] <= opts.launcher_rows
    ]
    if not rows:
        return 1000, 2000, "default (no float32 update row to plan from)"
    nearest = max(rows, key=lambda r: r["seeds"])
    # Scaling a smaller S up linearly overestimates (aggregate rates grow with S): safe.
    per_update_s = nearest["ms_per_update"] / 1e3 * opts.launcher_rows / nearest["seeds"]
    fixed_s = LAUNCHER_FIXED_S + 2 * nearest["compile_s"]
    fits = False
    for offline in (*LAUNCHER_OFFLINE_CHOICES, 2 * spc):
        offline = max(2 * spc, offline // spc * spc)
        bc_steps = max(2 * spc, offline // 2 // spc * spc)
        # Both stages, plus two calls of each timed alone afterwards.
        updates = offline + 2 * spc + BC_COST_SHARE * (bc_steps + 2 * spc)
        fits = fixed_s + updates * per_update_s < budget.left()
        if fits:
            break
    how = (
        f"planned from the update part's S = {nearest['seeds']} float32 rate "
        f"({per_update_s * 1e3:.1f} ms per update at {opts.launcher_rows} rows)"
        + ("" if fits else "; the fewest steps, and even they overrun the budget")
    )
    return bc_steps, offline, how


def stage_report(timings: dict, steps: int, spc: int, rows: int) -> dict:
    """One stage's seconds in and outside compiled calls, and its steady seconds per row-step,
    from its `timed_stage` seconds."""
    calls = steps // spc
    stage_s, first_s, call_s = timings["stage_s"], timings["first_call_s"], timings["call_s"]
    checkpoint_s = timings["checkpoint_s"]
    compiled_s = (calls - 1) * call_s
    steady_s = stage_s - first_s
    # As update_speed counts it: the stage's checkpoint saves are reported, not in the share.
    outside_s = steady_s - checkpoint_s - compiled_s
    return {
        "steps": steps,
        "calls": calls,
        "stage_s": round(stage_s, 2),
        "first_call_s": round(first_s, 2),
        "call_s": round(call_s, 4),
        "compiled_s": round(compiled_s, 2),
        "outside_compiled_s": round(outside_s, 2),
        "outside_compiled_share": round(max(outside_s, 0.0) / (steady_s - checkpoint_s), 4),
        "checkpoint_s": round(checkpoint_s, 2),
        # End to end after the first call: logging, health checks and the final save included.
        "s_per_row_step": steady_s / ((steps - spc) * rows),
    }


def paper_projection(stages: dict) -> dict:
    """Hours of the paper's sweep on this device at the launcher's measured rates."""
    sweep = PAPER_SWEEP
    rows = sweep["domains"] * sweep["tasks"] * sweep["seeds"] * sweep["methods"]
    bc_s = rows * sweep["bc_steps"] * stages["bc"]["s_per_row_step"]
    offline_s = rows * sweep["offline_steps"] * stages["offline"]["s_per_row_step"]
    # BC is the same for every method: with one BC run per domain, task and seed shared by all
    # methods (--config.init_from), it is paid once, not once per method.
    return {
        "sweep": sweep,
        "rows": rows,
        "hours": round((bc_s + offline_s) / 3600, 1),
        "hours_bc_shared_across_methods": round((bc_s / sweep["methods"] + offline_s) / 3600, 1),
        "assumes": (
            "rows run in programs of the measured row count one after another, at the measured "
            "seconds per row-step after the first call (compile excluded, logging and the final "
            "checkpoint included); every method at TRQAM's cost; no evaluation"
        ),
    }


def launcher_part(budget: Budget, opts, update: dict | None) -> dict:
    """The launcher's two stages, timed; see the module docstring."""
    bc_steps, offline_steps, how = plan_launcher_steps(budget, opts, update)
    spc, rows = opts.launcher_steps_per_call, opts.launcher_rows
    if min(bc_steps, offline_steps) < 2 * spc or (bc_steps % spc) or (offline_steps % spc):
        raise ValueError(
            f"launcher steps bc {bc_steps}, offline {offline_steps}: each must be a multiple of "
            f"--launcher_steps_per_call={spc} and at least two calls"
        )
    with tempfile.TemporaryDirectory() as work:
        data_dir = os.path.join(work, "data")
        shapes = write_synthetic_dataset(
            data_dir, LAUNCHER_ENV, opts.launcher_episodes, opts.launcher_episode_length
        )
        config = launcher_config(opts, data_dir, os.path.join(work, "run"), bc_steps, offline_steps)
        print(f"[launcher] {rows} rows, BC {bc_steps} + fine-tuning {offline_steps} steps ({how})")
        start = time.perf_counter()
        prepared = experiment.prepare(config)
        prepare_s = time.perf_counter() - start
        os.makedirs(prepared.out)
        stage = experiment.offline_stage(prepared, "bc", bc)
        states = experiment.initial_states(prepared, bc)
        states, bc_timings = timed_stage(prepared, stage, states, bc_steps)
        states = experiment.initial_states(prepared, base=states.params["base"])
        stage = experiment.offline_stage(prepared)
        _, offline_timings = timed_stage(prepared, stage, states, offline_steps)
        wall_s = time.perf_counter() - start
    stages = {
        "bc": stage_report(bc_timings, bc_steps, spc, rows),
        "offline": stage_report(offline_timings, offline_steps, spc, rows),
    }
    return {
        "settings": {
            "size": opts.size,
            "domain": LAUNCHER_DOMAIN,
            "shapes": shapes,
            "dataset_transitions": opts.launcher_episodes * opts.launcher_episode_length,
            "rows": rows,
            "steps_per_call": spc,
            "steps_chosen_by": how,
        },
        "wall_s": round(wall_s, 2),
        "prepare_s": round(prepare_s, 2),
        "stages": stages,
        "projection": paper_projection(stages),
    }


def timed_stage(prepared, stage, states, steps: int) -> tuple[object, dict]:
    """Run `stage` for `steps` steps as the launcher does (`loop.run_stage`), timed from
    outside. Returns (its final states, seconds {"stage_s": the whole `run_stage`,
    "first_call_s": its first compiled call, compilation included, "call_s": one call of the
    same program timed alone afterwards, "checkpoint_s": one save of its final states timed
    alone}).
    """
    compiled, seconds = stage.call, {}

    def first_timed(*args):
        if "first_call_s" in seconds:
            return compiled(*args)
        start = time.perf_counter()
        result = jax.block_until_ready(compiled(*args))  # run_stage waits for it too
        seconds["first_call_s"] = time.perf_counter() - start
        return result

    stage.call = first_timed
    start = time.perf_counter()
    states, _ = loop.run_stage(stage, states, steps, prepared.config, prepared.out, prepared.rows)
    seconds["stage_s"] = time.perf_counter() - start
    seconds["checkpoint_s"] = checkpoint_save_s(states, steps)
    calls = steps // stage.stride
    keys = [train.call_keys(stage.key, stage.seeds, calls + i) for i in range(2)]
    data = prepared.source.current
    seconds["call_s"], _ = update_speed.time_calls(compiled, states, *data, keys, stage.tasks)
    return states, seconds


def launcher_table(part: dict, _parts: dict) -> list[str]:
    s = part["settings"]
    shapes = ", ".join(f"{name} {size}" for name, (size,) in s["shapes"].items())
    lines = [
        f"The launcher's stages, {s['rows']} rows, {s['domain']} shapes ({shapes}), preset "
        f"{s['size']}, {s['steps_per_call']} steps per call (steps {s['steps_chosen_by']}); "
        f"wall time {part['wall_s']:.1f} s ({part['prepare_s']:.1f} s in `experiment.prepare`).",
        "",
        "| stage | steps | stage s | first call s | one call s | outside compiled s | outside "
        "share | checkpoint s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in part["stages"].items():
        lines.append(
            f"| {name} | {r['steps']} | {r['stage_s']:.1f} | {r['first_call_s']:.1f} | "
            f"{r['call_s']:.3f} | {r['outside_compiled_s']:.2f} | "
            f"{r['outside_compiled_share']:.1%} | {r['checkpoint_s']:.1f} |"
        )
    p = part["projection"]
    return lines + [
        "",
        f"Paper sweep ({p['rows']} rows x ({p['sweep']['bc_steps']:,} BC + "
        f"{p['sweep']['offline_steps']:,} fine-tuning steps)) on this device: "
        f"**{p['hours']:,} hours**, {p['hours_bc_shared_across_methods']:,} with BC shared "
        f"across methods ({p['assumes']}).",
    ]
