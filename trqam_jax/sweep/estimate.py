"""The estimate of a plan's wall time from measured costs, and the plan as the terminal and
plan.json show it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from trqam_jax.sweep.plan import BC, Program, config_file, part_dirs
from trqam_jax.sweep.spec import Sweep


def program_seconds(program: Program, cost: dict, overhead_s: float = 0.0) -> float:
    """Wall seconds of one part of `program` from its measured `cost` (`measure.measure`): the
    process start (`overhead_s`), loading the data, starting its training call (tracing, and
    loading it from the cache), its updates, creating its evaluation environments, its
    evaluations and its checkpoints."""
    evals = cost.get("evals", 0) * cost.get("eval_s", 0.0)
    saves = cost.get("checkpoints", 0) * cost.get("checkpoint_s", 0.0)
    startup = overhead_s + cost.get("data_s", 0.0) + cost.get("envs_s", 0.0) + cost["start_s"]
    return startup + program.steps * cost["s_per_step"] + evals + saves


def estimate(
    plan: Sequence[Program], status: dict, costs: dict, processes: int, overhead_s: float = 0.0
) -> dict:
    """Wall-time estimate of the plan from measured costs.

    Args:
      status: program name -> plan.program_status; costs: program name -> a `measure` record
        (its `s_per_step` is one step of all the rows one process runs) or {"error": ...};
      overhead_s: seconds a worker process takes to start (imports), measured.
    Returns:
      {program name: estimated seconds (None: not measured)} plus "total_s": BC phase (the
      busiest process: BC programs run whole, one per process) + fine-tuning programs (all
      processes at once), "compile_s": the measured compile seconds, "unmeasured": names. A
      resumed program counts all its steps (an upper bound).
    """
    out, busy, unmeasured = {}, [0.0] * processes, []
    total = compile_s = 0.0
    for program in plan:
        cost = costs.get(program.name) or {}
        if status.get(program.name) == "done":
            out[program.name] = 0.0
            continue
        if "s_per_step" not in cost:
            out[program.name] = None
            unmeasured.append(program.name)
            continue
        seconds = program_seconds(program, cost, overhead_s)
        out[program.name] = seconds
        compile_s += cost["compile_s"]
        if program.stage == BC:
            busy[program.process] += seconds
        else:
            total += seconds
    return dict(out, total_s=total + max(busy), compile_s=compile_s, unmeasured=unmeasured)


def format_duration(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 360:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 100 else f"{seconds:.0f} s"


def _values(sweep: Sweep) -> str:
    swept = "; ".join(f"{name} {', '.join(f'{v:g}' for v in vs)}" for name, vs in sweep.swept)
    return f"swept {swept} (other agents: their own value)" if swept else "each agent's own values"


def plan_lines(
    sweep: Sweep, plan, status, costs, processes: int, overhead_s: float = 0.0, measuring=0
) -> list[str]:
    """The plan as the terminal shows it: one line per program, then the totals and the estimate
    (or, with `measuring` = timed calls per program, that the measurement follows)."""
    est = estimate(plan, status, costs, processes, overhead_s)
    lines = [
        f"Sweep plan for {sweep.root} ({processes} process{'es' if processes > 1 else ''}): "
        f"agents {', '.join(sweep.agents)}; domains {', '.join(sweep.domains)}; tasks "
        f"{', '.join(map(str, sweep.tasks))}; {sweep.seeds} seeds; {_values(sweep)}",
        f"  {'program':<36} {'stage':<8} {'rows':>5} {'rows/proc':>9} {'steps/row':>10} "
        f"{'updates':>11} {'status':<8} {'compile s':>9} {'ms/step':>8} {'evals':>5} "
        f"{'eval s':>7} {'est. wall':>9}",
    ]
    for p in plan:
        cost = costs.get(p.name) or {}
        per_process = p.rows if p.stage == BC else p.rows // p.parts
        compile_s = f"{cost['compile_s']:.1f}" if "compile_s" in cost else "-"
        ms = f"{1e3 * cost['s_per_step']:.2f}" if "s_per_step" in cost else "-"
        evals = str(cost.get("evals", 0)) if cost else "-"
        eval_s = f"{cost['eval_s']:.1f}" if "eval_s" in cost else "-"
        lines.append(
            f"  {p.name:<36} {p.stage:<8} {p.rows:>5} {per_process:>9} {p.steps:>10} "
            f"{p.updates:>11,} {status[p.name]:<8} {compile_s:>9} {ms:>8} {evals:>5} "
            f"{eval_s:>7} {format_duration(est[p.name]):>9}"
        )
        if "error" in cost:
            lines.append(f"    not measured: {cost['error'].splitlines()[0]}")
    todo = sum(p.updates for p in plan if status[p.name] != "done")
    lines.append(
        f"{len(plan)} programs, {sum(p.updates for p in plan):,} updates (rows x steps), "
        f"{todo:,} still to run"
    )
    unmeasured = len(est["unmeasured"])
    if measuring and todo:
        lines.append(f"measuring the cost ({measuring} timed calls per program) ...")
    elif unmeasured < len(plan) and todo:
        lines.append(
            f"estimated wall {format_duration(est['total_s'])}"
            + (f" for the measured programs ({unmeasured} not measured)" if unmeasured else "")
            + f" (process starts of {overhead_s:.0f} s, data, updates, evaluations, "
            f"checkpoints), + {est['compile_s']:.0f} s compiling paid by the measurement (the "
            "programs load these compiles from the cache); online environment steps counted at "
            "the offline update rate"
        )
    elif todo:
        lines.append("no estimate: nothing measured (--time_calls=0, or the measurement failed)")
    return lines


def plan_record(
    sweep: Sweep, plan, status, costs, processes: int, command, overhead_s: float = 0.0
) -> dict:
    """plan.json: the sweep, every program with its resolved config file, status, cost and
    estimate, and the totals."""
    est = estimate(plan, status, costs, processes, overhead_s)
    return {
        "sweep": dataclasses.asdict(sweep),
        "processes": processes,
        "programs": [
            dict(
                dataclasses.asdict(p),
                updates=p.updates,
                status=status[p.name],
                config_file=config_file(sweep, p),
                run_dirs=part_dirs(sweep, p),
                cost=costs.get(p.name),
                estimate_s=est[p.name],
            )
            for p in plan
        ],
        "estimate_s": est["total_s"],
        "compile_s": est["compile_s"],
        "process_start_s": overhead_s,
        "command": list(command),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
