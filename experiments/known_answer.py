"""Known-answer check of TRQAM and QAM: a Gaussian base and a quadratic critic (issue 17).

    python -m experiments.known_answer --out DIR      # default run, about 4-5 minutes on 2 cores
    python -m experiments.known_answer --quick --out DIR                # smoke run, K = 10 only
    python -m experiments.known_answer --stability-check --out DIR      # the bandit's KL puzzle

Behaviour N(mu0, Sigma0) in d = 2, critic Q(a) = -1/2 (a - a*)^T A (a - a*): the tilt
pi_base exp(beta Q) / Z, its KL to the base and the lambda* that meets a budget are closed forms,
and so is the fixed point of the discretised scheme the library runs (trqam_jax/gaussian_tilt.py).

1. Core pieces with the exact answer plugged in: exact base field as the reference, exact Q as the
   critic, a small MLP fine field trained with `sde_rollout`, `lean_adjoint`,
   `adjoint_matching_loss`, `path_kl` and `dual_update` (TRQAM at each budget, QAM at each beta).
2. The same at K in {10, 20, 40} flow steps, against the exact discrete fixed point at each K.
3. The full agent (`agents.bc` then `agents.trqam`) on samples of the base and noisy rewards.
4. The deployed law's KL to the base three ways (Gaussian from moments, k-NN, D_hat), ODE vs SDE.

The experiment lives in trqam_jax/known_answer/. Writes results.json, known_answer.png and
table.md to --out (docs/known_answer.md has them).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from experiments import add_helpfull, numbers
from trqam_jax.known_answer.experiment import run, write_outputs
from trqam_jax.known_answer.problem import QUICK, Settings
from trqam_jax.known_answer.stability_check import stability_check


def parse_args(argv=None):
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_helpfull(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="smoke run: K = 10 only, short training")
    p.add_argument("--budgets", type=numbers(float), default=None, help="TRQAM budgets eps")
    p.add_argument("--betas", type=numbers(float), default=None, help="QAM inverse temperatures")
    p.add_argument("--flow-steps", type=numbers(int), default=None, help="values of K")
    p.add_argument("--steps", type=int, default=None, help="part-1 training steps per row")
    p.add_argument("--agent-steps", type=int, default=None, help="part 3 (0 skips it)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--stability-check",
        action="store_true",
        help="instead: the stability bandit's terminal-KL puzzle (writes stability_check.json)",
    )
    args = p.parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    for name in ("budgets", "betas", "flow_steps", "steps", "agent_steps", "seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    s = dataclasses.replace(d, **values)
    for name in ("steps", "agent_steps"):
        if getattr(s, name) % s.log_every:
            p.error(
                f"--{name.replace('_', '-')}={getattr(s, name)} must be a multiple of {s.log_every}"
            )
    return s, args.out, args.stability_check


def main(argv=None) -> int:
    s, out, check = parse_args(argv)
    start = time.perf_counter()
    if check:
        result = stability_check(s.budgets, s.seed)
        result["wall_s"] = time.perf_counter() - start
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "stability_check.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result, indent=1))
        return 0
    results, arrays = run(s)
    results["timings"]["total_s"] = time.perf_counter() - start
    tables = write_outputs(results, arrays, s, out)
    print(tables)
    times = ", ".join(f"{k} {v:.1f}" for k, v in results["timings"].items())
    print(f"wrote {out}/results.json, table.md, known_answer.png ({times})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
