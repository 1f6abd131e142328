"""Stability of TRQAM vs QAM on a contextual bandit with a known answer (issue 8).

    python -m experiments.stability                 # default run, a few minutes on 2 CPU cores
    python -m experiments.stability --quick         # a smoke run in well under a minute
    python -m experiments.stability --betas=1,10,100 --budgets=0.1,0.3,1 --seeds=3 --out=docs

Pipeline (trqam_jax.bandit defines the task, trqam_jax/stability/ runs it):
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
import sys
import time

from experiments import add_helpfull, numbers
from trqam_jax.stability.experiment import run, write_outputs
from trqam_jax.stability.settings import QUICK, Settings


def parse_args(argv=None) -> Settings:
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_helpfull(p)
    p.add_argument("--betas", type=numbers(float), default=d.betas, help="QAM inverse temperatures")
    p.add_argument("--budgets", type=numbers(float), default=d.budgets, help="TRQAM KL budgets eps")
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
