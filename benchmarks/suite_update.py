"""The suite's update part: the launcher's compiled program of S rows (`update_speed.measure`).

At the paper preset (or `--size`) for S in `--seeds`, then doubling until out of memory or out of
budget, float32 and compute_dtype=bfloat16 interleaved: ms per call, updates/s per row and in
aggregate, true GFLOP per update (XLA's count of the unrolled update), utilisation of the
device's peak, compile seconds. Before every point its seconds are predicted from the one before,
and the point is skipped, with the reason recorded, when it would overrun the budget; a point
that fails (out of memory at a large S, say) is recorded and the grid goes on.
"""

import gc
import time

import jax

from benchmarks import update_speed
from benchmarks.budget import Budget, describe, out_of_memory


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
