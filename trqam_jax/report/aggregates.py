"""Robust aggregates (rliable): IQM, mean and optimality gap with stratified bootstrap CIs.

The matrix of one row is (seeds, domain x task) of success in 0..1, as rliable lays it out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from trqam_jax.report.records import order_domains


def score_matrix(
    row_scores: Mapping[str, Mapping[int, Mapping[int, float]]],
) -> tuple[np.ndarray, list[int], list[str], list[int]]:
    """rliable's layout for one row: (num_runs, num_tasks) = (seeds, domain x task).

    Only seeds present on every task are kept (rliable needs a full matrix).
    Returns (matrix float64 [S, T], seeds kept, task names `domain/taskN`, seeds dropped).
    """
    cols = [(d, t) for d in order_domains(row_scores) for t in sorted(row_scores[d])]
    seed_sets = [set(row_scores[d][t]) for d, t in cols]
    every = sorted(set.union(*seed_sets)) if seed_sets else []
    common = sorted(set.intersection(*seed_sets)) if seed_sets else []
    mat = np.array([[row_scores[d][t][s] for d, t in cols] for s in common], dtype=np.float64)
    mat = mat.reshape(len(common), len(cols))
    return mat, common, [f"{d}/task{t}" for d, t in cols], [s for s in every if s not in common]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all entries (25% trimmed each side), via rliable.metrics."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(scores))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    from rliable import metrics

    return float(metrics.aggregate_optimality_gap(scores, gamma))


def _aggregates(scores: np.ndarray) -> np.ndarray:
    return np.array([iqm(scores), float(np.mean(scores)), optimality_gap(scores)])


AGGREGATE_NAMES = ("IQM", "mean", "optimality gap")


def _numpy_stratified_bootstrap(
    scores: np.ndarray, func: Callable, reps: int, ci: float, seed: int
) -> np.ndarray:
    # Same scheme as rliable.library.StratifiedBootstrap (task_bootstrap=False): within each
    # task, resample the runs with replacement; percentile interval.
    rng = np.random.default_rng(seed)
    n, m = scores.shape
    stats = np.empty((reps, len(func(scores))))
    cols = np.arange(m)[None, :]
    for i in range(reps):
        stats[i] = func(scores[rng.integers(0, n, size=(n, m)), cols])
    alpha = (1.0 - ci) / 2.0
    return np.quantile(stats, [alpha, 1.0 - alpha], axis=0)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def rliable_backend() -> tuple[Callable | None, str]:
    """(rliable.library.get_interval_estimates or None, a note on why not)."""
    try:
        from rliable import library
    except Exception as e:  # any import failure of its arch/pandas stack
        # rliable 1.2.0 imports `arch`; arch 7.x fails to import under pandas 3 and arch 8
        # rejects rliable's random_state keyword. The metrics still come from rliable.metrics.
        return None, (
            f"rliable.library failed to import ({type(e).__name__}: {_one_line(e)});"
            " confidence intervals use an equivalent numpy stratified bootstrap"
        )
    return library.get_interval_estimates, "rliable.library.get_interval_estimates"


def robust_aggregates(
    matrices: Mapping[str, np.ndarray], reps: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[dict[str, dict[str, tuple[float, float, float]]], str]:
    """IQM, mean and optimality gap (gamma=1) with stratified bootstrap CIs per row.

    matrices: {label: float array [num_seeds, num_tasks]} of success in 0..1.
    Returns ({label: {name: (point, low, high)}}, a note naming the CI implementation).
    """
    get_interval_estimates, note = rliable_backend()
    out = {}
    for label, mat in matrices.items():
        point = _aggregates(mat)
        lohi = None
        if get_interval_estimates is not None:
            # rliable draws from numpy's global RNG: seed it for reproducibility, then restore
            # the caller's state so this function has no lasting side effect.
            state = np.random.get_state()
            try:
                np.random.seed(seed)
                _, intervals = get_interval_estimates(
                    {label: mat}, _aggregates, reps=reps, confidence_interval_size=ci
                )
                lohi = np.asarray(intervals[label])
            except Exception as e:  # broken arch versions fail at call time
                get_interval_estimates = None
                note = (
                    f"rliable.library failed ({type(e).__name__}: {_one_line(e)});"
                    " confidence intervals use an equivalent numpy stratified bootstrap"
                )
            finally:
                np.random.set_state(state)
        if lohi is None:
            lohi = _numpy_stratified_bootstrap(mat, _aggregates, reps, ci, seed)
        out[label] = {
            name: (float(point[i]), float(lohi[0, i]), float(lohi[1, i]))
            for i, name in enumerate(AGGREGATE_NAMES)
        }
    return out, note


@dataclasses.dataclass(frozen=True)
class RobustRow:
    """One aggregate of one table row: value and CI in 0..1 over a seeds x tasks matrix."""

    label: str
    metric: str  # one of AGGREGATE_NAMES
    value: float
    low: float
    high: float
    seeds: int
    tasks: int


def robust_rows(
    scores: Mapping, reps: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[list[RobustRow], list[str], str]:
    """`robust_aggregates` of every label of `scores` (see records.select_scores).

    Returns (rows, one note per label or seed left out of the bootstrap, the CI backend note).
    """
    matrices, notes = {}, []
    for label in sorted(scores):
        mat, _, _, dropped = score_matrix(scores[label])
        if dropped:
            notes.append(
                f"{label}: seeds {dropped} lack some task and are left out of the bootstrap"
            )
        if mat.shape[0] == 0:
            notes.append(f"{label}: no seed has every task; no robust aggregates")
            continue
        matrices[label] = mat
    aggregates, backend = robust_aggregates(matrices, reps=reps, ci=ci, seed=seed)
    rows = [
        RobustRow(label, name, value, low, high, *matrices[label].shape)
        for label, by_name in aggregates.items()
        for name, (value, low, high) in by_name.items()
    ]
    return rows, notes, backend
