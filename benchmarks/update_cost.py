"""Cost of one compiled TRQAM update: XLA FLOPs, compile seconds, ms per update.

    python -m benchmarks.update_cost                 # paper configuration, scan vs unrolled
    python -m benchmarks.update_cost --size=small    # 2x64 networks, 3 critics

The paper configuration is obs 37, action 5, H = 5, 4x512 networks, 10 critics, B = 256, K = 10.
The reference implementation measures 61 GFLOP per update there. Results are written to
benchmarks/results/update_cost_<platform>.json with the device and versions.
"""

import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs.agent_defaults import adjoint_matching_defaults
from trqam_jax.agents import trqam

flags.DEFINE_enum("size", "paper", ["paper", "small"], "Network and batch size preset.")
flags.DEFINE_integer("iters", 5, "Timed updates per variant (after one warm-up call).")
flags.DEFINE_string("out", "benchmarks/results", "Directory of the JSON result.")
FLAGS = flags.FLAGS

OBS_DIM, ACTION_DIM, HORIZON = 37, 5, 5
REFERENCE_GFLOP = 61.0


def _config(size: str, unroll: int):
    config = adjoint_matching_defaults("trqam")
    if size == "small":
        config.actor_hidden_dims = config.critic_hidden_dims = (64, 64)
        config.num_qs = 3
        config.batch_size = 64
    config.flow_unroll = unroll
    return config


def _batch(key, batch_size):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "observations": jax.random.normal(k1, (batch_size, OBS_DIM)),
        "actions": jnp.tanh(jax.random.normal(k2, (batch_size, HORIZON, ACTION_DIM))),
        "rewards": jax.random.uniform(k3, (batch_size,)),
        "masks": jnp.ones(batch_size),
        "valid": jnp.ones((batch_size, HORIZON)),
        "next_observations": jax.random.normal(k3, (batch_size, OBS_DIM)),
    }


def measure(size: str, unroll: int, iters: int) -> dict:
    """Lower, compile and time `jax.jit(trqam.update)` for one preset and scan unroll factor."""
    config = _config(size, unroll)
    state = trqam.init(
        jax.random.PRNGKey(0), config, jnp.zeros(OBS_DIM), jnp.zeros((HORIZON, ACTION_DIM))
    )
    batch = _batch(jax.random.PRNGKey(1), config.batch_size)
    key = jax.random.PRNGKey(2)
    start = time.perf_counter()
    compiled = jax.jit(trqam.update).lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
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
        "gflop_per_update": cost.get("flops", float("nan")) / 1e9,
        "compile_s": compile_s,
        "ms_per_update_median": 1e3 * float(np.median(times)),
        "ms_per_update_min": 1e3 * float(np.min(times)),
    }


def main(_):
    config = _config(FLAGS.size, 1)
    rows = [measure(FLAGS.size, unroll, FLAGS.iters) for unroll in (1, config.flow_steps)]
    device = jax.devices()[0]
    result = {
        "command": f"python -m benchmarks.update_cost --size={FLAGS.size} --iters={FLAGS.iters}",
        "device": f"{device.platform}: {device.device_kind}",
        "cpu_count": __import__("os").cpu_count(),
        "versions": {"python": platform.python_version(), "jax": jax.__version__},
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
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"update_cost_{FLAGS.size}_{device.platform}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
