"""Figures for the report (matplotlib, Agg backend: no display needed).

Each `plot_*` function takes the records or runs of trqam_jax.report and writes PNGs, returning
their paths; the `*_figure` functions build the figures they save (tests read them). Figures carry
titles, axis labels with units and legends so they read on their own. The offline -> online
boundary is drawn only on the panels of runs that have an online stage, and named after the rows
it belongs to when not every row of the panel has it.
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

from trqam_jax.report.curves import (  # noqa: E402
    bootstrap_band,
    online_boundary,
    success_curve,
    train_series,
)
from trqam_jax.report.records import order_domains  # noqa: E402
from trqam_jax.run_dir import Run  # noqa: E402


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _mark_boundaries(ax, boundaries: dict[int, set[str]], labels: set[str]) -> None:
    """Dotted line per boundary step; its legend names the rows it belongs to unless every row
    of the panel (`labels`) shares it."""
    for step, owners in sorted(boundaries.items()):
        whose = "" if owners >= labels else f" ({', '.join(sorted(owners))})"
        ax.axvline(step, color="k", ls=":", lw=1.2, label=f"offline → online{whose}")


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


def _log_ticks(ax, values: np.ndarray) -> None:
    """Log axis labelled at a few decades when positive values span one or more; otherwise a
    linear axis with at most 6 plain labels (a log axis over less than a decade has no decade
    to label, and labelling its minor ticks crowds them into each other)."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() >= 10 * finite.min():
        ax.set_yscale("log")
        # Over fewer than three decades, 1-2-5 per decade, so that more than one label shows.
        few = finite.max() < 1000 * finite.min()
        subs = (1.0, 2.0, 5.0) if few else (1.0,)
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs, numticks=6))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        return
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter(useOffset=False))


# Seeds: one line style each (then a marker per group of four), colours are tasks.
_SEED_STYLES = ("-", "--", ":", "-.")
_SEED_MARKERS = (None, "o", "s", "^", "v", "D")


def seed_style(seed: int) -> dict:
    """Line style and marker that tell seed `seed` apart from the others of its task."""
    n = len(_SEED_STYLES)
    return dict(ls=_SEED_STYLES[seed % n], marker=_SEED_MARKERS[(seed // n) % len(_SEED_MARKERS)])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _save(fig, out_path: str) -> str:
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def success_boundaries(records: Sequence[dict], domain: str) -> dict[int, set[str]]:
    """{boundary step: labels} of the domain's records whose runs have an online stage."""
    out: dict[int, set[str]] = {}
    for r in records:
        step = online_boundary(r["offline_end"], r["final_step"])
        if r["domain"] == domain and step is not None:
            out.setdefault(step, set()).add(r["label"])
    return out


def success_figure(records: Sequence[dict], reps: int = 1000, seed: int = 0):
    """Success rate (%) vs fine-tuning step, one panel per domain, one line per table row.

    records: see report.records.eval_records. Band: 95% percentile bootstrap CI over seeds of the
    per-seed mean over the domain's tasks.
    """
    domains = order_domains(r["domain"] for r in records)
    labels = sorted({r["label"] for r in records})
    colors = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    nr, nc = _grid(len(domains))
    fig, axes = plt.subplots(nr, nc, figsize=(4.2 * nc, 3.4 * nr), squeeze=False)
    for k, domain in enumerate(domains):
        ax = axes[k // nc][k % nc]
        present = set()
        for lab in labels:
            steps, per_seed = success_curve(records, lab, domain)
            if steps.size == 0:
                continue
            present.add(lab)
            mean, lo, hi = bootstrap_band(per_seed, reps=reps, seed=seed)
            n = int(np.max(np.sum(~np.isnan(per_seed), axis=0)))
            ax.plot(steps, 100 * mean, color=colors[lab], marker="o", ms=3, label=f"{lab} (n={n})")
            ax.fill_between(steps, 100 * lo, 100 * hi, color=colors[lab], alpha=0.2, lw=0)
        _mark_boundaries(ax, success_boundaries(records, domain), present)
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
    return fig


def plot_success_curves(
    records: Sequence[dict], out_path: str, reps: int = 1000, seed: int = 0
) -> str:
    """`success_figure` saved to `out_path`; returns the path."""
    return _save(success_figure(records, reps=reps, seed=seed), out_path)


def series_figure(
    series_by_key: dict[str, list[dict]],
    title: str,
    ylabels: dict[str, str],
    scale: dict[str, str],
    budget_key: str | None = None,
):
    """Rows = metric keys, columns = domains; a line per (task, seed): colour = task, line style
    = seed (`seed_style`). Series: see curves.train_series."""
    keys = [k for k in series_by_key if series_by_key[k]]
    domains = order_domains(s["domain"] for k in keys for s in series_by_key[k])
    fig, axes = plt.subplots(
        len(keys), len(domains), figsize=(4.2 * len(domains), 3.2 * len(keys)), squeeze=False
    )
    for i, key in enumerate(keys):
        for j, domain in enumerate(domains):
            panel = [s for s in series_by_key[key] if s["domain"] == domain]
            _series_panel(axes[i][j], panel, key == budget_key, scale.get(key))
            axes[i][j].set_title(f"{domain}", fontsize=10)
            axes[i][j].set_ylabel(ylabels[key])
    _suptitle(fig, title)
    return fig


def _series_panel(ax, panel: Sequence[dict], budget: bool, scale: str | None) -> None:
    tasks, seeds, budgets, online, flagged = set(), set(), set(), set(), False
    for s in panel:
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
        lab = f"task{s['task']}" if s["task"] not in tasks else None
        tasks.add(s["task"])
        seeds.add(s["seed"])
        every = max(1, len(s["steps"]) // 6)
        style = seed_style(s["seed"])
        ax.plot(s["steps"], s["values"], color=color, lw=0.9, alpha=0.8, label=lab,
                ms=3, markevery=every, **style)  # fmt: skip
        if s["kl_budget"] is not None:
            budgets.add(s["kl_budget"])
        if s["kl_budget_online"] is not None:
            online.add(s["kl_budget_online"])
    for seed in sorted(seeds):  # legend entries for the line styles, in grey
        ax.plot([], [], color="0.4", lw=0.9, ms=3, label=f"seed {seed}", **seed_style(seed))
    if budget:
        for b in sorted(budgets):
            ax.axhline(b, color="r", ls="--", lw=1.2, label=f"budget ε={b:g}")
        # kl_budget_online: the online updates' budget, drawn only where it is another one.
        for b in sorted(online - budgets):
            ax.axhline(b, color="m", ls="-.", lw=1.2, label=f"online budget ε={b:g}")
    boundaries: dict[int, set[str]] = {}
    for s in panel:
        if s["boundary"] is not None:
            boundaries.setdefault(s["boundary"], set()).add(s["label"])
    _mark_boundaries(ax, boundaries, {s["label"] for s in panel})
    values = np.concatenate([s["values"] for s in panel]) if panel else np.zeros(0)
    if scale == "log":
        _log_ticks(ax, values)
    elif scale == "symlog":
        _symlog_ticks(ax, values)
    ax.set_xlabel("fine-tuning gradient steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2 if len(seeds) > 4 else 1)


def label_figures(runs: Sequence[Run], keys, texts, **panel_kwargs) -> dict:
    """{row label: figure} with a panel per train_metrics field of `keys`, for every label that
    logs one. `texts(label, series)` returns (title, {key: y label}); `panel_kwargs` go to
    `series_figure`."""
    series = {key: train_series(runs, key) for key in keys}
    figures = {}
    for label in sorted({s["label"] for values in series.values() for s in values}):
        mine = {key: [s for s in values if s["label"] == label] for key, values in series.items()}
        title, ylabels = texts(label, mine)
        figures[label] = series_figure(mine, title, ylabels, **panel_kwargs)
    return figures


def _save_figures(figures: dict, out_dir: str, prefix: str) -> list[str]:
    return [
        _save(fig, os.path.join(out_dir, f"{prefix}_{_safe(label)}.png"))
        for label, fig in figures.items()
    ]


def kl_texts(label: str, series: dict[str, list[dict]]) -> tuple[str, dict[str, str]]:
    """Title and y labels of a row's KL figure. Trust-region wording only for rows with a budget
    (TRQAM); for the others (QAM: λ = 1/β is fixed) it would describe a mechanism they lack."""
    if any(s["kl_budget"] is not None for values in series.values() for s in values):
        return (
            f"{label}: trust region over training (one line per task x seed; kl_ema should"
            " settle at or below the dashed budget ε, λ rises while it is exceeded)",
            {"kl_ema": "kl_ema (nats per action, D̂/H)", "lambda": "λ (dual variable, unitless)"},
        )
    return (
        f"{label}: KL of the fine-tuned policy to the BC policy over training (one line per"
        " task x seed; kl_ema is a diagnostic, λ = 1/β is a fixed temperature)",
        {"kl_ema": "kl_ema (nats per action, D̂/H)", "lambda": "λ = 1/β (fixed, unitless)"},
    )


def kl_figures(runs: Sequence[Run]) -> dict:
    """Per row that logs them: kl_ema (against its budget ε where it has one) and λ."""
    keys = ("kl_ema", "lambda")
    return label_figures(runs, keys, kl_texts, scale={"lambda": "log"}, budget_key="kl_ema")


def plot_kl(runs: Sequence[Run], out_dir: str) -> list[str]:
    """`kl_figures` saved as kl_<row>.png in `out_dir`; returns their paths."""
    return _save_figures(kl_figures(runs), out_dir, "kl")


def critic_texts(label: str, series: dict[str, list[dict]]) -> tuple[str, dict[str, str]]:
    return (
        f"{label}: critic health (one line per task x seed; log / symmetric-log scales; a"
        " collapse shows as a loss blow-up, Q running away from the reward scale, or a red"
        " X where values become NaN/inf)",
        {
            "critic_loss": "critic TD loss (squared return units)",
            "q_mean": "mean Q on the batch (return units)",
        },
    )


def critic_figures(runs: Sequence[Run]) -> dict:
    """Per row: critic loss and Q scale (q_mean) over training; a collapse shows as a blow-up."""
    keys = ("critic_loss", "q_mean")
    return label_figures(runs, keys, critic_texts, scale={"critic_loss": "log", "q_mean": "symlog"})


def plot_critic(runs: Sequence[Run], out_dir: str) -> list[str]:
    """`critic_figures` saved as critic_<row>.png in `out_dir`; returns their paths."""
    return _save_figures(critic_figures(runs), out_dir, "critic")
