"""Which runs the report shows, and a mark with its reason for every run it cannot tabulate.

A path given to the report is a run directory or a sweep root (docs/sweep.md): the root expands
to its run directories, split parts included (`run_dir.expand_run_dirs`), and, when it holds the
sweep's plan.json, to the planned runs not started yet. Every run then gets a status from its
files alone (docs/run_directory.md):

  finished     summary.json covers the steps config.json asks for
  diverged     a non-finite training metric was logged (the launcher stops the run there)
  stopped      no summary covering the steps: killed, still running, or diverged between two
               logged steps (then only the launcher's exit code, 3, says so)
and a kind: BC only (no fine-tuning stage: nothing to evaluate), evaluation off
(`eval_episodes = 0`), no evaluation yet, or evaluated. Evaluated runs go in the table and the
curves, except diverged ones (curves only: their last evaluation is not the protocol's result).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

from trqam_jax import run_dir
from trqam_jax.run_dir import Run

# Written by the sweep (trqam_jax/sweep.py PLAN_FILE); read here without importing the sweep,
# which imports JAX.
PLAN_FILE = "plan.json"

NOT_STARTED, BC_ONLY, EVAL_OFF = "not started", "BC only", "evaluation off"
NO_EVAL, DIVERGED, STOPPED = "no evaluation", "diverged", "stopped"
# What the report shows of a marked run.
SHOWN_TABLE, SHOWN_CURVES, SHOWN_TRAINING, SHOWN_NOTHING = (
    "table and plots",
    "plots only (not in the table)",
    "training plots only",
    "nothing",
)


@dataclasses.dataclass(frozen=True)
class Mark:
    """A run the report cannot show in full. status: NOT_STARTED, BC_ONLY, EVAL_OFF, NO_EVAL,
    DIVERGED or STOPPED; reason: one line for the reader; shown: one of the SHOWN_* values."""

    path: str
    status: str
    reason: str
    shown: str


@dataclasses.dataclass(frozen=True)
class Found:
    """run_dirs: every run directory found; not_started: planned run directories without one."""

    run_dirs: tuple[str, ...]
    not_started: tuple[str, ...]


def planned_run_dirs(root: str) -> list[str]:
    """The run directories the sweep's plan.json under `root` names, under `root` as given now
    (the plan records them under the root the sweep was started with); [] without a plan."""
    path = os.path.join(root, PLAN_FILE)
    if not os.path.isfile(path):
        return []
    plan = run_dir.read_json(path)
    try:
        planned_root = plan["sweep"]["root"]
        dirs = [d for p in plan["programs"] for d in p["run_dirs"]]
    except (KeyError, TypeError) as e:
        raise run_dir.RunDirError(
            f"{path}: not a sweep plan (lacks {e}); rerun the sweep or pass the run directories."
        ) from None
    return [os.path.join(root, os.path.relpath(d, planned_root)) for d in dirs]


def find_runs(paths: Sequence[str]) -> Found:
    """Run directories and planned-but-absent ones named by `paths` (run dirs or sweep roots).

    Raises run_dir.RunDirError naming a path that is neither a run directory nor holds any
    (a sweep root whose plan names runs not started yet is accepted).
    """
    found, missing = [], []
    for p in paths:
        planned = planned_run_dirs(p) if os.path.isdir(p) and not run_dir.is_run_dir(p) else []
        absent = [d for d in planned if not run_dir.is_run_dir(d)]
        if absent and len(absent) == len(planned):
            missing += absent  # a plan, nothing started: nothing to expand
            continue
        found += run_dir.expand_run_dirs([p])
        missing += absent
    return Found(tuple(dict.fromkeys(found)), tuple(dict.fromkeys(missing)))


# ----------------------------------------------------------------------------------------------
# Status of one run


def _non_finite(value) -> bool:
    if value is None:  # run_dir writes NaN and inf as null (strict JSON)
        return True
    if isinstance(value, str):  # json has no NaN literal in strict mode; a logger may write one
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def divergence(run: Run) -> tuple[int, str, str] | None:
    """(step, stage, metric) of the first non-finite training metric, or None.

    Episode statistics (`online/...`) are left out, as the launcher's divergence check does:
    they are NaN in a window where no episode ended.
    """
    for r in run.train:
        bad = sorted(k for k, v in r.items() if not k.startswith("online/") and _non_finite(v))
        if bad:
            return int(r["step"]), str(r.get("stage", "")), bad[0]
    return None


def finished(run: Run) -> bool:
    """Whether summary.json covers every stage's steps in config.json (a rerun that extends a
    run keeps the old summary until it finishes)."""
    if run.summary is None:
        return False
    done = run.summary.get("steps", {})
    return all(int(done[k]) >= int(run.config.get(k, 0)) for k in done)


def _progress(run: Run) -> str:
    """`step N of M (stage S)` from the last logged line of the run's files."""
    rows = [r for r in run.train + run.evals if "step" in r]
    if not rows:
        return "nothing logged yet"
    last = max(rows, key=lambda r: (r.get("stage") != "bc", int(r["step"])))
    stage = last.get("stage", "")
    total = int(run.config.get("bc_steps", 0)) if stage == "bc" else run.final_step
    return f"last logged step {int(last['step'])} of {total} ({stage})"


def is_bc_only(run: Run) -> bool:
    return run.final_step == 0 and int(run.config.get("bc_steps", 0)) > 0


def has_evaluations(run: Run) -> bool:
    """Evaluations of the fine-tuning stages (BC-stage ones are not tabulated)."""
    return any(r.get("stage") != "bc" for r in run.evals)


def _kind(run: Run, evaluated: bool) -> tuple[str, str]:
    """(status, description) from what the run is, before how it ended."""
    if is_bc_only(run):
        return BC_ONLY, "BC pretraining only: no fine-tuning stage, nothing to evaluate"
    if int(run.config.get("eval_episodes", 1)) == 0:
        return EVAL_OFF, "evaluation off (eval_episodes = 0)"
    if not evaluated:
        return NO_EVAL, "no fine-tuning evaluation yet"
    last = max(int(r["step"]) for r in run.evals if r.get("stage") != "bc")
    return STOPPED, f"evaluated up to step {last}"


def mark(run: Run) -> Mark | None:
    """The run's mark, or None for a finished run with evaluations (shown in full)."""
    diverged, evaluated, done = divergence(run), has_evaluations(run), finished(run)
    if evaluated and done and diverged is None:
        return None
    status, what = _kind(run, evaluated)
    if diverged is not None:
        step, stage, metric = diverged
        status, state = DIVERGED, f"diverged at step {step} ({stage}: {metric} non-finite)"
    elif done:
        state = "finished"
    else:
        state = f"stopped or still running: no summary.json for these steps, {_progress(run)}"
    if evaluated:
        shown = SHOWN_CURVES if diverged is not None else SHOWN_TABLE
    else:
        trained = any(r.get("stage") != "bc" for r in run.train)
        shown = SHOWN_TRAINING if trained else SHOWN_NOTHING
    return Mark(run.path, status, f"{what}; {state}", shown)


def not_started(path: str) -> Mark:
    reason = f"planned in {PLAN_FILE}, no {run_dir.CONFIG_FILE} yet"
    return Mark(path, NOT_STARTED, reason, SHOWN_NOTHING)


def load(found: Found) -> tuple[list[Run], list[Mark]]:
    """Every found run parsed (run_dir.RunDirError on a broken file), and the marks: planned runs
    not started, then the found runs not shown in full, in path order."""
    runs = [run_dir.load_run(p) for p in found.run_dirs]
    marks = [not_started(p) for p in found.not_started]
    marks += [m for m in map(mark, runs) if m is not None]
    return runs, sorted(marks, key=lambda m: m.path)
