"""Curves over training: success per step with a bootstrap band, and train_metrics series."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trqam_jax.data.names import domain_and_task
from trqam_jax.report.records import (
    ONLINE_SUFFIX,
    line_value,
    row_label,
    swept_agents,
    swept_hparam,
)
from trqam_jax.run_dir import Run

# TRQAM's trust-region budget epsilon, as its updates log it (the KL figures draw it).
BUDGET = "kl_budget"


def success_curve(
    records: Sequence[dict], label: str, domain: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed domain success over steps for one row and domain.

    Returns (steps int [T], per_seed float [S, T]); per_seed[s, t] is the seed's mean over the
    domain's tasks at that step, NaN where the seed lacks one of those tasks at that step.
    """
    rs = [r for r in records if r["label"] == label and r["domain"] == domain]
    tasks = sorted({r["task"] for r in rs})
    seeds = sorted({r["seed"] for r in rs})
    steps = np.array(sorted({r["step"] for r in rs}), dtype=np.int64)
    val = {(r["task"], r["seed"], r["step"]): r["success"] for r in rs}
    out = np.full((len(seeds), len(steps)), np.nan)
    for i, s in enumerate(seeds):
        for j, st in enumerate(steps):
            v = [val.get((t, s, int(st))) for t in tasks]
            if all(x is not None for x in v):
                out[i, j] = float(np.mean(v))
    return steps, out


def bootstrap_band(
    per_seed: np.ndarray, reps: int = 1000, ci: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and a percentile bootstrap CI over seeds, per column, ignoring NaN.

    per_seed: float [S, T]. Returns (mean [T], low [T], high [T]); NaN where no seed has data.
    """
    rng = np.random.default_rng(seed)
    n_t = per_seed.shape[1]
    mean, lo, hi = (np.full(n_t, np.nan) for _ in range(3))
    alpha = (1.0 - ci) / 2.0
    for j in range(n_t):
        col = per_seed[:, j]
        col = col[~np.isnan(col)]
        if col.size == 0:
            continue
        mean[j] = col.mean()
        boots = col[rng.integers(0, col.size, size=(reps, col.size))].mean(axis=1)
        lo[j], hi[j] = np.quantile(boots, [alpha, 1.0 - alpha])
    return mean, lo, hi


def online_boundary(offline_end: int, final_step: int) -> int | None:
    """The step where a run's online stage starts, None when it has none (or no offline one)."""
    return offline_end if final_step > offline_end > 0 else None


def train_series(runs: Sequence[Run], key: str) -> list[dict]:
    """One series per (run, task, seed, swept value) of a train_metrics.jsonl field.

    Returns dicts: label, domain, task, seed, kl_budget and kl_budget_online (TRQAM's trust-region
    budget, logged by its updates, and the one its online stage used; None when the lines carry
    none), steps (int [N]), values (float [N]), boundary (the run's offline -> online step, None
    when it has no online stage).
    BC-stage lines are skipped (their step axis is separate). Empty when nobody logs `key`.
    """
    swept = swept_agents(runs)
    out = []
    for run in runs:
        domain, task = domain_and_task(run.env_name)
        boundary = online_boundary(run.offline_end, run.final_step)
        hparam = swept_hparam(run)
        groups: dict[tuple, list[dict]] = {}
        for r in run.train:
            if r.get("stage") == "bc" or key not in r:
                continue  # a null value stays: run_dir writes NaN and inf as null
            row = (int(r.get("task", task)), int(r.get("seed", 0)), line_value(r, hparam))
            groups.setdefault(row, []).append(r)
        for (task, seed, value), lines in sorted(
            groups.items(), key=lambda kv: (*kv[0][:2], kv[0][2] or 0)
        ):
            lines.sort(key=lambda r: int(r["step"]))
            out.append(
                dict(
                    label=row_label(run.agent, hparam, value, run.agent in swept),
                    domain=domain,
                    task=task,
                    seed=seed,
                    kl_budget=_last_value(lines, BUDGET),
                    kl_budget_online=_last_value(lines, BUDGET + ONLINE_SUFFIX),
                    steps=np.array([int(r["step"]) for r in lines], dtype=np.int64),
                    values=np.array([_to_float(r[key]) for r in lines], dtype=np.float64),
                    boundary=boundary,
                )
            )
    return out


def _last_value(lines: Sequence[dict], key: str) -> float | None:
    """The last value of `key` in `lines`, None when none carries it (the budgets of a row are
    the same on every line that carries them)."""
    values = [line_value(r, key) for r in lines]
    return next((v for v in reversed(values) if v is not None), None)


def _to_float(x) -> float:
    # json has no NaN/inf literal in strict mode: run_dir writes null, a logger may write strings.
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def collapse_report(series: Sequence[dict], key: str) -> list[str]:
    """Series whose values become non-finite (NaN or inf: a diverged critic)."""
    lines = []
    for s in series:
        bad = ~np.isfinite(s["values"])
        if bad.any():
            lines.append(
                f"{s['label']} / {s['domain']} task{s['task']} seed {s['seed']}: {key} is"
                f" non-finite from step {int(s['steps'][np.argmax(bad)])}"
            )
    return lines
