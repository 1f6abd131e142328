"""Throughput of the compiled training step over vmapped seeds, against the device's peak.

    python -m benchmarks.update_speed                     # small and paper presets, S = 1, 2, 4, 8
    python -m benchmarks.update_speed --compute_dtype=bfloat16
    python -m benchmarks.update_speed --sizes=small --seeds=1,2 --calls=3    # a quick look

For each preset (paper: obs 37, action 5, H = 5, 4x512 networks, 10 critics, B = 256, K = 10;
small: 2x64, 3 critics, B = 64) and each number of seeds S, the program the launcher runs
(`train.make_train_call`: S vmapped TRQAM agents, `steps_per_call` updates in a `lax.scan`,
batches drawn on the device from a synthetic dataset; sharded over the local devices when S
divides among them) is compiled and timed. Reported per row:
- GFLOP per update from XLA's cost analysis of one update with the flow loops unrolled (XLA
  counts a scan body once, so the scanned program under-reports), read from the lowered program,
  which needs no compilation (within 0.2% of the compiled count: 60.79 vs 60.88 GFLOP at the
  paper preset on the CPU);
- compile seconds, ms per call and per update, updates/s per seed and in aggregate;
- achieved GFLOP/s, and utilisation of the device's dense peak (`PEAK_TFLOPS`) at fp32, tf32
  and bf16 (a CPU reports GFLOP/s only);
- the share of the training loop's wall time spent outside compiled calls: the launcher's
  `run_stage` runs `calls` calls with a metrics record written after every call (the paper
  protocol logs every 5th); its final checkpoint save is timed inside the loop and excluded.
Results go to benchmarks/results/update_speed_<sizes>_<device>[_bf16].json.
"""

import functools
import os
import sys
import tempfile
import time

# run_stage's progress bar would fill the log; tqdm reads this when it is first imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from benchmarks.common import checkpoint_save_s, device_info, write_result
from benchmarks.presets import ACTION_DIM, HORIZON, OBS_DIM, agent_config, lower_update, xla_gflop
from configs import trqam as trqam_config
from trqam_jax import loop, train
from trqam_jax.agents import trqam

flags.DEFINE_list("sizes", ["small", "paper"], "Presets to measure: small, paper, tiny.")
flags.DEFINE_list("seeds", ["1", "2", "4", "8"], "Numbers of vmapped seeds S.")
flags.DEFINE_integer("steps_per_call", 20, "Updates per compiled call (lax.scan length).")
flags.DEFINE_integer("calls", 5, "Timed calls per row (after one warm-up call).")
flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "Matmul dtype.")
flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/update_speed_SIZES_DEVICE).")
FLAGS = flags.FLAGS

# Dense peak TFLOP/s from NVIDIA's datasheets (H100 SXM5 and H200 SXM share theirs), looked up by
# a substring of jax's `device_kind`; the first match wins.
PEAK_TFLOPS = (
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
)
DATASET_ROWS = 10_000
EPISODE_LENGTH = 1_000


def peak_tflops(device_kind: str) -> dict | None:
    """The device's dense peaks {"fp32", "tf32", "bf16"} in TFLOP/s, or None if not tabled."""
    return next((peaks for name, peaks in PEAK_TFLOPS if name in device_kind), None)


def synthetic_dataset(key) -> dict:
    """Flat transitions of the benchmark shapes (data/sampler.py layout), episodes of 1000."""
    obs_key, action_key, reward_key = jax.random.split(key, 3)
    obs = jax.random.normal(obs_key, (DATASET_ROWS, OBS_DIM))
    ends = (jnp.arange(DATASET_ROWS) % EPISODE_LENGTH == EPISODE_LENGTH - 1).astype(jnp.float32)
    return {
        "observations": obs,
        "actions": jnp.tanh(jax.random.normal(action_key, (DATASET_ROWS, ACTION_DIM))),
        "rewards": jax.random.uniform(reward_key, (DATASET_ROWS,)),
        "terminals": ends,
        "masks": jnp.ones(DATASET_ROWS),
        "next_observations": jnp.roll(obs, -1, axis=0),
    }


def _placement(num_seeds: int):
    """(put_rows, put_replicated, sharded?): shard over the devices when S divides among them."""
    if num_seeds % jax.local_device_count() == 0:
        mesh = train.make_mesh(num_seeds)
        return (lambda t: train.shard_rows(t, mesh)), (lambda t: train.replicate(t, mesh)), True
    device = jax.local_devices()[0]
    put = lambda t: jax.device_put(t, device)
    return put, put, False


def _loop_share(config, states, data, size, num_seeds, steps, calls) -> dict:
    """Wall time of the launcher's `run_stage` for `calls` calls, and the seconds of its final
    checkpoint save (the same save of its final states, timed alone afterwards)."""
    run = trqam_config.get_config()
    run.agent = config
    run.steps_per_call = run.log_interval = steps
    run.eval_interval = run.save_interval = run.shard_interval = steps * calls
    rows = train.make_rows(num_seeds, {"kl_budget": [config.kl_budget]})
    with tempfile.TemporaryDirectory() as out:
        data_source = loop.StaticData(data, size)
        stage = loop.OfflineStage("offline", trqam, run, data_source, jax.random.PRNGKey(3), rows)
        start = time.perf_counter()
        states, _ = loop.run_stage(stage, states, steps * calls, run, out, rows)
        loop_s = time.perf_counter() - start
    return {"loop_s": loop_s, "final_checkpoint_s": checkpoint_save_s(states, steps * calls)}


@functools.cache
def true_gflop_per_update(size: str, compute_dtype: str) -> float:
    """XLA's FLOP count of one update with the flow loops unrolled (the true count)."""
    flow_steps = agent_config(size).flow_steps
    return xla_gflop(lower_update(agent_config(size, flow_steps, compute_dtype)))


def time_calls(call, states, data, size, keys) -> tuple[float, object]:
    """Median wall seconds of `call(states, data, size, key)` over `keys[1:]`, after one
    warm-up call with `keys[0]`; each timed call waits for its results. Returns (seconds, the
    final states)."""
    states, summary, _ = call(states, data, size, keys[0])
    jax.block_until_ready((states, summary))
    times = []
    for key in keys[1:]:
        start = time.perf_counter()
        states, summary, _ = call(states, data, size, key)
        jax.block_until_ready((states, summary))
        times.append(time.perf_counter() - start)
    finite = [np.all(np.isfinite(np.asarray(value))) for value in summary.values()]
    assert all(finite), "non-finite metrics"
    return float(np.median(times)), states


def measure(
    size: str, num_seeds: int, steps: int, calls: int, compute_dtype: str, loop_share: bool = True
) -> dict:
    """Compile and time one preset with `num_seeds` vmapped seeds.

    `loop_share` also runs the launcher's loop (`run_stage`, with a checkpoint save at its end)
    for the share of time outside compiled calls; without it those fields are absent.
    """
    config = agent_config(size, compute_dtype=compute_dtype)
    gflop = true_gflop_per_update(size, compute_dtype)
    put_rows, put_replicated, sharded = _placement(num_seeds)
    example = (jnp.zeros(OBS_DIM), jnp.zeros((HORIZON, ACTION_DIM)))
    states = put_rows(
        train.init_rows(trqam, config, jax.random.PRNGKey(0), range(num_seeds), *example)
    )
    data = put_replicated(synthetic_dataset(jax.random.PRNGKey(1)))
    size_arg = jnp.int32(DATASET_ROWS)
    call = train.make_train_call(
        trqam.update, config.batch_size, config.horizon, config.discount, steps
    )
    seeds = np.arange(num_seeds)
    keys = [train.call_keys(jax.random.PRNGKey(2), seeds, i) for i in range(calls + 1)]
    start = time.perf_counter()
    compiled = call.lower(states, data, size_arg, keys[0]).compile()
    compile_s = time.perf_counter() - start
    call_s, states = time_calls(compiled, states, data, size_arg, keys)
    updates_per_s = steps / call_s
    row = {
        "size": size,
        "seeds": num_seeds,
        "sharded_over_devices": sharded,
        "compute_dtype": compute_dtype,
        "steps_per_call": steps,
        "gflop_per_update": round(gflop, 3),
        "compile_s": round(compile_s, 2),
        "ms_per_call": round(1e3 * call_s, 2),
        "ms_per_update": round(1e3 * call_s / steps, 3),
        "updates_per_s_per_seed": round(updates_per_s, 2),
        "updates_per_s_aggregate": round(updates_per_s * num_seeds, 2),
        "achieved_gflops": round(gflop * updates_per_s * num_seeds, 2),
    }
    if loop_share:
        # The AOT compile above leaves jit's own cache empty; fill it so run_stage's first call
        # does not compile.
        jax.block_until_ready(call(states, data, size_arg, keys[0]))
        loop = _loop_share(config, states, data, size_arg, num_seeds, steps, calls)
        compiled_s = calls * call_s
        timed_loop_s = loop["loop_s"] - loop["final_checkpoint_s"]
        row.update(
            compiled_s=round(compiled_s, 3),
            loop_s=round(loop["loop_s"], 3),
            final_checkpoint_s=round(loop["final_checkpoint_s"], 3),
            outside_compiled_share=round(max(timed_loop_s - compiled_s, 0.0) / timed_loop_s, 4),
        )
    peaks = peak_tflops(jax.devices()[0].device_kind)
    if peaks:
        row["utilisation"] = {
            name: round(row["achieved_gflops"] / (1e3 * peak), 4) for name, peak in peaks.items()
        }
    return row


def print_table(rows) -> None:
    print(
        f"{'size':>6} {'S':>3} {'GFLOP/upd':>10} {'compile s':>10} {'ms/upd':>8} {'upd/s/seed':>11}"
        f" {'upd/s all':>10} {'GFLOP/s':>9} {'util':>11} {'outside':>8}"
    )
    for r in rows:
        # fp32 matmuls run as tf32 on these GPUs under JAX's default precision.
        precision = "tf32" if r["compute_dtype"] == "float32" else "bf16"
        util = f"{r['utilisation'][precision]:.1%} {precision}" if "utilisation" in r else "-"
        share = r.get("outside_compiled_share")  # absent when measured without the loop
        outside = "-" if share is None else f"{share:.1%}"
        print(
            f"{r['size']:>6} {r['seeds']:>3} {r['gflop_per_update']:>10.2f} {r['compile_s']:>10.1f}"
            f" {r['ms_per_update']:>8.2f} {r['updates_per_s_per_seed']:>11.1f}"
            f" {r['updates_per_s_aggregate']:>10.1f} {r['achieved_gflops']:>9.1f} {util:>11}"
            f" {outside:>8}"
        )


def main(_):
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    info = device_info()
    print(f"device: {info['device_kind']} ({info['platform']}) x {info['num_devices']}")
    rows = []
    for size in FLAGS.sizes:
        for num_seeds in map(int, FLAGS.seeds):
            rows.append(
                measure(size, num_seeds, FLAGS.steps_per_call, FLAGS.calls, FLAGS.compute_dtype)
            )
            print_table(rows[-1:])
    print()
    print_table(rows)
    suffix = "_bf16" if FLAGS.compute_dtype == "bfloat16" else ""
    record = {
        "benchmark": "update_speed",
        "label": f"{info['platform'].upper()} results",
        "command": "python -m benchmarks.update_speed " + " ".join(sys.argv[1:]),
        "peak_tflops": peak_tflops(info["device_kind"]),
        "rows": rows,
    }
    name = "_".join(["update_speed", *FLAGS.sizes]) + suffix
    print(f"wrote {write_result(name, record, FLAGS.out or None)}")


if __name__ == "__main__":
    app.run(main)
