"""The sweep run: lock the root, check and print the plan, measure its cost, then BC, fine-tuning
and the report, each program part one launcher run in a worker process of its own."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from trqam_jax import experiment, run_dir
from trqam_jax.sweep import estimate as costing
from trqam_jax.sweep.plan import (
    BC,
    FINETUNE,
    Program,
    check_programs,
    config_file,
    make_plan,
    part_config,
    program_config,
    program_status,
    write_config,
)
from trqam_jax.sweep.processes import Processes
from trqam_jax.sweep.spec import Sweep

USER_ERRORS = experiment.USER_ERRORS
# The shared files under the root (process 0 writes them) and the parts' records.
PLAN_FILE, SUMMARY_FILE, RECORDS_DIR, REPORT_DIR = "plan.json", "sweep.json", "records", "report"
# launch(resolved config file, part, record file) -> exit code: one program part's launcher run.
Launch = Callable[[str, int, str], int]
# measure(resolved config files, timed calls, generate data) -> ({program: cost}, start seconds)
Measure = Callable[[list[str], int, bool], tuple[dict, float]]


def _say(processes: Processes, text: str) -> None:
    prefix = f"[sweep {processes.index}/{processes.count}] " if processes.count > 1 else "[sweep] "
    print(prefix + text, flush=True)


def _error(processes: Processes, text: str) -> None:
    """`error: <text>` on stderr, as the launchers print it (with the process when several)."""
    prefix = f"[sweep {processes.index}/{processes.count}] " if processes.count > 1 else ""
    print(f"{prefix}error: {text}", file=sys.stderr, flush=True)


def _write_shared(processes: Processes, path: str, payload: dict) -> None:
    if processes.writer:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        run_dir.write_json(path, payload)
        _say(processes, f"wrote {path}")


def _locked_root(sweep: Sweep, stack: contextlib.ExitStack) -> None:
    """Hold the root's lock for the whole sweep: a second sweep on it fails at once."""
    os.makedirs(sweep.root, exist_ok=True)
    try:
        stack.enter_context(run_dir.locked(sweep.root))
    except run_dir.RunDirError as err:
        raise run_dir.RunDirError(f"another sweep runs on --root: {err}") from None


def _announce(sweep, plan, processes, measure, dry_run, time_calls, command) -> tuple[str, dict]:
    """Process 0 before any work: the checks, the printed plan, the cost measurement (a worker)
    and plan.json with every program's resolved config. Returns (why the sweep cannot run or "",
    plan.json's record)."""
    check_programs(sweep, plan)  # the launcher's refusals, before anything is measured
    status = {p.name: program_status(sweep, p) for p in plan}
    todo = [p for p in plan if status[p.name] != "done"]
    calls = time_calls if todo else 0
    print("\n".join(costing.plan_lines(sweep, plan, status, {}, processes.count, measuring=calls)))
    costs, overhead_s, problem = {}, 0.0, ""
    if calls:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for p in todo:  # a dry run writes nothing under the root
                paths.append(
                    os.path.join(tmp, f"{p.name}.json") if dry_run else config_file(sweep, p)
                )
                write_config(program_config(sweep, p), paths[-1])
            costs, overhead_s = measure(paths, calls, not dry_run)
        lines = costing.plan_lines(sweep, plan, status, costs, processes.count, overhead_s)
        print("\n".join(lines), flush=True)
    errors = [f"{name}: {c['error']}" for name, c in costs.items() if "error" in c]
    if errors and not dry_run:
        problem = f"cannot run {len(errors)} programs; the first: {errors[0]}"
    record = costing.plan_record(sweep, plan, status, costs, processes.count, command, overhead_s)
    if not dry_run and not problem:
        for p in plan:
            write_config(program_config(sweep, p), config_file(sweep, p))
        _write_shared(processes, os.path.join(sweep.root, PLAN_FILE), record)
    return problem, record


def run(
    sweep: Sweep,
    processes: Processes,
    launch: Launch,
    report: Callable[[list[str], str], int],
    measure: Measure | None = None,
    dry_run: bool = False,
    time_calls: int = 1,
    command: Sequence[str] = (),
) -> int:
    """Lock the root, check, print and measure the plan, then BC, fine-tuning and the report,
    resuming what exists.

    Args:
      launch: runs one program part's launcher (experiments.run on its resolved config file);
        returns its exit code.
      report: (run directories or sweep roots, output directory) -> exit code; called with the
        root (`trqam_jax.report.write_report` renders what finished and marks the rest).
      measure: measures the programs' costs in a worker (None: time_calls must be 0).
      dry_run: check and print the plan (measured if time_calls > 0) and stop; nothing is
        written under the root (the measurement's compiles go to the compilation cache).
      time_calls: timed calls per program for the estimate (0: no measurement, no estimate).
    Returns:
      0, 2 (the plan cannot run), 3 (some program failed; the others ran and are reported).
    """
    plan = make_plan(sweep, processes.count)
    with contextlib.ExitStack() as stack:
        problem, record = "", {}
        if processes.writer:
            try:
                if not dry_run:
                    _locked_root(sweep, stack)
                problem, record = _announce(
                    sweep, plan, processes, measure, dry_run, time_calls, command
                )
            except USER_ERRORS as err:  # e.g. a changed config: say so to every process
                problem = str(err)
        problems = [s for s in processes.barrier("plan", problem) if s]
        if problems:
            _error(processes, problems[0])
            return 2
        if dry_run:
            return 0
        start = time.perf_counter()
        failed = _run_programs(sweep, plan, processes, launch)
        code = 3 if failed else 0
        if processes.writer:
            wall_s = time.perf_counter() - start
            report_code = _finish(sweep, plan, processes, report, failed, wall_s, record)
            code = code or report_code
        processes.barrier("report")  # every process stays up until process 0 is done
    return code


def _run_programs(sweep: Sweep, plan, processes: Processes, launch: Launch) -> dict[str, str]:
    """BC programs (whole, dealt out over the processes), then every fine-tuning program (a
    block of rows per process). Returns {program: why it failed} over all processes."""

    def run_part(program: Program, part: int) -> str:
        """'' when the part is done (now or before), else why it is not."""
        config = part_config(sweep, program, part)
        if experiment.finished_summary(config, experiment.run_directory(config)) is not None:
            _say(processes, f"{program.name} part {part}: finished before, skipped")
            return ""
        _say(processes, f"{program.name} part {part} of {program.parts}: running")
        path = os.path.join(sweep.root, RECORDS_DIR, f"{program.name}.part{part}.json")
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # an earlier invocation's: this record is the new run's
        start = time.perf_counter()
        code = launch(config_file(sweep, program), part, path)
        saved = run_dir.read_json(path) if os.path.exists(path) else {}  # the part's own
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run_dir.write_json(
            path,
            dict(saved, program=program.name, part=part, exit_code=code,
                 process_s=round(time.perf_counter() - start, 3)),
        )  # fmt: skip
        return "" if code == 0 else f"{program.name} part {part} exited with code {code}"

    failed: dict[str, str] = {}
    mine = {p.name: run_part(p, 0) for p in plan if p.stage == BC and p.process == processes.index}
    for statuses in processes.barrier("bc", {k: v for k, v in mine.items() if v}):
        failed.update(statuses)
    mine = {}
    for program in (p for p in plan if p.stage == FINETUNE):
        if program.bc in failed:
            mine[program.name] = f"{program.name} not run: its BC program {program.bc} failed"
        else:
            mine[program.name] = run_part(program, processes.index)
    for statuses in processes.barrier("finetune", {k: v for k, v in mine.items() if v}):
        failed.update(statuses)
    return failed


def _finish(sweep, plan, processes, report, failed, wall_s: float, record: dict) -> int:
    """Process 0 after the programs: sweep.json (records, failures, wall against the estimate)
    and the report over the root. Returns the report's exit code."""
    records = []
    for program in plan:
        for part in range(program.parts):
            path = os.path.join(sweep.root, RECORDS_DIR, f"{program.name}.part{part}.json")
            if os.path.exists(path):
                records.append(run_dir.read_json(path))
    summary = {
        "programs": records,
        "failed": failed,
        "processes": processes.count,
        "wall_s": round(wall_s, 3),
        "estimate_s": record.get("estimate_s"),
    }
    _write_shared(processes, os.path.join(sweep.root, SUMMARY_FILE), summary)
    estimated = summary["estimate_s"]
    said = f" (estimated {costing.format_duration(estimated)})" if estimated else ""
    _say(processes, f"programs took {costing.format_duration(wall_s)}{said}")
    for message in failed.values():
        _say(processes, f"failed: {message}")
    # The report reads the root itself: finished runs in the table, the others (BC-only, failed,
    # not started) marked.
    code = report([sweep.root], os.path.join(sweep.root, REPORT_DIR))
    if code == 0:
        _say(processes, f"wrote {os.path.join(sweep.root, REPORT_DIR)}")
    return code
