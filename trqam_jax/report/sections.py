"""The sections of report.md, built from the computed tables (see render.py for the format)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from trqam_jax.report.aggregates import RobustRow
from trqam_jax.report.records import ONLINE_SUFFIX, format_value
from trqam_jax.report.render import Bullets, Images, Section, Table
from trqam_jax.report.runs import Mark
from trqam_jax.report.tables import (
    DOMAIN_CODES,
    GEN_MARK,
    OFFLINE_MARK,
    PARTIAL_MARK,
    RowSummary,
    table_lines,
)
from trqam_jax.run_dir import Run

TITLE = "Results report"


def overview(
    runs: Sequence[Run], chosen: Sequence[dict], marks: Sequence[Mark], at: str, step: int | None
) -> Section:
    """Which runs, how many are in the table, and which evaluation step the table is at."""
    tabulated = len({r["path"] for r in chosen})
    text = f"Runs: {len(runs)} run directories, {tabulated} in the table"
    if marks:
        text += f", {len(marks)} marked (see `Marked runs`)"
    if chosen:
        used = sorted({r["step"] for r in chosen})
        at_text = f"step {step}" if step is not None else at
        step_text = f"{used[0]}" if len(used) == 1 else f"{used[0]}..{used[-1]} (they differ!)"
        text += f"; table at `{at_text}`; evaluation steps used: {step_text}"
    return Section(None, [text + "."], terminal=True)


def no_table() -> Section:
    """In place of the table when no run has fine-tuning evaluations."""
    text = "No run has fine-tuning evaluations to tabulate; `Marked runs` says why for each."
    return Section("Table", [text], terminal=True)


def marked(marks: Sequence[Mark]) -> Section:
    """Every run not shown in full: its status, why, and what of it the report shows."""
    if not marks:
        return Section("Marked runs", ["None: every run finished and is in the table."])
    lines = [["run directory", "status", "why", "shown"]]
    lines += [[f"`{m.path}`", m.status, m.reason, m.shown] for m in marks]
    return Section("Marked runs", [Table(lines)], terminal=True)


def table(
    rows: Sequence[RowSummary],
    domains: Sequence[str],
    pub: Sequence[dict],
    phase: str | None,
    holes: Sequence[str],
    ddof: int,
    offline_only: Collection[str] = (),
    online: Mapping[str, Collection[tuple[str, float, float]]] | None = None,
) -> Section:
    """The papers' table and its footnotes (how cells are computed, marks, sources).

    online: `records.online_values`, rows whose online stage used another value than the one
    their label names (said in a footnote).
    """
    foot = [
        "Success in %. Local rows: per domain, each seed's mean over the domain's tasks, then"
        f" mean ± std (ddof={ddof}) over seeds; `all` = mean of the domain means (± std over"
        " seeds of the per-seed mean over domains when every domain has the same seeds).",
        "Columns: "
        + ", ".join(f"{DOMAIN_CODES.get(d, d)} = {d}" for d in domains)
        + ". Published `all` is over the 10 domains of the paper.",
    ]
    if any(r.generated_domains for r in rows):
        foot.append(
            f"{GEN_MARK} computed on locally generated datasets (OGBench scripted oracles"
            " on this machine, `provenance.json` data_source = generated), not the official"
            " OGBench datasets: not directly comparable to published numbers. Domains: "
            + "; ".join(
                f"{r.label}: {', '.join(r.generated_domains)}" for r in rows if r.generated_domains
            )
        )
    if holes:
        foot.append(f"{PARTIAL_MARK} partial: tasks or seeds are missing (see `Missing` below).")
    if offline_only:
        foot.append(
            f"{OFFLINE_MARK} offline only: these runs have no online stage, so their final step"
            " is the offline end; the published rows beside them are after online fine-tuning"
            " (offline-to-online) and not comparable: "
            + ", ".join(sorted(offline_only))
            + ". Pass `--at offline_end` to compare offline numbers."
        )
    if online:
        foot.append(
            "Online stage: a label names its rows' offline value; the online updates of these"
            " rows used another one: "
            + "; ".join(
                f"{label}: {hparam} = {format_value(offline)} offline,"
                f" {hparam}{ONLINE_SUFFIX} = {format_value(value)}"
                for label in sorted(online)
                for hparam, offline, value in sorted(online[label])
            )
            + "."
        )
    if pub:
        srcs = sorted({p["source"] for p in pub})
        foot.append("Published rows (" + str(phase) + "), sources: " + "; ".join(srcs) + ".")
    elif phase is None:
        foot.append(
            "No published rows: the chosen evaluations are neither all at the offline end nor all"
            " at the final step. Pass `--at offline_end` or `--at final` to compare."
        )
    return Section(
        "Table",
        [Table(table_lines(rows, domains, pub, phase, offline_only)), Bullets(foot)],
        terminal=True,
    )


def robust(
    rows: Sequence[RobustRow], notes: Sequence[str], backend: str, ci: float, reps: int
) -> Section:
    """IQM, mean and optimality gap with their CIs (the same rows as robust.csv)."""
    text = (
        f"IQM, mean and optimality gap (γ = 100%) with {ci:.0%} stratified bootstrap CIs"
        f" ({reps} replications, runs resampled within each task; {backend})."
    )
    lines = [["method", "metric", "value (%)", "CI low", "CI high", "seeds x tasks"]]
    lines += [
        [
            r.label,
            r.metric,
            f"{100 * r.value:.1f}",
            f"{100 * r.low:.1f}",
            f"{100 * r.high:.1f}",
            f"{r.seeds} x {r.tasks}",
        ]
        for r in rows
    ]
    return Section("Robust aggregates (tasks x seeds)", [text, Table(lines), Bullets(notes)])


def missing(holes: Sequence[str]) -> Section:
    """Every hole of a partial sweep."""
    blocks = [Bullets(holes)] if holes else ["Nothing missing: the sweep is complete."]
    return Section("Missing", blocks, terminal=True)


def collapse(lines: Sequence[str]) -> Section:
    """Train series that became non-finite."""
    blocks = [Bullets(lines)] if lines else ["None detected."]
    return Section("Critic collapse (non-finite values)", blocks)


def plots(paths: Sequence[str]) -> Section:
    """The figures, by path relative to report.md."""
    return Section("Plots", [Images(paths)])


def run_dirs(runs: Sequence[Run]) -> Section:
    return Section("Run directories", [Bullets([f"`{r.path}`" for r in runs])])
