"""The known-answer experiment's figure (docs/known_answer.png)."""

import numpy as np

from trqam_jax import gaussian_tilt as gt
from trqam_jax.known_answer.problem import PROBLEM, Settings
from trqam_jax.known_answer.tables import row_label


def _ellipse(ax, moments, color, ls="-", lw=1.2, label=None):
    """The 1- and 2-sigma ellipses of a 2-D Gaussian."""
    vals, vecs = np.linalg.eigh(np.asarray(moments.cov))
    angle = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    for n_sigma in (1, 2):
        pts = (vecs @ (n_sigma * np.sqrt(vals)[:, None] * circle)).T + moments.mean
        ax.plot(
            pts[:, 0], pts[:, 1], color=color, ls=ls, lw=lw, label=label if n_sigma == 1 else None
        )


def plot(results, arrays, s: Settings, path: str):
    """lambda against lambda* over training, deployed samples over the tilt's ellipses, the gaps
    against K, the full agent, and the part-4 KL estimates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(17, 15))
    lam_scale = results["lam_scale"]
    colours = plt.cm.viridis(np.linspace(0.1, 0.8, len(s.budgets)))
    qam_colours = plt.cm.autumn(np.linspace(0.0, 0.7, len(s.betas)))
    steps = (np.arange(s.steps // s.log_every) + 1) * s.log_every
    by_key = {(r["agent"], r.get("budget", r.get("beta")), r["K"]): r for r in results["core"]}
    for col, num_steps in enumerate(s.flow_steps[-3:]):
        ax = axes[0, col]
        lam_curves = arrays["core"][num_steps]["curves"]["lam"]
        for i, budget in enumerate(s.budgets):
            r = by_key[("trqam", budget, num_steps)]
            ax.plot(steps, lam_curves[i], color=colours[i], label=f"eps = {budget:g}")
            ax.axhline(r["lambda_star"], color=colours[i], ls="--", lw=1)
            ax.axhline(r["lambda_star_discrete"], color=colours[i], ls=":", lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("lambda")
        ax.set_title(f"K = {num_steps}: lambda, lambda* (--), the scheme's lambda*_K (..)")
        ax.legend(fontsize=8)

    big_k = max(s.flow_steps)
    for ax, agent, values, cols in (
        (axes[1, 0], "trqam", s.budgets, colours),
        (axes[1, 1], "qam", s.betas, qam_colours),
    ):
        ode = arrays["core"][big_k]["ode"]
        offset = 0 if agent == "trqam" else len(s.budgets)
        _ellipse(ax, gt.Moments(PROBLEM.mu0, PROBLEM.cov0), "k", "--", label="base")
        for i, value in enumerate(values):
            r = by_key[(agent, value, big_k)]
            pts = ode[offset + i][:800]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color=cols[i], alpha=0.3)
            label = f"{row_label(r)}: KL to tilt {r['deployed_vs_tilt_kl']:.3f}"
            _ellipse(
                ax,
                gt.Moments(np.array(r["tilt_mean"]), np.array(r["tilt_cov"])),
                cols[i],
                label=label,
            )
        ax.plot(*PROBLEM.a_star, "k*", ms=10, label="a*")
        ax.set_aspect("equal")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-0.8, 1)
        ax.set_title(f"{agent.upper()} at K = {big_k}: deployed samples over the tilt's ellipses")
        ax.legend(fontsize=7, loc="lower right")

    ax = axes[1, 2]
    ks = np.array(s.flow_steps)
    for i, budget in enumerate(s.budgets):
        rs = [by_key[("trqam", budget, k)] for k in s.flow_steps]
        ax.plot(
            ks,
            [r["lambda"] / r["lambda_star"] - 1 for r in rs],
            "o-",
            color=colours[i],
            label=f"lambda / lambda* - 1, eps = {budget:g}",
        )
        ax.plot(
            ks,
            [r["lambda_star_discrete"] / r["lambda_star"] - 1 for r in rs],
            "x:",
            color=colours[i],
        )
        ax.plot(
            ks,
            [r["deployed_vs_tilt_kl"] for r in rs],
            "s--",
            color=colours[i],
            alpha=0.6,
            label=f"deployed vs tilt KL, eps = {budget:g}",
        )
    ax.axhline(0.1, color="grey", lw=0.8)
    ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(k) for k in ks], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("K (flow steps)")
    ax.set_title("Gaps vs K (x: the scheme's fixed point; grey: aims)")
    ax.legend(fontsize=7)

    if "agent" in arrays:
        agent, records = arrays["agent"], results["agent"]
        ax = axes[2, 0]
        agent_steps = (np.arange(s.agent_steps // s.log_every) + 1) * s.log_every
        for i, r in enumerate(records):
            ax.plot(
                agent_steps,
                agent["curves"]["lambda"][i] / lam_scale,
                color=colours[i],
                label=f"eps = {r['budget']:g}",
            )
            ax.axhline(r["lambda_star"], color=colours[i], ls="--", lw=1)
            ax.plot(
                steps,
                arrays["bc_base_core"]["lam"][i],
                color=colours[i],
                ls="-.",
                lw=1,
                label="part 1's pieces, BC base as reference" if i == 0 else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"Full agent, K = {s.agent_flow_steps}: lambda and lambda* (--)")
        ax.legend(fontsize=8)
        ax = axes[2, 1]
        _ellipse(ax, gt.Moments(PROBLEM.mu0, PROBLEM.cov0), "k", "--", label="base")
        for i, r in enumerate(records):
            pts = agent["laws"]["deployed"][i][:800]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color=colours[i], alpha=0.3)
            _ellipse(
                ax,
                gt.Moments(np.array(r["tilt_mean"]), np.array(r["tilt_cov"])),
                colours[i],
                label=f"eps = {r['budget']:g}: KL to tilt {r['deployed_vs_tilt_kl']:.3f}",
            )
        ax.plot(*PROBLEM.a_star, "k*", ms=10)
        ax.set_aspect("equal")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-0.8, 1)
        ax.set_title("Full agent: deployed samples over the exact tilt at its lambda")
        ax.legend(fontsize=7, loc="lower right")

    ax = axes[2, 2]
    for i, budget in enumerate(s.budgets):
        rs = [by_key[("trqam", budget, k)] for k in s.flow_steps]
        ratio = lambda key, rs=rs: [r["terminal_kl"][key] / r["kl_estimate"] for r in rs]
        ax.plot(
            ks,
            ratio("ode_gaussian"),
            "o-",
            color=colours[i],
            label=f"ODE, Gaussian, eps = {budget:g}",
        )
        ax.plot(ks, ratio("ode_knn"), "^:", color=colours[i], label="ODE, k-NN" if i == 0 else None)
        ax.plot(
            ks,
            ratio("sde_gaussian"),
            "s--",
            color=colours[i],
            label="SDE, Gaussian" if i == 0 else None,
        )
        ax.plot(
            ks,
            ratio("path_kl_fixed_point"),
            "d-.",
            color=colours[i],
            alpha=0.6,
            label="path KL (K - 1 steps), fixed point" if i == 0 else None,
        )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K (flow steps)")
    ax.set_ylabel("terminal KL to the base sampler / D_hat")
    ax.set_title("Part 4: terminal KL over D_hat (TRQAM rows)")
    ax.legend(fontsize=7)
    fig.suptitle(
        "Known answer: Gaussian base, quadratic critic (closed-form tilt and lambda*)", fontsize=14
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
