"""The stability experiment's figure (docs/stability.png)."""

import numpy as np

from trqam_jax.stability.settings import AGENTS, Settings


def plot(results, s: Settings, path: str):
    """The figure: path KL vs budgets, terminal KL, true reward, critic error along training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    steps = np.arange(1, s.steps + 1)
    eval_steps = np.arange(s.steps // s.eval_every + 1) * s.eval_every
    cmaps = {"trqam": plt.cm.viridis, "qam": plt.cm.autumn}
    label = {"trqam": "TRQAM eps={:g}", "qam": "QAM beta={:g}"}

    def colour(kind, i, n):
        return cmaps[kind](0.15 + 0.7 * i / max(1, n - 1))

    def band(ax, x, curves, c, lab, ls="-"):
        mean = curves.mean(axis=0)
        ax.plot(x, mean, color=c, label=lab, ls=ls)
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=c, alpha=0.2, lw=0)

    def agent_bands(ax, kind, x, series, ls="-"):
        """One band per value of `kind`'s sweep; series (values, seeds, len(x))."""
        n = len(results[kind]["values"])
        for i, value in enumerate(results[kind]["values"]):
            band(ax, x, series[i], colour(kind, i, n), label[kind].format(value), ls)

    def both_agents(ax, metric):
        """An evaluation metric of every row of both agents (QAM dotted)."""
        for kind in AGENTS:
            ls = "-" if kind == "trqam" else ":"
            agent_bands(ax, kind, eval_steps, results[kind]["evals"][metric], ls)

    for col, kind in enumerate(AGENTS[::-1]):
        ax = axes[0, col]
        res = results[kind]
        agent_bands(ax, kind, steps, res["train"]["kl_ema"])
        if kind == "trqam":
            for i, value in enumerate(res["values"]):
                c = colour(kind, i, len(res["values"]))
                ax.axhline(value, color=c, ls="--", lw=1)
                ax.axhspan(0.8 * value, 1.2 * value, color=c, alpha=0.07)
        ax.set_yscale("log")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("path-KL estimate (kl_ema, per step)")
        title = {
            "trqam": "TRQAM: path KL vs budget (dashed = eps, band = ±20%)",
            "qam": "QAM: path KL at fixed beta (no budget)",
        }[kind]
        ax.set_title(title)
        ax.legend(fontsize=8)

    ax = axes[0, 2]
    both_agents(ax, "terminal_kl")
    ax.set_yscale("symlog", linthresh=0.05)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("KL(policy || pretrained), k-NN Monte Carlo")
    ax.set_title("Terminal action KL to the pretrained policy")
    ax.legend(fontsize=8)

    for ax, kind in ((axes[1, 0], "trqam"), (axes[1, 1], "qam")):
        rewards = results[kind]["evals"]["true_reward"]
        agent_bands(ax, kind, eval_steps, rewards)
        pretrained = np.mean(rewards[:, :, 0])
        ax.axhline(pretrained, color="k", ls="--", lw=1, label="pretrained (BC) policy")
        ax.axhline(results["best_reward"], color="grey", ls=":", lw=1, label="best possible")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("true reward of the policy")
        ax.set_title(f"{kind.upper()}: true reward (known r)")
        ax.legend(fontsize=8)
    lo = min(axes[1, 0].get_ylim()[0], axes[1, 1].get_ylim()[0])
    hi = max(axes[1, 0].get_ylim()[1], axes[1, 1].get_ylim()[1])
    axes[1, 0].set_ylim(lo, hi)
    axes[1, 1].set_ylim(lo, hi)

    ax = axes[1, 2]
    both_agents(ax, "critic_bias")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("mean critic Q - true r on policy actions")
    ax.set_title("Critic error where the policy acts (>0 = over-estimation)")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"Contextual bandit, learned critic (+ injected error e={s.critic_error}): "
        f"mean and min-max over {s.seeds} seeds",
        fontsize=13,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
