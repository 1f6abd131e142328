"""The suite's baseline part: the reference codes' shape, one row and one update per Python call.

A batch is sampled on the host (CPU) and fed to the device every step, `jax.jit` of a single
update; `baseline_ratios` divides each update row's aggregate rate by its rate (S processes of
one row time-share one device, so together they go no faster than one of them).
"""

import time

import jax
import numpy as np

from benchmarks import presets, update_speed
from benchmarks.budget import Budget
from trqam_jax.data.sampler import sample_chunks


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
