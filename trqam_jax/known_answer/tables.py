"""The tables of docs/known_answer.md from the experiment's results."""

import numpy as np

from trqam_jax.known_answer.records import VARIANTS


def row_label(record) -> str:
    """A record's name in the tables and the figure's legends, e.g. 'TRQAM eps = 0.3'."""
    if record["agent"] == "qam":
        return f"QAM beta = {record['beta']:g}"
    return f"{'TRQAM' if record['agent'] == 'trqam' else 'full TRQAM'} eps = {record['budget']:g}"


def markdown_tables(results) -> str:
    """The tables of docs/known_answer.md."""
    lines = [
        "### Parts 1-2: core pieces with the exact base and critic",
        "",
        "| row | K | lambda (settled) | lambda*_K (scheme) | lambda* | lambda / lambda* - 1 "
        "| D_hat | D_hat of the fixed point at the settled lambda "
        "| closed-form KL at the settled lambda | deployed vs tilt | fixed point vs tilt "
        "| deployed vs fixed point |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["core"]:
        trqam = r["agent"] == "trqam"
        lam = (
            f"{r['lambda']:.4f} | {r['lambda_star_discrete']:.4f} | {r['lambda_star']:.4f} "
            f"| {r['lambda'] / r['lambda_star'] - 1:+.1%}"
            if trqam
            else " | | |"
        )
        lines.append(
            f"| {row_label(r)} | {r['K']} | {lam} | {r['kl_estimate']:.4f} "
            f"| {r['kl_discrete_fixed_point']:.4f} | {r['kl_closed_form']:.4f} "
            f"| {r['deployed_vs_tilt_kl']:.4f} | {r['fixed_point_vs_tilt_kl']:.4f} "
            f"| {r['deployed_vs_fixed_point_kl']:.4f} |"
        )
    ks = sorted({v["K"] for v in results["scheme_variants"]})
    budgets = sorted({v["budget"] for v in results["scheme_variants"]})
    cols = [(b, k) for b in budgets for k in ks]
    lines += [
        "",
        "### Part 2: lambda*_K / lambda* - 1 of the exact discrete fixed point, one reference "
        "choice changed at a time",
        "",
        "| scheme | " + " | ".join(f"eps = {b:g}, K = {k}" for b, k in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    gaps = {
        (v["variant"], v["budget"], v["K"]): v["relative_gap"] for v in results["scheme_variants"]
    }
    for name in VARIANTS:
        lines.append(
            f"| {name} | " + " | ".join(f"{gaps[(name, b, k)]:+.1%}" for b, k in cols) + " |"
        )
    base = results["exact_base_discretisation"]
    lines += [
        "",
        "Exact base field, KL of its discretised laws to N(mu0, Sigma0): "
        + "; ".join(
            f"K = {k}: ODE {v['ode_vs_base_kl']:.4f}, SDE {v['sde_vs_base_kl']:.4f}"
            for k, v in base.items()
        )
        + ".",
    ]
    if "agent" in results:
        lines += [
            "",
            f"### Part 3: the full agent (BC base, learned critic, `agents.trqam`), "
            f"K = {results['agent'][0]['K']}",
            "",
            "| eps | lambda | lambda* | lambda / lambda* - 1 | lambda*_K (exact) "
            "| lambda / lambda*_K - 1 | part 1's pieces with the BC base: lambda "
            "(lambda / lambda*_K - 1) | lambda* with the learned base's law + learned critic "
            "| D_hat | deployed vs exact tilt | deployed vs tilt of the learned base + critic "
            "| EMA base vs N(mu0, Sigma0) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r, swap in zip(results["agent"], results["bc_base_core"], strict=True):
            both = r["plugged"]["both"] or {"lambda_star": np.nan, "deployed_vs_tilt_kl": np.nan}
            lam_k = r["lambda_star_discrete"]
            lines.append(
                f"| {r['budget']:g} | {r['lambda']:.4f} | {r['lambda_star']:.4f} "
                f"| {r['lambda'] / r['lambda_star'] - 1:+.1%} | {lam_k:.4f} "
                f"| {r['lambda'] / lam_k - 1:+.1%} "
                f"| {swap['lambda']:.4f} ({swap['lambda'] / lam_k - 1:+.1%}) "
                f"| {both['lambda_star']:.4f} | {r['kl_estimate']:.4f} "
                f"| {r['deployed_vs_tilt_kl']:.4f} | {both['deployed_vs_tilt_kl']:.4f} "
                f"| {r['ema_base_vs_base_kl']:.4f} |"
            )
    lines += [
        "",
        "### Part 4: the deployed law's KL to the base, three ways",
        "",
        "| row | K | D_hat | path KL | ODE: Gaussian | ODE: k-NN "
        "| ODE: fixed point | SDE: Gaussian | SDE: k-NN | SDE: fixed point "
        "| ODE Gaussian / D_hat |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["core"]:
        t = r["terminal_kl"]
        lines.append(
            f"| {row_label(r)} | {r['K']} | {r['kl_estimate']:.4f} "
            f"| {t['path_kl_fixed_point']:.4f} | {t['ode_gaussian']:.4f} | {t['ode_knn']:.4f} "
            f"| {t['ode_fixed_point']:.4f} "
            f"| {t['sde_gaussian']:.4f} | {t['sde_knn']:.4f} | {t['sde_fixed_point']:.4f} "
            f"| {t['ode_gaussian'] / r['kl_estimate']:.2f} |"
        )
    return "\n".join(lines) + "\n"
