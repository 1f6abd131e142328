"""Tables and plots from run directories, side by side with published numbers.

    python -m experiments.report RUN_DIR [RUN_DIR ...] --out DIR [--at last|offline_end|final]
        [--step N] [--reps 2000] [--published-methods QAM,TRQAM|none] [--no-plots]

A RUN_DIR may also be a sweep directory whose children are run directories. Writes to DIR:
report.md (everything), table.md, table.csv, robust.csv and plots/*.png; prints the table and
every hole of a partial sweep. The aggregation lives in trqam_jax/results.py.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence

from trqam_jax import results


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.report", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or sweep directories")
    p.add_argument("--out", required=True, help="output directory (created if needed)")
    p.add_argument(
        "--at",
        choices=results.AT_CHOICES,
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
    return p.parse_args(argv)


def make_report(args: argparse.Namespace) -> str:
    """Build every output under args.out; return report.md's text."""
    runs = results.load_runs(args.run_dirs)
    records = results.eval_records(runs)
    if not records:
        raise results.ReportError(
            f"{', '.join(args.run_dirs)}: only BC-stage evaluations; nothing to tabulate yet."
        )
    results.check_duplicates(records)
    scores, chosen, step_missing = results.select_scores(records, args.at, args.step)
    if not scores:
        raise results.ReportError(
            "no run has an evaluation at the requested step:\n  " + "\n  ".join(step_missing)
        )
    expected = results.expected_seeds(runs, records)
    gen = results.generated_domains(records)
    rows = results.summarize(scores, expected, gen, ddof=args.ddof)
    domains = results.order_domains(r["domain"] for r in records)

    phase = results.published_phase(chosen, args.at, args.step)
    methods = None
    if args.published_methods:
        methods = [] if args.published_methods == "none" else args.published_methods.split(",")
    pub = results.published_rows(results.load_published(), phase, methods) if phase else []
    lines = results.table_lines(rows, domains, pub, phase)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=results.CSV_FIELDS)
        w.writeheader()
        w.writerows(results.csv_records(rows, domains, pub, phase))

    # Robust aggregates over tasks x seeds.
    matrices, robust_notes = {}, []
    for label in sorted(scores):
        mat, kept, tasks, dropped = results.score_matrix(scores[label])
        if dropped:
            robust_notes.append(
                f"{label}: seeds {dropped} lack some task and are left out of the bootstrap"
            )
        if mat.shape[0] == 0:
            robust_notes.append(f"{label}: no seed has every task; no robust aggregates")
            continue
        matrices[label] = (mat, len(tasks))
    robust, backend = results.robust_aggregates(
        {k: v[0] for k, v in matrices.items()}, reps=args.reps, ci=args.ci, seed=args.seed
    )
    with open(os.path.join(args.out, "robust.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "value_pct", "ci_low_pct", "ci_high_pct", "seeds", "tasks"])
        for label, aggs in robust.items():
            mat, n_tasks = matrices[label]
            for name, (v, lo, hi) in aggs.items():
                w.writerow([label, name, 100 * v, 100 * lo, 100 * hi, mat.shape[0], n_tasks])

    # What is missing.
    holes = step_missing + results.partial_report(rows, domains)
    collapse = []
    for key in ("critic_loss", "q_mean"):
        collapse += results.collapse_report(results.train_series(runs, key), key)

    plot_paths = []
    if not args.no_plots:
        from trqam_jax import plots  # matplotlib only when figures are wanted

        pdir = os.path.join(args.out, "plots")
        os.makedirs(pdir, exist_ok=True)
        plot_paths.append(
            plots.plot_success_curves(
                records, os.path.join(pdir, "success.png"), reps=min(args.reps, 1000)
            )
        )
        plot_paths += plots.plot_dual(runs, pdir)
        plot_paths += plots.plot_critic(runs, pdir)

    # Text.
    used = sorted({r["step"] for r in chosen})
    at_text = f"step {args.step}" if args.step is not None else args.at
    step_text = f"{used[0]}" if len(used) == 1 else f"{used[0]}..{used[-1]} (they differ!)"
    table_md = results.markdown_table(lines)
    foot = [
        "Success in %. Local rows: per domain, each seed's mean over the domain's tasks, then"
        f" mean ± std (ddof={args.ddof}) over seeds; `all` = mean of the domain means (± std over"
        " seeds of the per-seed mean over domains when every domain has the same seeds).",
        "Columns: "
        + ", ".join(f"{results.DOMAIN_CODES.get(d, d)} = {d}" for d in domains)
        + ". Published `all` is over the 10 domains of the paper.",
    ]
    if any(r.generated_domains for r in rows):
        foot.append(
            f"{results.GEN_MARK} computed on locally generated datasets (OGBench scripted oracles"
            " on this machine, `provenance.json` data_source = generated), not the official"
            " OGBench datasets: not directly comparable to published numbers. Domains: "
            + "; ".join(
                f"{r.label}: {', '.join(r.generated_domains)}" for r in rows if r.generated_domains
            )
        )
    if holes:
        foot.append(
            f"{results.PARTIAL_MARK} partial: tasks or seeds are missing (see `Missing` below)."
        )
    if pub:
        srcs = sorted({p["source"] for p in pub})
        foot.append("Published rows (" + phase + "), sources: " + "; ".join(srcs) + ".")
    elif phase is None:
        foot.append(
            "No published rows: the chosen evaluations are neither all at the offline end nor all"
            " at the final step. Pass `--at offline_end` or `--at final` to compare."
        )
    table_block = table_md + "\n\n" + "\n".join(f"- {x}" for x in foot)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table_block + "\n")

    robust_md = [
        "| method | metric | value (%) | CI low | CI high | seeds x tasks |",
        "|---" * 6 + "|",
    ]
    for label, aggs in robust.items():
        mat, n_tasks = matrices[label]
        for name, (v, lo, hi) in aggs.items():
            robust_md.append(
                f"| {label} | {name} | {100 * v:.1f} | {100 * lo:.1f} | {100 * hi:.1f} |"
                f" {mat.shape[0]} x {n_tasks} |"
            )
    report = [
        "# Results report",
        "",
        f"Runs: {len(runs)} run directories; table at `{at_text}`; evaluation steps used:"
        f" {step_text}.",
        "",
        "## Table",
        "",
        table_block,
        "",
        "## Robust aggregates (tasks x seeds)",
        "",
        f"IQM, mean and optimality gap (γ = 100%) with {args.ci:.0%} stratified bootstrap CIs"
        f" ({args.reps} replications, runs resampled within each task; {backend}).",
        "",
        "\n".join(robust_md),
        "",
    ]
    report += [f"- {x}" for x in robust_notes] + ([""] if robust_notes else [])
    report += ["## Missing", ""]
    report += [f"- {x}" for x in holes] if holes else ["Nothing missing: the sweep is complete."]
    report += ["", "## Critic collapse (non-finite values)", ""]
    report += [f"- {x}" for x in collapse] if collapse else ["None detected."]
    if plot_paths:
        report += ["", "## Plots", ""]
        report += [f"![{os.path.basename(p)}](plots/{os.path.basename(p)})" for p in plot_paths]
    report += ["", "## Run directories", ""] + [f"- `{r.path}`" for r in runs]
    text = "\n".join(report) + "\n"
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        text = make_report(args)
    except results.ReportError as e:
        print(f"experiments.report: error: {e}", file=sys.stderr)
        return 2
    # The table and the holes are what a reader needs at the terminal; the rest is in report.md.
    print(text.split("## Robust aggregates")[0].rstrip())
    missing = text.split("## Missing")[1].split("## Critic")[0].strip()
    print("\nMissing:\n" + missing)
    print(f"\nWrote {os.path.join(args.out, 'report.md')} (and table.md, table.csv, robust.csv).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
