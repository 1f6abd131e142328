"""Every benchmark in one command, each part bounded in time: one JSON and one markdown table.

    python -m benchmarks.suite             # sized for one H100 / H200: under 8 minutes
    python -m benchmarks.suite --quick     # the same code paths at tiny sizes (minutes on a CPU)
    bash benchmarks/device_run.sh          # on the lent accelerator machine (docs/benchmarks.md)

Parts (`--parts`), each with its own time budget: before every point of a part's grid the suite
predicts the point's seconds from the one before, and skips it, with the reason recorded, when
it would overrun the budget; a point that fails (out of memory at a large S, say) is recorded
and the part goes on; a part that fails as a whole is recorded and the next part runs.
- update: the launcher's compiled program (`update_speed.measure`: S rows vmapped, a `lax.scan`
  of `steps_per_call` updates, batches drawn on the device) at the paper preset for S in
  1, 8, 32, 64, 128, then doubling until out of memory or out of budget, float32 and
  compute_dtype=bfloat16 interleaved: ms per call, updates/s per row and in aggregate, true
  GFLOP per update (XLA's count of the unrolled update), utilisation of the device's peak,
  compile seconds.
- baseline: the reference codes' shape, one row and one update per Python call, with a batch
  sampled on the host (CPU) and fed to the device every step, `jax.jit` of a single update;
  `ratio_vs_baseline` divides each update row's aggregate rate by it (S processes of one row
  time-share one device, so together they go no faster than one of them).
- launcher: `trqam_jax.experiment.run` end to end (BC stage, then TRQAM fine-tuning) on a
  synthetic dataset of cube-double's shapes written in OGBench's file format, 64 rows: wall time,
  each stage's time outside compiled calls (its wall time less its first call, compilation
  included, its checkpoint saves and its other calls timed alone), and the hours the paper's
  sweep would take on this device at that rate (`PAPER_SWEEP`: rows x (BC + fine-tuning) steps).
- eval: `eval_speed.run_one`, batched evaluation env-steps/s against one episode at a time.
Results go to `--out_dir` (default benchmarks/results) as suite_<device>.json / .md
(suite_quick_<device>.* with --quick), rewritten after every part, so a run stopped by a time
limit keeps the parts it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TQDM_DISABLE", "1")  # run_stage's progress bars would fill the log

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import eval_speed, presets, update_speed
from benchmarks.common import RESULTS_DIR, device_info, device_label, write_result
from configs import trqam as trqam_config
from trqam_jax import experiment, memory, train
from trqam_jax.agents import bc, trqam
from trqam_jax.data import generate, names
from trqam_jax.data.provenance import provenance_path
from trqam_jax.data.sampler import sample_chunks
from trqam_jax.envs import make_env

PARTS = ("update", "baseline", "launcher", "eval")
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

# Settings of the full suite (one H100 / H200, under 8 minutes in all) and of --quick.
FULL = dict(
    size="paper",
    seeds="1,8,32,64,128",
    max_seeds=4096,
    dtypes="float32,bfloat16",
    steps_per_call=10,
    calls=3,
    baseline_steps=300,
    launcher_rows=64,
    launcher_bc_steps=0,
    launcher_offline_steps=0,
    launcher_steps_per_call=250,
    launcher_episodes=10,
    launcher_episode_length=1000,
    eval_envs=eval_speed.DEFAULT_ENVS,
    eval_seeds=4,
    eval_episodes=2,
    eval_workers=4,
    eval_max_episode_steps=0,
    budget_update=240.0,
    budget_baseline=20.0,
    budget_launcher=130.0,
    budget_eval=50.0,
)
QUICK = dict(
    FULL,
    size="tiny",
    seeds="1",
    max_seeds=2,
    steps_per_call=2,
    calls=1,
    baseline_steps=4,
    launcher_rows=2,
    launcher_bc_steps=4,
    launcher_offline_steps=4,
    launcher_steps_per_call=2,
    launcher_episodes=2,
    launcher_episode_length=50,
    eval_envs="cube-double-play-singletask-task1-v0",
    eval_seeds=1,
    eval_episodes=2,
    eval_workers=1,
    eval_max_episode_steps=10,
    budget_update=120.0,
    budget_baseline=60.0,
    budget_launcher=120.0,
    budget_eval=90.0,
)
# --quick compiles with XLA's backend optimisation off (30 -> 9 CPU seconds for the tiny TRQAM
# program): its numbers are no benchmark, only the code paths are exercised.
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0"


class Budget:
    """A part's time budget in seconds, counted from its creation."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def refuses(self, estimate_s: float) -> str | None:
        """Why a point of about `estimate_s` seconds must be skipped, or None if it fits."""
        if estimate_s < self.left():
            return None
        return (
            f"budget: {max(self.left(), 0.0):.0f} s left of {self.seconds:.0f} s, the point "
            f"would take about {estimate_s:.0f} s"
        )


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip()[:600]}"


def out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


# ----------------------------------------------------------------------------------------------
# update: the compiled program of S rows


def grid_points(seeds: list[int], max_seeds: int) -> list[int]:
    """The S grid, then doubling from its largest value up to `max_seeds` (included)."""
    points = sorted(set(seeds))
    while points[-1] * 2 <= max_seeds:
        points.append(points[-1] * 2)
    return points


def point_estimate(last: dict | None, seeds: int, calls: int) -> float:
    """Seconds a point at S = `seeds` should take, from the last point measured (None: 0).

    Compilation and setup stay about constant in S; the timed calls grow at most linearly.
    """
    if last is None:
        return 0.0
    run_s = (calls + 1) * last["ms_per_call"] / 1e3
    return last["point_s"] - run_s + run_s * max(1.0, seeds / last["seeds"])


def update_part(budget: Budget, opts) -> dict:
    """The update grid; see the module docstring."""
    seeds = [int(s) for s in opts.seeds.split(",")]
    dtypes = opts.dtypes.split(",")
    base = set(seeds)
    rows, skipped, errors = [], [], []
    last, stopped = {}, {}
    for num_seeds in grid_points(seeds, opts.max_seeds):
        for dtype in dtypes:
            if dtype in stopped:
                continue
            # The other dtype's last point predicts this dtype's first one.
            previous = last.get(dtype) or next(iter(last.values()), None)
            reason = budget.refuses(point_estimate(previous, num_seeds, opts.calls))
            if reason:
                skipped.append({"seeds": num_seeds, "compute_dtype": dtype, "reason": reason})
                if num_seeds not in base:
                    stopped[dtype] = "budget"
                continue
            print(f"[update] S = {num_seeds}, {dtype} ...", flush=True)
            start = time.perf_counter()
            try:
                row = update_speed.measure(
                    opts.size, num_seeds, opts.steps_per_call, opts.calls, dtype, loop_share=False
                )
            except Exception as err:  # recorded; the grid goes on
                errors.append(
                    {
                        "seeds": num_seeds,
                        "compute_dtype": dtype,
                        "out_of_memory": out_of_memory(err),
                        "error": describe(err),
                    }
                )
                print(f"[update] S = {num_seeds}, {dtype} failed: {describe(err)}", flush=True)
                if out_of_memory(err):
                    stopped[dtype] = "out of memory"
                continue
            finally:
                gc.collect()
            row["point_s"] = round(time.perf_counter() - start, 2)
            rows.append(row)
            last[dtype] = row
            update_speed.print_table([row])
    largest = {
        dtype: {
            "seeds": last[dtype]["seeds"] if dtype in last else None,
            # "out of memory": the next doubling did not fit; "budget": it was not tried.
            "limited_by": stopped.get(dtype, "grid"),
        }
        for dtype in dtypes
    }
    return {
        "settings": {
            "size": opts.size,
            "steps_per_call": opts.steps_per_call,
            "timed_calls": opts.calls,
            "grid": grid_points(seeds, opts.max_seeds),
        },
        "peak_tflops": update_speed.peak_tflops(jax.devices()[0].device_kind),
        "rows": rows,
        "largest_seeds": largest,
        "skipped": skipped,
        "errors": errors,
    }


# ----------------------------------------------------------------------------------------------
# baseline: one row, one update per Python call, a host-fed batch every step


def baseline_part(budget: Budget, opts) -> dict:
    """The reference-shaped loop; see the module docstring."""
    config = presets.agent_config(opts.size)
    compiled, compile_s, _, (state, _, key) = presets.compile_update(config)
    cpu = jax.devices("cpu")[0]
    # The dataset lives on the host, as the reference codes' numpy buffers do; sampling runs on
    # the host CPU and each step's batch is copied to the device by the update call.
    data = jax.device_put(update_speed.synthetic_dataset(jax.random.PRNGKey(1)), cpu)
    batch_size, horizon, discount = config.batch_size, config.horizon, config.discount
    host_sample = jax.jit(lambda k, d: sample_chunks(k, d, batch_size, horizon, discount))
    warm_up = 3
    total = warm_up + opts.baseline_steps
    sample_keys = jax.device_put(jax.random.split(jax.random.PRNGKey(3), total), cpu)
    update_keys = np.asarray(jax.random.split(key, total))

    def step(i, state):
        batch = jax.device_get(host_sample(sample_keys[i], data))  # numpy, on the host
        return compiled(state, batch, update_keys[i])

    for i in range(warm_up):
        state, metrics = step(i, state)
    jax.block_until_ready(metrics)
    # Stop early, keeping a margin for the last steps in flight, when the budget runs out.
    limit = budget.left() - 5.0
    start = time.perf_counter()
    steps = 0
    for i in range(warm_up, total):
        state, metrics = step(i, state)
        steps += 1
        if time.perf_counter() - start > limit:
            break
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    finite = all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values())
    return {
        "settings": {"size": opts.size, "compute_dtype": "float32", "warm_up_steps": warm_up},
        "row": {
            "steps": steps,
            "stopped_by_budget": steps < opts.baseline_steps,
            "compile_s": round(compile_s, 2),
            "ms_per_update": round(1e3 * seconds / steps, 3),
            "updates_per_s": round(steps / seconds, 2),
            "finite": bool(finite),
        },
    }


def baseline_ratios(update: dict, baseline: dict) -> list[dict]:
    """Aggregate updates/s of each update row over the baseline's updates/s."""
    rate = baseline["row"]["updates_per_s"]
    return [
        {
            "seeds": row["seeds"],
            "compute_dtype": row["compute_dtype"],
            "ratio_vs_baseline": round(row["updates_per_s_aggregate"] / rate, 2),
        }
        for row in update.get("rows", [])
    ]


# ----------------------------------------------------------------------------------------------
# launcher: experiment.run end to end on synthetic data of cube-double's shapes


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


def stage_report(timings: dict, steps: int, spc: int, rows: int, call_s: float) -> dict:
    """One stage's seconds in and outside compiled calls, and its steady seconds per row-step."""
    calls = steps // spc
    stage_s, first_s = timings["stage_s"], timings["first_call_s"]
    checkpoint_s = timings.get("checkpoint_s", 0.0)
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
    """experiment.run end to end; see the module docstring."""
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
        timings = {}
        start = time.perf_counter()
        summary = experiment.run(config, timings=timings)
        wall_s = time.perf_counter() - start
        call_s = time_launcher_calls(config)
    stages = {
        name: stage_report(timings[name], steps, spc, rows, call_s[name])
        for name, steps in (("bc", bc_steps), ("offline", offline_steps))
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
        "run_wall_clock_s": round(summary["wall_clock_s"], 2),
        "stages": stages,
        "projection": paper_projection(stages),
    }


def time_launcher_calls(config) -> dict[str, float]:
    """Seconds of one compiled call of each stage alone: the launcher's own programs (cached by
    `train.make_train_call`) on the launcher's data, on fresh states of the same shapes."""
    data = experiment.load_data(config)
    rows = train.make_rows(config.seeds, experiment.swept_values(config))
    mesh = train.make_mesh(len(rows))
    source = experiment.data_source(data, config, mesh)
    examples = (
        jnp.zeros(data.train["observations"].shape[1]),
        jnp.zeros((config.agent.horizon, data.train["actions"].shape[1])),
    )
    cfg = config.agent
    out = {}
    for name, agent in (("bc", bc), ("offline", trqam)):
        states = train.init_rows(agent, cfg, jax.random.PRNGKey(0), rows.ids, *examples)
        states = train.shard_rows(states, mesh)
        call = train.make_train_call(
            agent.update, cfg.batch_size, cfg.horizon, cfg.discount, config.steps_per_call
        )
        keys = [train.call_keys(jax.random.PRNGKey(1), rows.seeds, i) for i in range(2)]
        out[name], _ = update_speed.time_calls(call, states, *source.current, keys)
    return out


# ----------------------------------------------------------------------------------------------
# eval: batched evaluation env-steps/s


def eval_part(budget: Budget, opts) -> dict:
    """`eval_speed.run_one` per environment while the budget lasts."""
    args = argparse.Namespace(
        seeds=opts.eval_seeds,
        episodes=opts.eval_episodes,
        num_envs=0,
        max_episode_steps=opts.eval_max_episode_steps or None,
        seed=0,
        workers=opts.eval_workers,
        repeats=1,
        progress=False,
    )
    runs, skipped, errors = [], [], []
    estimate = 0.0
    for env_name in [name for name in opts.eval_envs.split(",") if name]:
        reason = budget.refuses(estimate)
        if reason:
            skipped.append({"env": env_name, "reason": reason})
            continue
        config = eval_speed.agent_config_for(env_name)
        config.update(presets.PRESET_OVERRIDES[opts.size])
        start = time.perf_counter()
        try:
            runs.append(eval_speed.run_one(env_name, args, jax.random.PRNGKey(0), config))
        except Exception as err:  # recorded; the next environment runs
            errors.append({"env": env_name, "error": describe(err)})
        estimate = time.perf_counter() - start
    return {
        "settings": {
            "size": opts.size,
            "seeds": args.seeds,
            "episodes_per_seed": args.episodes,
            "workers": args.workers,
            "max_episode_steps": args.max_episode_steps,
        },
        "runs": runs,
        "skipped": skipped,
        "errors": errors,
    }


# ----------------------------------------------------------------------------------------------
# The record and its table


def jax_environment() -> str:
    try:
        return jax.print_environment_info(return_string=True)
    except Exception as err:  # informative only
        return describe(err)


def markdown(record: dict) -> str:
    """The suite's record as markdown: a header, then one table per part that ran."""
    info, versions = record["device"], record["versions"]
    lines = [
        f"# Benchmark suite: {info['device_kind']} ({info['platform']} x {info['num_devices']})",
        "",
        f"- command: `{record['command']}`"
        + (f" (from `{record['launched_by']}`)" if record.get("launched_by") else ""),
        f"- date (UTC): {record['date_utc']}",
        "- versions: "
        + ", ".join(f"{name} {value}" for name, value in versions.items() if value is not None),
        f"- host: {info['host_cpu']}, {info['host_cpus_usable']} usable CPUs, "
        f"load {info['load_average_1min']:.2f}",
        f"- {memory.describe(record['peak_memory'])}, the suite's process up to its last part",
        "",
    ]
    parts = record["parts"]
    for name, part in parts.items():
        lines.append(
            f"## {name}: {part['status']} ({part['elapsed_s']:.0f} s of a {part['budget_s']:.0f} s"
            " budget)"
        )
        lines.append("")
        if part["status"] == "failed":
            lines += [f"Failed: `{part['error']}`", ""]
            continue
        lines += PART_TABLES[name](part, parts)
        for item in part.get("skipped", []):
            lines.append(f"- skipped {dict_label(item)}: {item['reason']}")
        for item in part.get("errors", []):
            lines.append(f"- failed {dict_label(item)}: `{item['error']}`")
        lines.append("")
    return "\n".join(lines) + "\n"


def dict_label(item: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in item.items() if k not in ("reason", "error"))


def update_table(part: dict, parts: dict) -> list[str]:
    ratios = {
        (r["seeds"], r["compute_dtype"]): r["ratio_vs_baseline"]
        for r in parts.get("baseline", {}).get("ratio_vs_baseline", [])
    }
    lines = [
        f"Preset {part['settings']['size']}, {part['settings']['steps_per_call']} updates per "
        "call. Utilisation is of the dense tf32 peak for float32 (JAX's default matmul precision "
        "on these GPUs) and of the bf16 peak for bfloat16.",
        "",
        "| dtype | S | ms / call | ms / update | updates/s per row | updates/s, all rows "
        "| GFLOP / update | TFLOP/s | utilisation | compile s | x baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in part["rows"]:
        precision = "tf32" if r["compute_dtype"] == "float32" else "bf16"
        util = f"{r['utilisation'][precision]:.1%} {precision}" if "utilisation" in r else "-"
        ratio = ratios.get((r["seeds"], r["compute_dtype"]))
        lines.append(
            f"| {r['compute_dtype']} | {r['seeds']} | {r['ms_per_call']:.2f} | "
            f"{r['ms_per_update']:.3f} | {r['updates_per_s_per_seed']:.1f} | "
            f"{r['updates_per_s_aggregate']:.1f} | {r['gflop_per_update']:.2f} | "
            f"{r['achieved_gflops'] / 1e3:.2f} | {util} | {r['compile_s']:.1f} | "
            f"{'-' if ratio is None else f'{ratio:.1f}'} |"
        )
    largest = ", ".join(
        f"{dtype} S = {v['seeds']} ({v['limited_by']})"
        for dtype, v in part["largest_seeds"].items()
    )
    return lines + ["", f"Largest S measured: {largest}."]


def baseline_table(part: dict, _parts: dict) -> list[str]:
    r = part["row"]
    return [
        "One row, `jax.jit` of one update per Python call, each step's batch sampled on the host "
        f"CPU and copied to the device (preset {part['settings']['size']}, float32).",
        "",
        "| steps | ms / update | updates/s | compile s |",
        "|---|---|---|---|",
        f"| {r['steps']} | {r['ms_per_update']:.3f} | {r['updates_per_s']:.1f} | "
        f"{r['compile_s']:.1f} |",
    ]


def launcher_table(part: dict, _parts: dict) -> list[str]:
    s = part["settings"]
    shapes = ", ".join(f"{name} {size}" for name, (size,) in s["shapes"].items())
    lines = [
        f"`experiment.run`, {s['rows']} rows, {s['domain']} shapes ({shapes}), preset "
        f"{s['size']}, {s['steps_per_call']} steps per call (steps {s['steps_chosen_by']}); "
        f"wall time {part['wall_s']:.1f} s.",
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


def eval_table(part: dict, _parts: dict) -> list[str]:
    lines = [
        "| env | evaluator | env-steps/s | policy ms / call | policy share | x sequential |",
        "|---|---|---|---|---|---|",
    ]
    for run in part["runs"]:
        for name in ("sequential", *run["speedup_over_sequential"]):
            r = run[name]
            speedup = run["speedup_over_sequential"].get(name)
            lines.append(
                f"| {run['env']} | {name} | {r['env_steps_per_s']:,.0f} | "
                f"{r['ms_per_policy_call']:.2f} | {r['policy_share_of_wall']:.0%} | "
                f"{'-' if speedup is None else speedup} |"
            )
    return lines


PART_TABLES = {
    "update": update_table,
    "baseline": baseline_table,
    "launcher": launcher_table,
    "eval": eval_table,
}


# ----------------------------------------------------------------------------------------------
# The command


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the same code paths")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument("--out_dir", default=RESULTS_DIR, help="where the JSON and .md go")
    # Every setting below defaults to FULL's value, or QUICK's with --quick.
    for name, value in FULL.items():
        parser.add_argument(
            f"--{name}", type=type(value), default=None, help=f"{value} (--quick: {QUICK[name]})"
        )
    opts = parser.parse_args(argv)
    defaults = QUICK if opts.quick else FULL
    for name, value in defaults.items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)
    unknown = set(opts.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; expected some of {', '.join(PARTS)}")
    if opts.size not in presets.SIZES:
        parser.error(f"--size={opts.size!r}; expected one of {', '.join(presets.SIZES)}")
    return opts


def main(argv=None) -> str:
    """Run the suite; returns the JSON path written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = parse_args(argv)
    if opts.quick and "XLA_FLAGS" not in os.environ:
        # A third of the compile time on a CPU; read when JAX starts its backend (below).
        os.environ["XLA_FLAGS"] = QUICK_XLA_FLAGS
    info = device_info()
    name = "suite_quick" if opts.quick else "suite"
    path = os.path.join(opts.out_dir, f"{name}_{device_label(info)}.json")
    print(f"device: {info['device_kind']} ({info['platform']}) x {info['num_devices']}; -> {path}")
    record = {
        "benchmark": "suite",
        "command": " ".join(["python -m benchmarks.suite", *argv]),
        # The script that started the suite, when one says so (benchmarks/device_run.sh does).
        "launched_by": os.environ.get("SUITE_LAUNCHER"),
        "quick": opts.quick,
        "settings": {k: getattr(opts, k) for k in FULL},
        "jax_environment": jax_environment(),
        "parts": {},
    }
    runners = {
        "update": lambda b: update_part(b, opts),
        "baseline": lambda b: baseline_part(b, opts),
        "launcher": lambda b: launcher_part(b, opts, record["parts"].get("update")),
        "eval": lambda b: eval_part(b, opts),
    }
    for part_name in [p for p in PARTS if p in opts.parts.split(",")]:
        budget_s = getattr(opts, f"budget_{part_name}")
        budget = Budget(budget_s)
        print(f"== {part_name} (budget {budget_s:.0f} s)", flush=True)
        try:
            part = runners[part_name](budget)
            incomplete = part.get("skipped") or part.get("errors")
            part["status"] = "partial" if incomplete else "ok"
        except Exception as err:  # recorded; the next part runs
            traceback.print_exc()
            part = {"status": "failed", "error": describe(err)}
        part.update(budget_s=budget_s, elapsed_s=round(budget.elapsed(), 2))
        record["parts"][part_name] = part
        if part_name == "baseline" and part["status"] != "failed":
            part["ratio_vs_baseline"] = baseline_ratios(record["parts"].get("update", {}), part)
        write_result(name, record, path)  # adds the device, the versions and the date
        with open(path) as f:
            table = markdown(json.load(f))
        with open(path[: -len(".json")] + ".md", "w") as f:
            f.write(table)
        print(f"== {part_name}: {part['status']} in {part['elapsed_s']:.0f} s; wrote {path}")
    return path


if __name__ == "__main__":
    main()
