"""Published numbers: the TRQAM paper's offline table and the QAM paper's released data.

The CSVs live in trqam_jax/published/ (sources in its SOURCES.md); success is in % there.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from trqam_jax.data.names import PAPER_DOMAIN_CODES
from trqam_jax.report.records import ALL

PUBLISHED_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "published"
)
TRQAM_SOURCE = "TRQAM paper (arXiv 2605.27079), offline table, 8 seeds"
QAM_SOURCE = "QAM paper (arXiv 2601.14234), released data, 12 seeds"
# Short names for the table's source column; the footnote prints the full source.
SHORT_SOURCE = {TRQAM_SOURCE: "TRQAM paper", QAM_SOURCE: "QAM release"}
# Methods of the QAM release shown by default: the ones this repository implements or compares to.
QAM_RELEASE_DEFAULT = ("QAM", "QAM-E", "QAM-F", "FQL")
CODE_TO_DOMAIN: dict[str, str] = {code: domain for domain, code in PAPER_DOMAIN_CODES}


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
    The final step of runs without an online stage is their offline end: `final` of such runs
    only is compared with the offline-end numbers, never with offline-to-online ones.
    """
    offline_only = bool(chosen) and all(r["final_step"] == r["offline_end"] for r in chosen)
    if step is None and at == "final" and offline_only:
        return "offline_end"
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
