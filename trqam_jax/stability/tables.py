"""The stability experiment's summary: settled values of its curves and the table of
docs/stability.md (means ± std over seeds)."""

import numpy as np

from trqam_jax.stability.settings import AGENTS, Settings


def tail_mean(a, frac: float = 0.25):
    """Mean over the last `frac` of the last axis (the 'settled' value of a training curve)."""
    n = max(1, int(round(a.shape[-1] * frac)))
    return a[..., -n:].mean(axis=-1)


def summary_rows(results):
    """Per (agent, value): seed means/stds of the end-of-run numbers. -> list of dicts."""
    rows = []
    for kind in AGENTS:
        res = results[kind]
        train, evals = res["train"], res["evals"]
        for i, value in enumerate(res["values"]):
            kl_tail = tail_mean(train["kl_ema"][i])  # (S,)
            end = {k: v[i, :, -1] for k, v in evals.items()}
            start = {k: v[i, :, 0] for k, v in evals.items()}
            rows.append(
                {
                    "agent": kind,
                    "value": float(value),
                    "kl_ema": kl_tail,
                    "lambda": tail_mean(train["lambda"][i]),
                    "terminal_kl": end["terminal_kl"],
                    "terminal_kl_ema_ref": end["terminal_kl_ema_ref"],
                    "ema_ref_drift_kl": end["ema_ref_drift_kl"],
                    "mode_tv": end["mode_tv"],
                    "hist_tv": end["hist_tv"],
                    "reward_pre": start["true_reward"],
                    "reward": end["true_reward"],
                    "reward_min": evals["true_reward"][i].min(axis=-1),
                    "critic_bias": end["critic_bias"],
                    "critic_error": end["critic_error"],
                }
            )
    return rows


def _pm(a, fmt="{:.3f}"):
    return (fmt + " ± " + fmt).format(np.mean(a), np.std(a))


def markdown_table(results, s: Settings) -> str:
    """The table of docs/stability.md (means ± std over seeds)."""
    header = (
        "| agent | beta / eps | kl_ema (last 25%) | kl_ema / eps | terminal KL to pretrained "
        "| terminal KL to EMA base | EMA base drift KL | mode TV | hist TV "
        "| true reward: pretrained -> end (min) | critic Q - r on policy | lambda |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in summary_rows(results):
        ratio = _pm(row["kl_ema"] / row["value"], "{:.2f}") if row["agent"] == "trqam" else "n/a"
        label = "beta" if row["agent"] == "qam" else "eps"
        lines.append(
            f"| {row['agent'].upper()} | {label} = {row['value']:g} | {_pm(row['kl_ema'])} "
            f"| {ratio} | {_pm(row['terminal_kl'], '{:.2f}')} "
            f"| {_pm(row['terminal_kl_ema_ref'], '{:.2f}')} "
            f"| {_pm(row['ema_ref_drift_kl'], '{:.2f}')} | {_pm(row['mode_tv'], '{:.2f}')} "
            f"| {_pm(row['hist_tv'], '{:.2f}')} "
            f"| {np.mean(row['reward_pre']):.3f} -> {_pm(row['reward'])} "
            f"({np.mean(row['reward_min']):.3f}) "
            f"| {_pm(row['critic_bias'])} | {_pm(row['lambda'], '{:.2f}')} |"
        )
    foot = (
        f"\n\nbehaviour data reward {results['behaviour_reward']:.3f}, best possible "
        f"{results['best_reward']:.3f}; {s.seeds} seeds, {s.steps} fine-tuning steps after "
        f"{s.bc_steps} BC steps; injected critic error e = {s.critic_error}.\n"
    )
    return header + "\n".join(lines) + foot
