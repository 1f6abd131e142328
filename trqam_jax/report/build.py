"""`write_report`: run directories and sweep roots in, report.md, tables and plots out.

The one entry point of the report: `experiments.report` is a command line over it and the sweep
calls it on its root. It renders every run with evaluations and marks the others with a reason
(`runs.Mark`) instead of refusing them; it raises only for input a user must fix.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

from trqam_jax import run_dir
from trqam_jax.report import aggregates, curves, published, records, render, runs, sections, tables

# The errors a user fixes (a path that is no run directory nor sweep root, a broken file, two
# directories holding the same seed, a requested step no run has); their messages are one line
# naming the path or value and the fix.
USER_ERRORS = (run_dir.RunDirError, records.ReportError)


@dataclasses.dataclass(frozen=True)
class Written:
    """What `write_report` made.

    out: the output directory. files: every file written, report.md first. tabulated: the run
    directories whose evaluations are in the table. marks: the runs not shown in full, each with
    its reason (`runs.Mark`). sections: the report's sections (`render.render_terminal` prints
    the ones meant for a terminal).
    """

    out: str
    files: tuple[str, ...]
    tabulated: tuple[str, ...]
    marks: tuple[runs.Mark, ...]
    sections: tuple[render.Section, ...]


def write_report(
    paths: Sequence[str],
    out: str,
    *,
    plots: bool = True,
    at: str = "last",
    step: int | None = None,
    reps: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    ddof: int = 0,
    published_methods: Sequence[str] | None = None,
) -> Written:
    """Write the report of `paths` (run directories and/or sweep roots) to `out`.

    Files: report.md always; table.md, table.csv and robust.csv when some run has fine-tuning
    evaluations; plots/*.png when `plots`. `at` / `step`: which evaluation goes in the table
    (`records.select_scores`); `reps`, `ci`, `seed`: the bootstrap of the robust aggregates;
    `ddof`: the std over seeds; `published_methods`: published rows to show (None: the default
    set, []: none).
    Raises USER_ERRORS (see above).
    """
    loaded, marks = runs.load(runs.find_runs(paths))
    diverged = {m.path for m in marks if m.status == runs.DIVERGED}
    recs_all = records.eval_records(loaded)
    records.check_duplicates(recs_all)
    recs = [r for r in recs_all if r["path"] not in diverged]
    os.makedirs(out, exist_ok=True)
    table_sections, chosen, files = [sections.no_table()], [], []
    if recs:
        table_sections, chosen, files = _table_sections(
            loaded, recs, out, at, step, reps, ci, seed, ddof, published_methods
        )
    collapse = []
    for key in ("critic_loss", "q_mean"):
        collapse += curves.collapse_report(curves.train_series(loaded, key), key)
    report = [
        sections.overview(loaded, chosen, marks, at, step),
        *table_sections,
        sections.marked(marks),
        sections.collapse(collapse),
    ]
    if plots:
        plot_paths = _plots(loaded, recs_all, out, min(reps, 1000))
        files += plot_paths
        if plot_paths:
            report.append(sections.plots([os.path.relpath(p, out) for p in plot_paths]))
    report.append(sections.run_dirs(loaded))
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write(render.render_document(sections.TITLE, report))
    return Written(
        out=out,
        files=(path, *files),
        tabulated=tuple(sorted({r["path"] for r in chosen})),
        marks=tuple(marks),
        sections=tuple(report),
    )


def _table_sections(loaded, recs, out, at, step, reps, ci, seed, ddof, methods):
    """(the table, robust aggregates and holes sections, the chosen records, the files written:
    table.md, table.csv, robust.csv)."""
    scores, chosen, step_missing = records.select_scores(recs, at, step)
    if not scores:
        raise records.ReportError(
            "no run has an evaluation at the requested step (pass --at last, or another --step):"
            " " + "; ".join(step_missing)
        )
    expected = records.expected_seeds(loaded, recs)
    rows = tables.summarize(scores, expected, records.generated_domains(recs), ddof=ddof)
    domains = records.order_domains(r["domain"] for r in recs)
    phase = published.published_phase(chosen, at, step)
    pub = published.published_rows(published.load_published(), phase, methods) if phase else []
    offline_only = records.offline_only_labels(chosen) if phase == "final" else set()
    robust, robust_notes, backend = aggregates.robust_rows(scores, reps=reps, ci=ci, seed=seed)
    holes = step_missing + tables.partial_report(rows, domains)

    table_csv = os.path.join(out, "table.csv")
    with open(table_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=tables.CSV_FIELDS)
        w.writeheader()
        w.writerows(tables.csv_records(rows, domains, pub, phase, offline_only))
    robust_csv = os.path.join(out, "robust.csv")
    with open(robust_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "value_pct", "ci_low_pct", "ci_high_pct", "seeds", "tasks"])
        for r in robust:
            w.writerow(
                [r.label, r.metric, 100 * r.value, 100 * r.low, 100 * r.high, r.seeds, r.tasks]
            )
    online = records.online_values(loaded)
    table = sections.table(rows, domains, pub, phase, holes, ddof, offline_only, online)
    table_md = os.path.join(out, "table.md")
    with open(table_md, "w") as f:
        f.write(render.render_blocks(table.blocks) + "\n")
    robust_section = sections.robust(robust, robust_notes, backend, ci, reps)
    files = [table_md, table_csv, robust_csv]
    return [table, robust_section, sections.missing(holes)], chosen, files


def _plots(loaded, recs_all, out: str, reps: int) -> list[str]:
    from trqam_jax.report import plots  # matplotlib only when figures are wanted

    pdir = os.path.join(out, "plots")
    os.makedirs(pdir, exist_ok=True)
    paths = []
    if recs_all:
        paths.append(
            plots.plot_success_curves(recs_all, os.path.join(pdir, "success.png"), reps=reps)
        )
    return paths + plots.plot_kl(loaded, pdir) + plots.plot_critic(loaded, pdir)
