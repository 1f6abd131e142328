"""Figures for the report (matplotlib, Agg backend: no display needed).

Each function takes the records, runs and series of trqam_jax.report and writes one PNG, returning
its path. Figures carry titles, axis labels with units and legends so they read on their own.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from trqam_jax.report.curves import bootstrap_band, success_curve, train_series  # noqa: E402
from trqam_jax.report.records import order_domains  # noqa: E402
from trqam_jax.run_dir import Run  # noqa: E402


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _boundaries(records: Sequence[dict]) -> list[int]:
    return sorted({r["offline_end"] for r in records if r["offline_end"] > 0})


def _mark_boundary(ax, steps: Sequence[int], first: bool) -> None:
    for b in steps:
        ax.axvline(
            b,
            color="k",
            ls=":",
            lw=1.2,
            label="offline → online boundary" if first else None,
        )
        first = False


def _suptitle(fig, text: str) -> None:
    # Wrap to the figure width so that narrow figures (one or two domains) keep the whole title.
    width = max(40, int(fig.get_figwidth() * 12))
    fig.suptitle(textwrap.fill(text, width), fontsize=10)


def _symlog_ticks(ax, values: np.ndarray) -> None:
    """Symlog axis with at most ~9 labelled decades (the default labels every decade, which is
    unreadable once Q has run away by many orders of magnitude)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    top = float(np.max(np.abs(finite)))
    low = float(np.min(np.abs(finite)))
    if top <= 100 * max(low, 1.0) and (finite.min() >= 0 or finite.max() <= 0):
        return  # one sign, under two decades: a linear axis reads better
    decades = max(1, math.ceil(math.log10(max(top, 1.0))))
    stride = max(1, math.ceil(decades / 4))
    pos = [10.0**k for k in range(0, decades + 1, stride)]
    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([-p for p in pos] + [0.0] + pos))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_success_curves(
    records: Sequence[dict], out_path: str, reps: int = 1000, seed: int = 0
) -> str:
    """Success rate (%) vs fine-tuning step, one panel per domain, one line per table row.

    records: see report.records.eval_records. Band: 95% percentile bootstrap CI over seeds of the
    per-seed mean over the domain's tasks.
    """
    domains = order_domains(r["domain"] for r in records)
    labels = sorted({r["label"] for r in records})
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    nr, nc = _grid(len(domains))
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 3.4 * nr), squeeze=False)
    bounds = _boundaries(records)
    for k, domain in enumerate(domains):
        ax = axes[k // nc][k % nc]
        for lab in labels:
            steps, per_seed = success_curve(records, lab, domain)
            if steps.size == 0:
                continue
            mean, lo, hi = bootstrap_band(per_seed, reps=reps, seed=seed)
            n = int(np.max(np.sum(~np.isnan(per_seed), axis=0)))
            ax.plot(steps, 100 * mean, color=colors[lab], marker="o", ms=3, label=f"{lab} (n={n})")
            ax.fill_between(steps, 100 * lo, 100 * hi, color=colors[lab], alpha=0.2, lw=0)
        _mark_boundary(ax, bounds, first=True)
        ax.set_title(domain, fontsize=10)
        ax.set_xlabel("fine-tuning gradient steps")
        ax.set_ylabel("success rate (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for k in range(len(domains), nr * nc):
        axes[k // nc][k % nc].axis("off")
    _suptitle(
        fig,
        "Evaluation success vs training steps (mean over tasks per seed; line = mean over seeds,"
        " band = 95% bootstrap CI over seeds, n = seeds)",
    )
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def _series_panels(
    series_by_key: dict[str, list[dict]],
    title: str,
    ylabels: dict[str, str],
    out_path: str,
    scale: dict[str, str],
    budget_key: str | None = None,
    boundaries: Sequence[int] = (),
) -> str:
    """Rows = metric keys, columns = domains; thin line per (task, seed), colour per task."""
    keys = [k for k in series_by_key if series_by_key[k]]
    domains = order_domains(s["domain"] for k in keys for s in series_by_key[k])
    fig, axes = plt.subplots(
        len(keys), len(domains), figsize=(4.2 * len(domains), 3.2 * len(keys)), squeeze=False
    )
    for i, key in enumerate(keys):
        for j, domain in enumerate(domains):
            ax = axes[i][j]
            seen_tasks, budgets, flagged = set(), set(), False
            values = [s["values"] for s in series_by_key[key] if s["domain"] == domain]
            for s in series_by_key[key]:
                if s["domain"] != domain:
                    continue
                bad = ~np.isfinite(s["values"])
                if bad.any():
                    # NaN/inf leave no line: mark where the series stopped being finite.
                    ax.plot(
                        s["steps"][np.argmax(bad)],
                        0.97,
                        "rX",
                        ms=9,
                        transform=ax.get_xaxis_transform(),
                        label=None if flagged else "non-finite from here (collapse)",
                    )
                    flagged = True
                color = plt.cm.tab10((s["task"] - 1) % 10)
                lab = f"task{s['task']}" if s["task"] not in seen_tasks else None
                seen_tasks.add(s["task"])
                ax.plot(s["steps"], s["values"], color=color, lw=0.9, alpha=0.8, label=lab)
                if s["kl_budget"] is not None:
                    budgets.add(s["kl_budget"])
            if key == budget_key:
                for b in sorted(budgets):
                    ax.axhline(b, color="r", ls="--", lw=1.2, label=f"budget ε={b:g}")
            _mark_boundary(ax, boundaries, first=True)
            if scale.get(key) == "log":
                ax.set_yscale("log")
                # Plain numbers instead of 1.2x10^-1 mantissa labels on short log ranges.
                fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
                ax.yaxis.set_major_formatter(fmt)
                ax.yaxis.set_minor_formatter(fmt)
            elif scale.get(key) == "symlog" and values:
                _symlog_ticks(ax, np.concatenate(values))
            ax.set_title(f"{domain}", fontsize=10)
            ax.set_xlabel("fine-tuning gradient steps")
            ax.set_ylabel(ylabels[key])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    _suptitle(fig, title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def _per_label_panels(runs, out_dir, prefix, ylabels, title, **panel_kwargs) -> list[str]:
    """One figure per row label with a panel per metric of `ylabels` ({metric: y label}).

    `title` is formatted with the label; `panel_kwargs` go to `_series_panels`.
    """
    series = {key: train_series(runs, key) for key in ylabels}
    bounds = sorted({r.offline_end for r in runs if r.offline_end > 0})
    paths = []
    for label in sorted({s["label"] for values in series.values() for s in values}):
        path = os.path.join(out_dir, f"{prefix}_{_safe(label)}.png")
        _series_panels(
            {key: [s for s in values if s["label"] == label] for key, values in series.items()},
            title.format(label=label),
            ylabels,
            path,
            boundaries=bounds,
            **panel_kwargs,
        )
        paths.append(path)
    return paths


def plot_dual(runs: Sequence[Run], out_dir: str) -> list[str]:
    """Per row with a trust region: kl_ema against its budget ε, and λ, over training."""
    return _per_label_panels(
        runs,
        out_dir,
        "dual",
        {"kl_ema": "kl_ema (nats per action, D̂/H)", "lambda": "λ (dual variable, unitless)"},
        "{label}: trust region over training (one line per task x seed; kl_ema should"
        " settle at or below the dashed budget ε, λ rises while it is exceeded)",
        scale={"lambda": "log"},
        budget_key="kl_ema",
    )


def plot_critic(runs: Sequence[Run], out_dir: str) -> list[str]:
    """Per row: critic loss and Q scale (q_mean) over training; a collapse shows as a blow-up."""
    return _per_label_panels(
        runs,
        out_dir,
        "critic",
        {
            "critic_loss": "critic TD loss (squared return units)",
            "q_mean": "mean Q on the batch (return units)",
        },
        "{label}: critic health (one line per task x seed; log / symmetric-log scales; a"
        " collapse shows as a loss blow-up, Q running away from the reward scale, or a red"
        " X where values become NaN/inf)",
        scale={"critic_loss": "log", "q_mean": "symlog"},
    )
