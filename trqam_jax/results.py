"""Loading run directories and aggregating their evaluations the way the papers do.

Everything here is a pure function of plain Python containers and numpy arrays, except the
`load_*` / `expand_run_dirs` functions, which only read files. No JAX import: the report must run
on a laptop without the training stack.

Vocabulary used throughout:
  record   one line of eval.jsonl joined with its run's identity (a flat dict, see `eval_records`).
  label    a table row: the agent name, plus `[eps=X]` when that agent's runs sweep kl_budget.
  scores   nested dict `{label: {domain: {task: {seed: success}}}}`, success in 0..1, at one
           evaluation step per (label, domain, task, seed) chosen by `select_scores`.

The run-directory contract is docs/run_directory.md.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

# The paper's 10 OGBench domains, in the column order of its tables, with their short codes.
DOMAINS: tuple[tuple[str, str], ...] = (
    ("antmaze-large-navigate", "al"),
    ("antmaze-giant-navigate", "ag"),
    ("humanoidmaze-medium-navigate", "hm"),
    ("humanoidmaze-large-navigate", "hl"),
    ("scene-play", "scene"),
    ("puzzle-3x3-play", "p33"),
    ("puzzle-4x4-play", "p44"),
    ("cube-double-play", "c2"),
    ("cube-triple-play", "c3"),
    ("cube-quadruple-play", "c4"),
)
DOMAIN_CODES: dict[str, str] = dict(DOMAINS)
CODE_TO_DOMAIN: dict[str, str] = {code: dom for dom, code in DOMAINS}
TASKS_PER_DOMAIN = 5
ALL = "all"

PUBLISHED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published")
TRQAM_SOURCE = "TRQAM paper (arXiv 2605.27079), offline table, 8 seeds"
QAM_SOURCE = "QAM paper (arXiv 2601.14234), released data, 12 seeds"
# Short names for the table's source column; the footnote prints the full source.
SHORT_SOURCE = {TRQAM_SOURCE: "TRQAM paper", QAM_SOURCE: "QAM release"}
# Methods of the QAM release shown by default: the ones this repository implements or compares to.
QAM_RELEASE_DEFAULT = ("QAM", "QAM-E", "QAM-F", "FQL")

_ENV_RE = re.compile(r"^(?P<domain>.+)-singletask-task(?P<task>\d+)-v\d+$")


class ReportError(ValueError):
    """Bad input to the report; the message names the path and the fix."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory, parsed.

    path: the directory. config / provenance: the json files as dicts.
    evals / train: the jsonl files as lists of dicts (one per line, in file order).
    """

    path: str
    config: dict
    provenance: dict
    evals: list[dict]
    train: list[dict]

    @property
    def agent(self) -> str:
        # The launcher writes the whole agent config; its agent_name names the agent.
        agent = self.config["agent"]
        return str(agent["agent_name"] if isinstance(agent, dict) else agent)

    @property
    def env_name(self) -> str:
        return str(self.config["env_name"])

    @property
    def generated(self) -> bool:
        return self.provenance.get("data_source") == "generated"

    @property
    def offline_end(self) -> int:
        return int(self.config.get("offline_steps", 0))

    @property
    def final_step(self) -> int:
        return int(self.config.get("offline_steps", 0)) + int(self.config.get("online_steps", 0))


# ----------------------------------------------------------------------------------------------
# Loading


def domain_and_task(env_name: str) -> tuple[str, int]:
    """`cube-double-play-singletask-task2-v0` -> (`cube-double-play`, 2)."""
    m = _ENV_RE.match(env_name)
    if m is None:
        raise ReportError(
            f"env_name {env_name!r} is not of the form '<domain>-singletask-task<N>-v<K>'"
        )
    return m.group("domain"), int(m.group("task"))


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def expand_run_dirs(paths: Sequence[str]) -> list[str]:
    """Run directories named by `paths`; a directory of run directories (a sweep) is expanded.

    Raises ReportError naming the path when it is neither.
    """
    out = []
    for p in paths:
        if not os.path.isdir(p):
            raise ReportError(
                f"{p}: not a directory. Pass run directories written by `python -m experiments.run`"
                " (each holds config.json, provenance.json, eval.jsonl)."
            )
        if is_run_dir(p):
            out.append(p)
            continue
        children = sorted(
            os.path.join(p, c) for c in os.listdir(p) if is_run_dir(os.path.join(p, c))
        )
        if not children:
            raise ReportError(
                f"{p}: not a run directory (no config.json) and holds no run directories. Pass"
                " the directory that contains config.json, provenance.json and eval.jsonl, or its"
                " parent sweep directory."
            )
        out.extend(children)
    return out


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ReportError(
            f"{path}: missing. A run directory written by `python -m experiments.run` has it from"
            " the start; pass a complete run directory."
        )
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e}); fix or regenerate the file.") from e


def _read_jsonl(path: str, required: bool) -> list[dict]:
    if not os.path.isfile(path):
        if required:
            raise ReportError(
                f"{path}: missing. The run has not evaluated yet: wait for the first evaluation or"
                " leave this run out."
            )
        return []
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                # A run killed mid-write leaves a truncated last line; say which one.
                raise ReportError(
                    f"{path}:{i}: not valid JSON ({e}). Delete the broken line (a run killed"
                    " mid-write leaves one) and rerun the report."
                ) from e
    if required and not rows:
        raise ReportError(
            f"{path}: empty. The run has not evaluated yet: wait for its first evaluation or leave"
            " this run directory out of the report."
        )
    return rows


def load_run(path: str) -> Run:
    """Parse one run directory (docs/run_directory.md). Raises ReportError naming the bad file."""
    if not is_run_dir(path):
        raise ReportError(
            f"{path}: not a run directory (no config.json). Pass the directory written by"
            " `python -m experiments.run`."
        )
    config = _read_json(os.path.join(path, "config.json"))
    for key in ("agent", "env_name"):
        if key not in config:
            raise ReportError(f"{os.path.join(path, 'config.json')}: has no {key!r} field.")
    domain_and_task(config["env_name"])  # validate early, with the path in the traceback context
    provenance = _read_json(os.path.join(path, "provenance.json"))
    evals = _read_jsonl(os.path.join(path, "eval.jsonl"), required=True)
    for i, r in enumerate(evals, start=1):
        missing = [k for k in ("step", "seed", "success") if k not in r]
        if missing:
            raise ReportError(f"{os.path.join(path, 'eval.jsonl')}:{i}: lacks fields {missing}.")
    train = _read_jsonl(os.path.join(path, "train_metrics.jsonl"), required=False)
    return Run(path=path, config=config, provenance=provenance, evals=evals, train=train)


def load_runs(paths: Sequence[str]) -> list[Run]:
    """`expand_run_dirs` then `load_run` on each."""
    return [load_run(p) for p in expand_run_dirs(paths)]


# ----------------------------------------------------------------------------------------------
# Row labels (agents and the kl_budget sweep axis)


def format_eps(eps: float) -> str:
    # str(float) keeps `1.0` recognisable as a budget (format "g" would print `1`).
    return str(float(eps))


def swept_agents(runs: Iterable[Run]) -> set[str]:
    """Agents whose runs use more than one kl_budget for the same task.

    Such agents get one table row per budget (`trqam[eps=0.5]`). A budget that only varies from
    domain to domain (the paper's per-domain epsilon) is a hyperparameter, not a sweep: one row.
    """
    budgets: dict[tuple[str, str], set] = {}
    for run in runs:
        key = (run.agent, run.env_name)
        seen = budgets.setdefault(key, set())
        for r in run.evals:
            if r.get("kl_budget") is not None:
                seen.add(float(r["kl_budget"]))
        if len(run.config.get("kl_budgets") or []) > 1:
            seen.update(float(b) for b in run.config["kl_budgets"])
    return {agent for (agent, _), s in budgets.items() if len(s) > 1}


def row_label(agent: str, kl_budget: float | None, swept: bool) -> str:
    if swept and kl_budget is not None:
        return f"{agent}[eps={format_eps(kl_budget)}]"
    return agent


def eval_records(runs: Sequence[Run]) -> list[dict]:
    """Flatten the runs' eval.jsonl lines into records.

    Returns a list of dicts with keys: label, agent, kl_budget (float | None), domain, task (int),
    seed (int), step (int), stage (str), success (float in 0..1), generated (bool), path,
    offline_end (int), final_step (int).
    BC-stage evaluations are dropped: their steps are counted separately from the fine-tuning
    steps (docs/run_directory.md), so they would collide with offline steps of the same number.
    """
    swept = swept_agents(runs)
    out = []
    for run in runs:
        domain, task = domain_and_task(run.env_name)
        for r in run.evals:
            if r.get("stage") == "bc":
                continue
            kl = r.get("kl_budget")
            kl = None if kl is None else float(kl)
            out.append(
                dict(
                    label=row_label(run.agent, kl, run.agent in swept),
                    agent=run.agent,
                    kl_budget=kl,
                    domain=domain,
                    task=task,
                    seed=int(r["seed"]),
                    step=int(r["step"]),
                    stage=str(r.get("stage", "")),
                    success=float(r["success"]),
                    generated=run.generated,
                    path=run.path,
                    offline_end=run.offline_end,
                    final_step=run.final_step,
                )
            )
    return out


def check_duplicates(records: Sequence[dict]) -> None:
    """Two run directories must not both provide the same (row, task, seed): raise if they do."""
    owner: dict[tuple, str] = {}
    for r in records:
        key = (r["label"], r["domain"], r["task"], r["seed"])
        prev = owner.setdefault(key, r["path"])
        if prev != r["path"]:
            raise ReportError(
                f"{prev} and {r['path']} both hold {r['label']} {r['domain']} task{r['task']}"
                f" seed {r['seed']}: pass only one of them (reruns of the same seed are not"
                " averaged)."
            )


def expected_seeds(runs: Sequence[Run], records: Sequence[dict]) -> dict[str, set[int]]:
    """Seeds every row should have on every task: seeds seen anywhere in the row, plus
    range(config.seeds) of its runs that do not sweep kl_budget (a seed that crashed before its
    first evaluation then still shows up as missing). Returns {label: set of seed ids}."""
    out: dict[str, set[int]] = {}
    for r in records:
        out.setdefault(r["label"], set()).add(r["seed"])
    swept = swept_agents(runs)
    by_path: dict[str, set[str]] = {}
    for r in records:
        by_path.setdefault(r["path"], set()).add(r["label"])
    for run in runs:
        if run.agent in swept or "seeds" not in run.config:
            continue  # seed ids of a budget sweep need not start at 0 for every budget
        for label in by_path.get(run.path, ()):
            out[label].update(range(int(run.config["seeds"])))
    return out


# ----------------------------------------------------------------------------------------------
# Choosing the evaluation step


AT_CHOICES = ("last", "offline_end", "final")


def select_scores(
    records: Sequence[dict], at: str = "last", step: int | None = None
) -> tuple[dict, list[dict], list[str]]:
    """Pick one evaluation per (label, domain, task, seed).

    at: `last` (the seed's last evaluation), `offline_end` (step == config offline_steps),
      `final` (step == offline_steps + online_steps); ignored when `step` is given (exact match).
    Returns (scores, chosen, missing):
      scores  {label: {domain: {task: {seed: success}}}}
      chosen  the selected records (to report which steps were used)
      missing one message per (label, domain, task, seed) that has evaluations but none at the
              requested step.
    When two records share the step (the boundary evaluated as both `offline` and `online`),
    `offline_end` keeps the offline one and the other choices keep the later line.
    """
    if at not in AT_CHOICES:
        raise ReportError(f"--at must be one of {AT_CHOICES}, got {at!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], r["domain"], r["task"], r["seed"]), []).append(r)
    scores: dict = {}
    chosen, missing = [], []
    for key, rs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        if step is not None:
            target, what = int(step), f"step {step}"
        elif at == "offline_end":
            target, what = rs[0]["offline_end"], f"the offline end (step {rs[0]['offline_end']})"
        elif at == "final":
            target, what = rs[0]["final_step"], f"the final step ({rs[0]['final_step']})"
        else:
            target, what = max(r["step"] for r in rs), "last"
        hits = [r for r in rs if r["step"] == target]
        if not hits:
            label, domain, task, seed = key
            missing.append(
                f"{label} / {domain} task{task} seed {seed}: no evaluation at {what}"
                f" (last evaluated step {max(r['step'] for r in rs)})"
            )
            continue
        if at == "offline_end" and step is None:
            hits = [r for r in hits if r["stage"] == "offline"] or hits
        pick = hits[-1]
        chosen.append(pick)
        label, domain, task, seed = key
        scores.setdefault(label, {}).setdefault(domain, {}).setdefault(task, {})[seed] = pick[
            "success"
        ]
    return scores, chosen, missing


def _sort_key(key: tuple) -> tuple:
    label, domain, task, seed = key
    return (label, _domain_order(domain), domain, task, seed)


def _domain_order(domain: str) -> int:
    names = [d for d, _ in DOMAINS]
    return names.index(domain) if domain in names else len(names)


def order_domains(domains: Iterable[str]) -> list[str]:
    """Paper column order first, then unknown domains alphabetically."""
    return sorted(set(domains), key=lambda d: (_domain_order(d), d))


# ----------------------------------------------------------------------------------------------
# The papers' table: domain = per-seed mean over tasks, then mean +- std over seeds


@dataclasses.dataclass(frozen=True)
class DomainScore:
    """One table cell. mean/std in 0..1 (None when no seed is complete).

    per_seed: {seed: mean over tasks_present}. seeds_dropped: {seed: [tasks it lacks]}.
    tasks_missing: expected task numbers with no evaluation at all.
    """

    mean: float | None
    std: float | None
    per_seed: dict[int, float]
    tasks_present: tuple[int, ...]
    tasks_missing: tuple[int, ...]
    seeds_missing: tuple[int, ...]
    seeds_dropped: dict[int, list[int]]

    @property
    def partial(self) -> bool:
        return bool(self.tasks_missing or self.seeds_dropped or self.seeds_missing)


def domain_score(
    task_scores: Mapping[int, Mapping[int, float]],
    expected_tasks: Iterable[int] = range(1, TASKS_PER_DOMAIN + 1),
    expected_seed_ids: Iterable[int] = (),
    ddof: int = 0,
) -> DomainScore:
    """Score of one domain for one row.

    task_scores: {task: {seed: success}}. A seed counts only if it has every present task: a
    per-seed mean over a different set of tasks would not be comparable across seeds.
    std is over seeds with `ddof` (0, numpy's default, unless told otherwise).
    """
    tasks = tuple(sorted(task_scores))
    expected_tasks = set(expected_tasks)
    all_seeds = set(expected_seed_ids)
    for t in tasks:
        all_seeds.update(task_scores[t])
    per_seed, dropped = {}, {}
    for s in sorted(all_seeds):
        lacking = [t for t in tasks if s not in task_scores[t]]
        if lacking:
            if len(lacking) < len(tasks):
                dropped[s] = lacking
            continue
        per_seed[s] = float(np.mean([task_scores[t][s] for t in tasks]))
    seeds_missing = tuple(sorted(s for s in all_seeds if s not in per_seed and s not in dropped))
    vals = np.array(list(per_seed.values()))
    mean = float(vals.mean()) if vals.size else None
    std = float(vals.std(ddof=ddof)) if vals.size > ddof else None
    return DomainScore(
        mean=mean,
        std=std,
        per_seed=per_seed,
        tasks_present=tasks,
        tasks_missing=tuple(sorted(expected_tasks - set(tasks))),
        seeds_missing=seeds_missing,
        seeds_dropped=dropped,
    )


@dataclasses.dataclass(frozen=True)
class RowSummary:
    """One table row: {domain: DomainScore}, and `all` = mean of the domain means (0..1).

    all_std: std over seeds of the per-seed mean over domains, when every domain kept the same
    seeds (otherwise None: a per-seed average over different domains is not defined).
    """

    label: str
    domains: dict[str, DomainScore]
    all_mean: float | None
    all_std: float | None
    generated_domains: tuple[str, ...]


def summarize_row(
    label: str,
    row_scores: Mapping[str, Mapping[int, Mapping[int, float]]],
    expected_seed_ids: Iterable[int] = (),
    generated_domains: Iterable[str] = (),
    ddof: int = 0,
) -> RowSummary:
    """row_scores: {domain: {task: {seed: success}}} for one label."""
    seeds = tuple(expected_seed_ids)
    doms = {d: domain_score(row_scores[d], expected_seed_ids=seeds, ddof=ddof) for d in row_scores}
    means = [s.mean for s in doms.values() if s.mean is not None]
    all_mean = float(np.mean(means)) if means else None
    all_std = None
    seed_sets = {tuple(sorted(s.per_seed)) for s in doms.values()}
    if len(seed_sets) == 1 and means and len(means) == len(doms):
        common = next(iter(seed_sets))
        per_seed = [np.mean([doms[d].per_seed[s] for d in doms]) for s in common]
        if len(per_seed) > ddof:
            all_std = float(np.std(per_seed, ddof=ddof))
    return RowSummary(
        label=label,
        domains=doms,
        all_mean=all_mean,
        all_std=all_std,
        generated_domains=tuple(order_domains(generated_domains)),
    )


def summarize(
    scores: Mapping, expected: Mapping[str, set[int]], generated: Mapping[str, set[str]], ddof=0
) -> list[RowSummary]:
    """RowSummary per label of `scores` (see select_scores), labels sorted."""
    return [
        summarize_row(
            label,
            scores[label],
            sorted(expected.get(label, ())),
            generated.get(label, ()),
            ddof=ddof,
        )
        for label in sorted(scores)
    ]


def generated_domains(records: Sequence[dict]) -> dict[str, set[str]]:
    """{label: domains with at least one run on locally generated data}."""
    out: dict[str, set[str]] = {}
    for r in records:
        if r["generated"]:
            out.setdefault(r["label"], set()).add(r["domain"])
    return out


def partial_report(rows: Sequence[RowSummary], table_domains: Sequence[str]) -> list[str]:
    """Human-readable lines for every hole in the table (empty when the sweep is complete)."""
    lines = []
    for row in rows:
        for d in table_domains:
            s = row.domains.get(d)
            if s is None:
                lines.append(f"{row.label} / {d}: no runs (cell left empty, not in `all`)")
                continue
            if s.tasks_missing:
                lines.append(
                    f"{row.label} / {d}: tasks {list(s.tasks_missing)} have no evaluation; the"
                    f" domain mean is over {len(s.tasks_present)} of"
                    f" {len(s.tasks_present) + len(s.tasks_missing)} tasks (flagged)"
                )
            if s.seeds_missing:
                lines.append(f"{row.label} / {d}: seeds {list(s.seeds_missing)} have no evaluation")
            for seed, lacking in s.seeds_dropped.items():
                lines.append(
                    f"{row.label} / {d}: seed {seed} dropped from the domain score (no evaluation"
                    f" for tasks {lacking})"
                )
            if s.mean is None:
                lines.append(f"{row.label} / {d}: no seed has every task; no score")
    return lines


# ----------------------------------------------------------------------------------------------
# Robust aggregates (rliable): IQM and optimality gap with stratified bootstrap CIs


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


# ----------------------------------------------------------------------------------------------
# Curves over training


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


def train_series(runs: Sequence[Run], key: str) -> list[dict]:
    """One series per (run, seed, kl_budget) of a train_metrics.jsonl field.

    Returns dicts: label, domain, task, seed, kl_budget, steps (int [N]), values (float [N]).
    BC-stage lines are skipped (their step axis is separate). Empty when nobody logs `key`.
    """
    swept = swept_agents(runs)
    out = []
    for run in runs:
        domain, task = domain_and_task(run.env_name)
        groups: dict[tuple, list[tuple[int, float]]] = {}
        for r in run.train:
            if r.get("stage") == "bc" or key not in r or r[key] is None:
                continue
            kl = r.get("kl_budget")
            kl = None if kl is None else float(kl)
            groups.setdefault((int(r.get("seed", 0)), kl), []).append((int(r["step"]), r[key]))
        for (seed, kl), pts in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            pts.sort()
            out.append(
                dict(
                    label=row_label(run.agent, kl, run.agent in swept),
                    domain=domain,
                    task=task,
                    seed=seed,
                    kl_budget=kl,
                    steps=np.array([p[0] for p in pts], dtype=np.int64),
                    values=np.array([_to_float(p[1]) for p in pts], dtype=np.float64),
                )
            )
    return out


def _to_float(x) -> float:
    # json has no NaN/inf literal in strict mode; a logger may write them as strings.
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


# ----------------------------------------------------------------------------------------------
# Published numbers


def _pct_pm(cell: str) -> tuple[float, float | None]:
    cell = cell.strip()
    if "±" in cell:
        m, s = cell.split("±")
        return float(m), float(s)
    return float(cell), None


def load_published(directory: str = PUBLISHED_DIR) -> list[dict]:
    """Published per-domain success (%) from the shipped CSVs.

    Returns dicts: method, source, phase (`offline_end` | `final`), domain (full name or `all`),
    mean_pct (float), std_pct (float | None), n_seeds (int).
    """
    out = []
    path = os.path.join(directory, "trqam_offline_table.csv")
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and not ln.startswith("#")]
    for row in csv.DictReader(lines):
        for code, cell in row.items():
            if code == "method":
                continue
            mean, std = _pct_pm(cell)
            out.append(
                dict(
                    method=row["method"],
                    source=TRQAM_SOURCE,
                    phase="offline_end",
                    domain=ALL if code == ALL else CODE_TO_DOMAIN[code],
                    mean_pct=mean,
                    std_pct=std,
                    n_seeds=8,
                )
            )
    path = os.path.join(directory, "qam_release_domains.csv")
    with open(path) as f:
        for row in csv.DictReader(f):
            for phase in ("offline_end", "final"):
                if not row[f"{phase}_success_pct"].strip():
                    continue  # online-only methods (RLPD) have no offline-end number
                out.append(
                    dict(
                        method=row["method"],
                        source=QAM_SOURCE,
                        phase=phase,
                        domain=row["domain"],
                        mean_pct=float(row[f"{phase}_success_pct"]),
                        std_pct=float(row[f"{phase}_seed_std_pct"]),
                        n_seeds=int(row["n_seeds"]),
                    )
                )
    return out


def published_phase(chosen: Sequence[dict], at: str, step: int | None) -> str | None:
    """Which published column the local table is comparable to, or None.

    `offline_end`/`final` when requested, or when every chosen evaluation sits exactly at that
    point of its run; None otherwise (then published rows would compare different budgets).
    """
    if step is None and at in ("offline_end", "final"):
        return at
    if chosen and all(r["step"] == r["offline_end"] for r in chosen):
        return "offline_end"
    if chosen and all(r["step"] == r["final_step"] for r in chosen):
        return "final"
    return None


def published_rows(
    published: Sequence[dict], phase: str, methods: Sequence[str] | None = None
) -> list[dict]:
    """Published rows for one phase: [{method, source, cells: {domain: (mean_pct, std_pct)}}].

    Default methods: all 7 of the TRQAM table, plus QAM_RELEASE_DEFAULT from the QAM release.
    """
    rows: dict[tuple[str, str], dict] = {}
    for p in published:
        if p["phase"] != phase:
            continue
        if methods is not None:
            if p["method"] not in methods:
                continue
        elif p["source"] != TRQAM_SOURCE and p["method"] not in QAM_RELEASE_DEFAULT:
            continue
        row = rows.setdefault(
            (p["source"], p["method"]), dict(method=p["method"], source=p["source"], cells={})
        )
        row["cells"][p["domain"]] = (p["mean_pct"], p["std_pct"])
    return list(rows.values())


# ----------------------------------------------------------------------------------------------
# Rendering


def fmt_cell(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


GEN_MARK = "*"
PARTIAL_MARK = "†"


def table_lines(
    rows: Sequence[RowSummary], domains: Sequence[str], pub: Sequence[dict], phase: str | None
) -> list[list[str]]:
    """The table as a list of string rows (header first): method, source, domains..., all."""
    header = ["method", "source"] + [DOMAIN_CODES.get(d, d) for d in domains] + [ALL]
    out = [header]
    for row in rows:
        cells = []
        for d in domains:
            s = row.domains.get(d)
            if s is None:
                cells.append("-")
                continue
            c = fmt_cell(s.mean, s.std)
            if s.partial:
                c += " " + PARTIAL_MARK
            if d in row.generated_domains:
                c += " " + GEN_MARK
            cells.append(c)
        all_c = fmt_cell(row.all_mean, row.all_std)
        if any(row.domains.get(d) is None or row.domains[d].partial for d in domains):
            all_c += " " + PARTIAL_MARK
        name = row.label + (f" {GEN_MARK}" if row.generated_domains else "")
        source = "this repo (generated data)" if row.generated_domains else "this repo"
        out.append([name, source] + cells + [all_c])
    for p in pub:
        cells = [_fmt_pub(p["cells"].get(d)) for d in domains]
        src = SHORT_SOURCE.get(p["source"], p["source"])
        out.append([p["method"], f"published: {src}"] + cells + [_fmt_pub(p["cells"].get(ALL))])
    return out


def _fmt_pub(cell: tuple[float, float | None] | None) -> str:
    # Published numbers keep the precision they were published with (integers in the TRQAM
    # table); adding decimals would suggest a precision the source does not have.
    if cell is None:
        return "n/a"
    mean, std = cell
    return f"{mean:g}" if std is None else f"{mean:g} ± {std:g}"


def markdown_table(lines: Sequence[Sequence[str]]) -> str:
    head, *body = lines
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(md)


def csv_records(
    rows: Sequence[RowSummary], domains: Sequence[str], pub: Sequence[dict], phase: str | None
) -> list[dict]:
    """Long-format rows for table.csv (one per method x domain, `all` included); values in %."""
    out = []
    for row in rows:
        for d in list(domains) + [ALL]:
            if d == ALL:
                mean, std, n, n_tasks = row.all_mean, row.all_std, None, None
                partial = any(row.domains.get(x) is None or row.domains[x].partial for x in domains)
            else:
                s = row.domains.get(d)
                if s is None:
                    continue
                mean, std, n, partial = s.mean, s.std, len(s.per_seed), s.partial
                n_tasks = len(s.tasks_present)
            out.append(
                dict(
                    method=row.label,
                    source="this repo",
                    phase=phase or "",
                    domain=d,
                    mean_pct=None if mean is None else round(100 * mean, 4),
                    std_pct=None if std is None else round(100 * std, 4),
                    n_seeds=n,
                    n_tasks=n_tasks,
                    partial=partial,
                    generated=d in row.generated_domains
                    or (d == ALL and bool(row.generated_domains)),
                )
            )
    for p in pub:
        for d in list(domains) + [ALL]:
            if d not in p["cells"]:
                continue
            mean, std = p["cells"][d]
            out.append(
                dict(
                    method=p["method"],
                    source=f"published: {p['source']}",
                    phase=phase,
                    domain=d,
                    mean_pct=mean,
                    std_pct=std,
                    n_seeds=None,
                    n_tasks=None,
                    partial=False,
                    generated=False,
                )
            )
    return out


CSV_FIELDS = (
    "method",
    "source",
    "phase",
    "domain",
    "mean_pct",
    "std_pct",
    "n_seeds",
    "n_tasks",
    "partial",
    "generated",
)
