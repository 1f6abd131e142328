"""Tables and plots from run directories, side by side with published numbers.

    python -m experiments.report RUN_DIR [RUN_DIR ...] --out DIR [--at last|offline_end|final]
        [--step N] [--reps 2000] [--published-methods QAM,TRQAM|none] [--no-plots]

A RUN_DIR may also be a sweep directory whose children are run directories. Writes to DIR:
report.md (everything), table.md, table.csv, robust.csv and plots/*.png; prints the table and
every hole of a partial sweep. The aggregation lives in trqam_jax/report/.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence

from experiments import add_helpfull
from trqam_jax import run_dir
from trqam_jax.report import aggregates, curves, published, records, render, sections, tables


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.report", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or sweep directories")
    p.add_argument("--out", required=True, help="output directory (created if needed)")
    p.add_argument(
        "--at",
        choices=records.AT_CHOICES,
        default="last",
        help="evaluation used for the table: each seed's last one (default), the offline end"
        " (step == offline_steps) or the final one (offline_steps + online_steps)",
    )
    p.add_argument("--step", type=int, default=None, help="exact evaluation step (overrides --at)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications for the CIs")
    p.add_argument("--ci", type=float, default=0.95, help="confidence interval size")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--ddof", type=int, default=0, help="std over seeds: numpy ddof (0 or 1)")
    p.add_argument(
        "--published-methods",
        default=None,
        help="comma-separated published methods to show, or 'none' (default: the 7 of the TRQAM"
        " table and QAM, QAM-E, QAM-F, FQL of the QAM release)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    add_helpfull(p)
    return p.parse_args(argv)


def make_report(args: argparse.Namespace) -> list[render.Section]:
    """Build every output under args.out; return the report's sections (report.md renders them)."""
    runs = run_dir.load_runs(args.run_dirs)
    recs = records.eval_records(runs)
    if not recs:
        raise records.ReportError(
            f"{', '.join(args.run_dirs)}: only BC-stage evaluations; nothing to tabulate yet."
        )
    records.check_duplicates(recs)
    scores, chosen, step_missing = records.select_scores(recs, args.at, args.step)
    if not scores:
        raise records.ReportError(
            "no run has an evaluation at the requested step:\n  " + "\n  ".join(step_missing)
        )
    expected = records.expected_seeds(runs, recs)
    gen = records.generated_domains(recs)
    rows = tables.summarize(scores, expected, gen, ddof=args.ddof)
    domains = records.order_domains(r["domain"] for r in recs)

    phase = published.published_phase(chosen, args.at, args.step)
    methods = None
    if args.published_methods:
        methods = [] if args.published_methods == "none" else args.published_methods.split(",")
    pub = published.published_rows(published.load_published(), phase, methods) if phase else []
    robust, robust_notes, backend = aggregates.robust_rows(
        scores, reps=args.reps, ci=args.ci, seed=args.seed
    )
    holes = step_missing + tables.partial_report(rows, domains)
    collapse = []
    for key in ("critic_loss", "q_mean"):
        collapse += curves.collapse_report(curves.train_series(runs, key), key)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=tables.CSV_FIELDS)
        w.writeheader()
        w.writerows(tables.csv_records(rows, domains, pub, phase))
    with open(os.path.join(args.out, "robust.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "value_pct", "ci_low_pct", "ci_high_pct", "seeds", "tasks"])
        for r in robust:
            w.writerow(
                [r.label, r.metric, 100 * r.value, 100 * r.low, 100 * r.high, r.seeds, r.tasks]
            )

    plot_paths = []
    if not args.no_plots:
        from trqam_jax.report import plots  # matplotlib only when figures are wanted

        pdir = os.path.join(args.out, "plots")
        os.makedirs(pdir, exist_ok=True)
        plot_paths.append(
            plots.plot_success_curves(
                recs, os.path.join(pdir, "success.png"), reps=min(args.reps, 1000)
            )
        )
        plot_paths += plots.plot_dual(runs, pdir)
        plot_paths += plots.plot_critic(runs, pdir)

    table = sections.table(rows, domains, pub, phase, holes, args.ddof)
    report = [
        sections.overview(runs, chosen, args.at, args.step),
        table,
        sections.robust(robust, robust_notes, backend, args.ci, args.reps),
        sections.missing(holes),
        sections.collapse(collapse),
    ]
    if plot_paths:
        report.append(sections.plots([os.path.relpath(p, args.out) for p in plot_paths]))
    report.append(sections.run_dirs(runs))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(render.render_blocks(table.blocks) + "\n")
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(render.render_document(sections.TITLE, report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        report = make_report(args)
    except (run_dir.RunDirError, records.ReportError) as e:
        print(f"experiments.report: error: {e}", file=sys.stderr)
        return 2
    # The overview, the table and the holes are what a reader needs at the terminal.
    print(render.render_terminal(sections.TITLE, report), end="")
    print(f"\nWrote {os.path.join(args.out, 'report.md')} (and table.md, table.csv, robust.csv).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
