"""Cost of one compiled TRQAM update: XLA FLOPs, compile seconds, ms per update.

    python -m benchmarks.update_cost                 # paper configuration, scan vs unrolled
    python -m benchmarks.update_cost --size=small    # 2x64 networks, 3 critics

The paper configuration is obs 37, action 5, H = 5, 4x512 networks, 10 critics, B = 256, K = 10.
The reference implementation measures 61 GFLOP per update there. Results are written to
benchmarks/results/update_cost_<size>_<device>.json with the device and versions.
"""

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.common import write_result
from benchmarks.presets import (
    ACTION_DIM,
    HORIZON,
    OBS_DIM,
    SIZES,
    agent_config,
    compile_update,
)

flags.DEFINE_enum("size", "paper", list(SIZES), "Network and batch size preset.")
flags.DEFINE_integer("iters", 5, "Timed updates per variant (after one warm-up call).")
flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/update_cost_SIZE_DEVICE).")
FLAGS = flags.FLAGS

REFERENCE_GFLOP = 61.0


def measure(size: str, unroll: int, iters: int) -> dict:
    """Lower, compile and time `jax.jit(trqam.update)` for one preset and scan unroll factor."""
    compiled, compile_s, gflop, (state, batch, key) = compile_update(agent_config(size, unroll))
    state, metrics = compiled(state, batch, key)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return {
        "size": size,
        "flow_unroll": unroll,
        "gflop_per_update": gflop,
        "compile_s": compile_s,
        "ms_per_update_median": 1e3 * float(np.median(times)),
        "ms_per_update_min": 1e3 * float(np.min(times)),
    }


def main(_):
    config = agent_config(FLAGS.size)
    rows = [measure(FLAGS.size, unroll, FLAGS.iters) for unroll in (1, config.flow_steps)]
    result = {
        "benchmark": "update_cost",
        "command": f"python -m benchmarks.update_cost --size={FLAGS.size} --iters={FLAGS.iters}",
        "shape": {
            "obs": OBS_DIM,
            "action": ACTION_DIM,
            "horizon": HORIZON,
            "batch": config.batch_size,
            "flow_steps": config.flow_steps,
            "hidden": list(config.actor_hidden_dims),
            "num_qs": config.num_qs,
        },
        "reference_gflop_per_update": REFERENCE_GFLOP if FLAGS.size == "paper" else None,
        "rows": rows,
    }
    print(f"{'unroll':>7} {'GFLOP/update':>13} {'compile s':>10} {'ms/update':>10}")
    for row in rows:
        print(
            f"{row['flow_unroll']:>7} {row['gflop_per_update']:>13.2f} {row['compile_s']:>10.1f}"
            f" {row['ms_per_update_median']:>10.1f}"
        )
    if FLAGS.size == "paper":
        print(f"reference implementation: {REFERENCE_GFLOP} GFLOP/update")
    path = write_result(f"update_cost_{FLAGS.size}", result, FLAGS.out or None)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
