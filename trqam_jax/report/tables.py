"""The papers' table: per domain, each seed's mean over tasks, then mean +- std over seeds.

`summarize` turns scores into one RowSummary per label; `table_lines` and `csv_records` lay the
rows out (with published rows) for table.md and table.csv; `partial_report` lists every hole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from trqam_jax.data.names import PAPER_DOMAIN_CODES, TASKS_PER_DOMAIN
from trqam_jax.report.published import SHORT_SOURCE
from trqam_jax.report.records import ALL, order_domains

DOMAIN_CODES: dict[str, str] = dict(PAPER_DOMAIN_CODES)  # column headers
GEN_MARK = "*"  # computed on locally generated data
PARTIAL_MARK = "†"  # a task or seed is missing
OFFLINE_MARK = "‡"  # no online stage, beside published offline-to-online (final) numbers


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
# Laying the rows out


def fmt_cell(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def table_lines(
    rows: Sequence[RowSummary],
    domains: Sequence[str],
    pub: Sequence[dict],
    phase: str | None,
    offline_only: Collection[str] = (),
) -> list[list[str]]:
    """The table as a list of string rows (header first): method, source, domains..., all.

    offline_only: labels of runs without an online stage, marked OFFLINE_MARK (the caller passes
    them when the published rows are offline-to-online numbers).
    """
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
        if row.label in offline_only:
            name += f" {OFFLINE_MARK}"
            source += ", offline only"
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


def csv_records(
    rows: Sequence[RowSummary],
    domains: Sequence[str],
    pub: Sequence[dict],
    phase: str | None,
    offline_only: Collection[str] = (),
) -> list[dict]:
    """Long-format rows for table.csv (one per method x domain, `all` included); values in %.

    offline_only: as in `table_lines` (the `offline_only` column).
    """
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
                    offline_only=row.label in offline_only,
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
                    offline_only=False,
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
    "offline_only",
)
