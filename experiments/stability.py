"""Stability of TRQAM vs QAM on a contextual bandit with a known answer (issue 8).

    python -m experiments.stability                 # default run, a few minutes on 2 CPU cores
    python -m experiments.stability --quick         # a smoke run in well under a minute
    python -m experiments.stability --betas=1,10,100 --budgets=0.1,0.3,1 --seeds=3 --out=docs

Pipeline (trqam_jax.bandit defines the task):
1. BC-pretrain one flow policy per seed (`agents.bc`), all seeds in one vmapped scan.
2. Fine-tune from it with QAM at every beta and TRQAM at every budget epsilon, every seed: one
   `jax.jit(jax.vmap(scan of update))` program per agent, rows = (value, seed) stacked on a leading
   axis with the swept value in `state.hparams`.
3. Every `--eval-every` steps, inside the same program: the true reward of the deployed policy, the
   critic's error on its actions, a k-NN Monte Carlo estimate of the terminal KL to the pretrained
   policy and two TV estimates (histogram, mode assignment), at a grid of contexts.

Writes `stability.png`, `stability_table.md` and `stability.npz` to `--out`.
"""

import argparse
import dataclasses
import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from trqam_jax import bandit, networks, train
from trqam_jax.agents import adjoint_matching, bc

AGENTS = ("qam", "trqam")
SWEPT = {"qam": "inv_temp", "trqam": "kl_budget"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the experiment needs (static; defaults are the committed run)."""

    betas: tuple[float, ...] = (1.0, 10.0, 100.0)
    budgets: tuple[float, ...] = (0.1, 0.3, 1.0)
    seeds: int = 3
    bc_steps: int = 2000
    steps: int = 2000
    eval_every: int = 100
    dataset_size: int = 4000
    batch_size: int = 64
    hidden: int = 64
    num_qs: int = 4
    flow_steps: int = 10
    lr: float = 1e-3
    eta_lambda: float = 0.01
    eval_contexts: int = 8
    eval_samples: int = 512
    critic_error: float = 0.2
    seed: int = 0


QUICK = dict(bc_steps=600, steps=600, eval_every=100, seeds=2, eval_samples=256)


def agent_config(kind: str, s: Settings):
    """The library's agent defaults shrunk for a CPU bandit (2 x `hidden`, `num_qs` critics).

    Agent hyperparameters keep the paper values (eta_lambda = 0.01 included) except the learning
    rate, 1e-3 so that a few thousand steps suffice.
    """
    config = importlib.import_module(f"configs.{kind}").defaults()
    config.horizon = 1
    config.batch_size = s.batch_size
    config.actor_hidden_dims = (s.hidden, s.hidden)
    config.critic_hidden_dims = (s.hidden, s.hidden)
    config.num_qs = s.num_qs
    config.flow_steps = s.flow_steps
    config.lr = s.lr
    config.eta_lambda = s.eta_lambda
    return config


def _example_inputs():
    return jnp.zeros(bandit.OBS_DIM), jnp.zeros((1, bandit.ACTION_DIM))


def _scan_updates(agent, state, dataset, key, steps: int, batch_size: int):
    """`steps` updates of `agent` on fresh batches in one lax.scan: -> (state, per-step metrics)."""
    sample = lambda batch_key: bandit.sample_batch(dataset, batch_key, batch_size)
    return train.scan_updates(agent.update, sample, state, jax.random.split(key, steps))


def pretrain(s: Settings, dataset, keys):
    """BC-pretrained base fields, one per seed: keys (S, 2) -> base params with leading axis S."""
    config = agent_config("trqam", s)

    def one(key):
        init_key, run_key = jax.random.split(key)
        state = bc.init(init_key, config, *_example_inputs())
        state, metrics = _scan_updates(bc, state, dataset, run_key, s.bc_steps, s.batch_size)
        return state.params["base"], metrics["bc_loss"]

    return jax.jit(jax.vmap(one))(keys)


def eval_grid(s: Settings):
    """Context grid of the evaluation: midpoints of `eval_contexts` equal cells of [-1, 1]."""
    n = s.eval_contexts
    return (jnp.arange(n) + 0.5) * (2.0 / n) - 1.0


def _policy_samples(state, params, contexts, num: int, key):
    """Deployed actions of the field `params` at each context: (C,) -> (C, num, 2)."""
    swapped = state.replace(params=dict(state.params, fine=params))
    obs = jnp.repeat(contexts, num)[:, None]
    return adjoint_matching.act(swapped, obs, key).reshape(contexts.shape[0], num, -1)


def evaluate(state, spec: bandit.BanditSpec, contexts, reference, key):
    """Evaluation of one row's deployed policy (pure; vmapped with the rows).

    Args:
      state: one row's `AgentState`.
      contexts: (C,) evaluation contexts.
      reference: (C, N, 2) actions of the pretrained policy at those contexts (independent noise).
      key: PRNG key.
    Returns:
      dict of scalars: true_reward, critic_error (mean |Q - r|), critic_bias (mean Q - r),
      terminal_kl (k-NN, to the pretrained policy), hist_tv, mode_tv, terminal_kl_ema_ref (k-NN, to
      the current EMA base, the reference of the path KL), ema_ref_drift_kl (k-NN, EMA base to the
      pretrained policy).
    """
    num = reference.shape[1]
    policy_key, ema_key = jax.random.split(key)
    samples = _policy_samples(state, state.params["fine"], contexts, num, policy_key)
    # The path KL is measured against the EMA base, which keeps training by BC during
    # fine-tuning; its deployed samples show how far the reference itself has moved.
    ema_ref = _policy_samples(state, state.params["target_base"], contexts, num, ema_key)
    flat_c = jnp.repeat(contexts, num)
    flat_a = samples.reshape(-1, bandit.ACTION_DIM)
    reward = bandit.true_reward(spec, flat_c, flat_a)
    critic = state.config.critic_module()
    q = jnp.mean(
        networks.apply_critic_ensemble(critic, state.params["critic"], flat_c[:, None], flat_a),
        axis=0,
    )
    # lax.map over contexts keeps one (N, N) distance matrix alive at a time.
    per_context = jax.lax.map(
        lambda args: jnp.stack(
            [
                bandit.knn_kl(args[1], args[2]),
                bandit.histogram_tv(args[1], args[2]),
                bandit.mode_tv(spec, args[0], args[1], args[2]),
                bandit.knn_kl(args[1], args[3]),
                bandit.knn_kl(args[3], args[2]),
            ]
        ),
        (contexts, samples, reference, ema_ref),
    )
    means = jnp.mean(per_context, axis=0)
    return {
        "true_reward": jnp.mean(reward),
        "critic_error": jnp.mean(jnp.abs(q - reward)),
        "critic_bias": jnp.mean(q - reward),
        "terminal_kl": means[0],
        "hist_tv": means[1],
        "mode_tv": means[2],
        "terminal_kl_ema_ref": means[3],
        "ema_ref_drift_kl": means[4],
    }


TRAIN_METRICS = ("kl", "kl_ema", "lambda", "critic_loss", "am_loss", "q_mean")


def finetune(kind: str, s: Settings, spec, dataset, bases, values, key):
    """Fine-tune every (value, seed) row of one agent in one compiled program.

    Args:
      kind: "qam" or "trqam".
      bases: pretrained base params with a leading seed axis S.
      values: (V,) swept values (betas or budgets).
    Returns:
      (train metrics dict of (V, S, steps), eval metrics dict of (V, S, evals + 1)).
    """
    config = agent_config(kind, s)
    num_values, num_seeds = len(values), s.seeds
    rows = num_values * num_seeds
    seed_of_row = jnp.tile(jnp.arange(num_seeds), num_values)
    row_bases = jax.tree.map(lambda b: b[seed_of_row], bases)
    row_values = jnp.repeat(jnp.asarray(values, jnp.float32), num_seeds)
    init_keys, ref_keys, run_keys = (jax.random.split(k, rows) for k in jax.random.split(key, 3))
    contexts = eval_grid(s)
    num_blocks = s.steps // s.eval_every

    def run_row(init_key, base, value, ref_key, run_key):
        state = adjoint_matching.init(init_key, config, *_example_inputs(), kind=kind)
        state = adjoint_matching.with_pretrained_base(state, base)
        state = state.replace(hparams={SWEPT[kind]: value})
        reference = _policy_samples(state, base, contexts, s.eval_samples, ref_key)

        def block(state, block_key):
            update_key, eval_key = jax.random.split(block_key)
            state, metrics = _scan_updates(
                adjoint_matching, state, dataset, update_key, s.eval_every, s.batch_size
            )
            ev = evaluate(state, spec, contexts, reference, eval_key)
            return state, ({k: metrics[k] for k in TRAIN_METRICS}, ev)

        first_key, blocks_key = jax.random.split(run_key)
        ev0 = evaluate(state, spec, contexts, reference, first_key)
        _, (train, evals) = jax.lax.scan(block, state, jax.random.split(blocks_key, num_blocks))
        evals = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), ev0, evals)
        return {k: v.reshape(-1) for k, v in train.items()}, evals

    program = jax.jit(jax.vmap(run_row))
    train, evals = program(init_keys, row_bases, row_values, ref_keys, run_keys)
    shape = (num_values, num_seeds)
    reshape = lambda a: np.asarray(a).reshape(shape + a.shape[1:])
    return jax.tree.map(reshape, train), jax.tree.map(reshape, evals)


def run(s: Settings):
    """The whole experiment: -> dict of numpy results (see `write_outputs`)."""
    spec = bandit.BanditSpec(critic_error=s.critic_error)
    data_key, bc_key, qam_key, trqam_key, ref_key = jax.random.split(jax.random.PRNGKey(s.seed), 5)
    dataset = bandit.make_dataset(spec, data_key, s.dataset_size)
    timings = {}
    start = time.perf_counter()
    bases, bc_loss = pretrain(s, dataset, jax.random.split(bc_key, s.seeds))
    jax.block_until_ready(bases)
    timings["pretrain_s"] = time.perf_counter() - start
    results = {"bc_loss": np.asarray(bc_loss)}
    for kind, values, key in (("qam", s.betas, qam_key), ("trqam", s.budgets, trqam_key)):
        start = time.perf_counter()
        train, evals = finetune(kind, s, spec, dataset, bases, values, key)
        timings[f"{kind}_s"] = time.perf_counter() - start
        results[kind] = {"values": np.asarray(values), "train": train, "evals": evals}
    contexts = jax.random.uniform(ref_key, (4096,), minval=-1.0, maxval=1.0)
    behaviour = bandit.sample_behaviour(spec, ref_key, contexts)
    results["behaviour_reward"] = float(jnp.mean(bandit.true_reward(spec, contexts, behaviour)))
    results["best_reward"] = float(jnp.mean(bandit.best_reward(spec, contexts)))
    results["timings"] = timings
    return results


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


def write_outputs(results, s: Settings, out: str):
    """stability.png, stability_table.md, stability.npz in `out`; returns the table text."""
    os.makedirs(out, exist_ok=True)
    plot(results, s, os.path.join(out, "stability.png"))
    table = markdown_table(results, s)
    with open(os.path.join(out, "stability_table.md"), "w") as f:
        f.write(table)
    flat = {"bc_loss": results["bc_loss"]}
    for kind in AGENTS:
        flat[f"{kind}/values"] = results[kind]["values"]
        for group in ("train", "evals"):
            for k, v in results[kind][group].items():
                flat[f"{kind}/{group}/{k}"] = v
    np.savez_compressed(os.path.join(out, "stability.npz"), **flat)
    return table


def _floats(text):
    return tuple(float(v) for v in text.split(",") if v)


def parse_args(argv=None) -> Settings:
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--betas", type=_floats, default=d.betas, help="QAM inverse temperatures")
    p.add_argument("--budgets", type=_floats, default=d.budgets, help="TRQAM KL budgets eps")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps")
    p.add_argument("--bc-steps", type=int, default=None, help="BC pretraining steps")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--critic-error", type=float, default=None, help="injected error amplitude e")
    p.add_argument("--eta-lambda", type=float, default=None, help="dual step size")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default="docs", help="output directory")
    p.add_argument("--quick", action="store_true", help="short smoke run (2 seeds, 600 steps)")
    args = p.parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    values.update(betas=args.betas, budgets=args.budgets)
    for name in ("seeds", "steps", "bc_steps", "eval_every", "critic_error", "eta_lambda", "seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    s = dataclasses.replace(d, **values)
    if s.steps % s.eval_every:
        p.error(f"--steps={s.steps} must be a multiple of --eval-every={s.eval_every}")
    return s, args.out


def main(argv=None) -> int:
    s, out = parse_args(argv)
    start = time.perf_counter()
    results = run(s)
    table = write_outputs(results, s, out)
    total = time.perf_counter() - start
    print(table)
    times = ", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items())
    print(
        f"wrote {out}/stability.png, stability_table.md, stability.npz in {total:.1f} s ({times})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
