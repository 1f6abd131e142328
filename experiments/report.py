"""Tables and plots from run directories and sweep roots, side by side with published numbers.

    python -m experiments.report PATH [PATH ...] [--out DIR] [--at last|offline_end|final]
        [--step N] [--reps 2000] [--published-methods QAM,TRQAM|none] [--no-plots]

A PATH is a run directory or a sweep root (its runs, split parts included, and the planned runs
not started yet). Writes to DIR (default: <root>/report for one sweep root): report.md
(everything), table.md, table.csv, robust.csv and plots/*.png; prints the table, every hole and
every marked run (BC only, evaluation off, no evaluation yet, diverged, stopped, not started).
A command line over `trqam_jax.report.write_report`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from experiments import add_helpfull
from trqam_jax import run_dir
from trqam_jax.report import build, records, render, sections


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.report", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directories or sweep roots")
    p.add_argument(
        "--out", default=None, help="output directory (default: <root>/report for one sweep root)"
    )
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


def _out_dir(args: argparse.Namespace) -> str:
    if args.out:
        return args.out
    (path,) = args.paths if len(args.paths) == 1 else ("",)
    if os.path.isdir(path) and not run_dir.is_run_dir(path):
        return os.path.join(path, "report")
    raise records.ReportError(
        "--out is needed unless the only PATH is a sweep root (then <root>/report); pass --out DIR"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """0 when anything was rendered or marked; 2 with one `error:` line for input to fix."""
    args = _parse(argv)
    methods = None
    if args.published_methods:
        methods = [] if args.published_methods == "none" else args.published_methods.split(",")
    try:
        written = build.write_report(
            args.paths,
            _out_dir(args),
            plots=not args.no_plots,
            at=args.at,
            step=args.step,
            reps=args.reps,
            ci=args.ci,
            seed=args.seed,
            ddof=args.ddof,
            published_methods=methods,
        )
    except build.USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    # The overview, the table, the holes and the marked runs are what a reader needs here.
    print(render.render_terminal(sections.TITLE, written.sections), end="")
    report_md, *others = written.files
    print(f"\nWrote {report_md} and {len(others)} more files in {written.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
