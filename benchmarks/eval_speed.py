"""Env-steps/s of the lockstep batched evaluator against one episode at a time.

    python -m benchmarks.eval_speed [--seeds=2] [--episodes=2] [--num_envs=S*M] [--workers=2]
        [--envs=cube-double-play-singletask-task1-v0,antmaze-large-navigate-singletask-task1-v0]

The policy is the TRQAM agent's deployed sampler at paper size (flow field 4 x 512 GELU, K = 10
Euler steps; H = 5 for cube, 1 for antmaze, from configs/trqam.py:DOMAIN), randomly
initialised. All evaluators run the same episodes (same reset seeds):
- batched: `evaluation.evaluate` with `jit(vmap(act))` over the S stacked seed states, one call
  per chunk boundary for all S x E environments;
- sequential: `evaluation.evaluate_sequential` with `jit(act)` on one observation at a time, as
  a one-process-per-seed evaluator does;
- batched_W_workers: the batched evaluator with W worker processes stepping the environments.
The untrained policy: its weights do not change the cost of a step, and it runs every episode to
the time limit, so every evaluator does the same, full-length work.
Compilation and environment creation are timed separately and excluded from steps/s. Results go
to benchmarks/results/eval_speed_<device>.json (the device is the JAX backend running the policy;
environments always step on the host CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import write_result
from configs.trqam import get_config
from trqam_jax import evaluation
from trqam_jax.agents import trqam
from trqam_jax.envs import EnvPool, make_envs

DEFAULT_ENVS = "cube-double-play-singletask-task1-v0,antmaze-large-navigate-singletask-task1-v0"


def agent_config_for(env_name: str):
    """The TRQAM agent config of the env's domain (configs/trqam.py:DOMAIN): paper sizes and H."""
    domain = env_name.split("-singletask")[0]
    return get_config(domain).agent


class TimedPolicy:
    """Wraps a policy to count calls and the wall time they take (results pulled to host)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        out = np.asarray(self.fn(*args))  # waits for the device, so the time is the real cost
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def make_policies(num_seeds: int, obs_dim: int, action_dim: int, config, key):
    """(batched policy, single policy, agent description) for S randomly initialised seeds."""
    horizon = config.horizon
    example_obs = jnp.zeros((obs_dim,), jnp.float32)
    example_actions = jnp.zeros((horizon, action_dim), jnp.float32)
    states = jax.vmap(lambda k: trqam.init(k, config, example_obs, example_actions))(
        jax.random.split(key, num_seeds)
    )
    # Only the deployed field is needed to act; dropping the critics and optimiser state keeps
    # the arguments of every call small.
    states = states.replace(
        params={"fine": states.params["fine"], "base": states.params["base"]}, opt_state=None
    )

    @jax.jit
    def batched_act(states, observations, key):
        # Split inside the compiled call: an eager split per call costs as much as the policy.
        keys = jax.random.split(key, num_seeds)
        return jax.vmap(trqam.act)(states, observations, keys)

    def batched(observations, key):
        return batched_act(states, observations, key)

    single_act = jax.jit(trqam.act)
    seed_states = [jax.tree.map(lambda x, s=s: x[s], states) for s in range(num_seeds)]
    single = evaluation.per_seed_single_policy(
        [lambda obs, key, st=st: single_act(st, obs, key) for st in seed_states]
    )
    cfg = states.config
    description = {
        "policy": "trqam_jax.agents.trqam.act (deterministic Euler sampler), random init",
        "hidden_dims": list(cfg.actor_hidden_dims),
        "activation": "gelu",
        "layer_norm": cfg.actor_layer_norm,
        "flow_steps": cfg.flow_steps,
        "horizon": horizon,
        "chunk_dim": cfg.chunk_dim,
    }
    return batched, single, description


def warm_up(envs: EnvPool) -> None:
    """Pays the one-off costs of a first reset and step (gymnasium's env checker, lazy MuJoCo
    setup) outside the timed runs."""
    indices = list(range(len(envs)))
    envs.reset(indices, [0] * len(envs))
    envs.run_chunks(indices, np.zeros((len(envs), 1, envs.action_dim), np.float32))


def run_one(env_name: str, args, key, config=None) -> dict:
    """Time every evaluator on `env_name` with the settings of `args` (this CLI's flags).

    `config` is the policy's agent config (default: the env's domain at paper size); the
    suite's --quick passes smaller networks.
    """
    num_envs = args.num_envs or args.seeds * args.episodes
    start = time.perf_counter()
    envs = make_envs(env_name, num_envs, args.max_episode_steps)
    env_creation_s = time.perf_counter() - start
    # The first reset and step of an environment pay one-off costs (gymnasium's env checker,
    # lazy MuJoCo setup); pay them here so that neither timed evaluator does.
    warm_up(envs)
    pools = {"batched": envs, "sequential": envs}
    if args.workers > 0:
        start = time.perf_counter()
        pools[f"batched_{args.workers}_workers"] = make_envs(
            env_name, num_envs, args.max_episode_steps, num_workers=args.workers
        )
        worker_creation_s = time.perf_counter() - start
        warm_up(pools[f"batched_{args.workers}_workers"])
    config = agent_config_for(env_name) if config is None else config
    horizon = config.horizon
    batched, single, description = make_policies(
        args.seeds, envs.obs_dim, envs.action_dim, config, key
    )
    per_seed = min(num_envs // args.seeds, args.episodes)

    # Compile both policies before timing (and check the output shapes once).
    start = time.perf_counter()
    out = np.asarray(batched(np.zeros((args.seeds, per_seed, envs.obs_dim), np.float32), key))
    assert out.shape == (args.seeds, per_seed, horizon, envs.action_dim), out.shape
    compile_batched_s = time.perf_counter() - start
    start = time.perf_counter()
    out = np.asarray(single(0, np.zeros((envs.obs_dim,), np.float32), key))
    assert out.shape == (horizon, envs.action_dim), out.shape
    compile_single_s = time.perf_counter() - start
    # The evaluators derive policy keys with eager jax.random ops, compiled on first use; do that
    # here too (same shapes) so that the first timed run does not pay for it.
    np.asarray(jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 0), 0), 256))

    kwargs = dict(num_seeds=args.seeds, episodes_per_seed=args.episodes, base_seed=args.seed)
    evaluators = {
        name: (single, evaluation.evaluate_sequential)
        if name == "sequential"
        else (batched, evaluation.evaluate)
        for name in pools
    }
    repeats = {name: [] for name in evaluators}
    # Alternate the two evaluators so that load from other processes on a shared machine hits
    # both alike; the summary is the median repeat.
    for _ in range(args.repeats):
        for name, (fn, evaluator) in evaluators.items():
            timed = TimedPolicy(fn)
            start = time.perf_counter()
            result = evaluator(pools[name], timed, key, progress=args.progress, **kwargs)
            wall = time.perf_counter() - start
            repeats[name].append(
                {
                    "env_steps": result.total_steps,
                    "episodes": int(result.length.size),
                    "wall_s": round(wall, 3),
                    "env_steps_per_s": round(result.total_steps / wall, 1),
                    "policy_calls": timed.calls,
                    "policy_s": round(timed.seconds, 3),
                    "ms_per_policy_call": round(1e3 * timed.seconds / max(timed.calls, 1), 3),
                    "policy_share_of_wall": round(timed.seconds / wall, 3),
                    "success_rate": float(result.success.mean()),
                }
            )
            print(
                f"{env_name} {name:>18}: {result.total_steps} steps in {wall:.1f} s = "
                f"{result.total_steps / wall:,.0f} env-steps/s; {timed.calls} policy calls, "
                f"{1e3 * timed.seconds / max(timed.calls, 1):.2f} ms each, "
                f"{100 * timed.seconds / wall:.0f}% of the time",
                flush=True,
            )
    results = {}
    for name, runs in repeats.items():
        median = sorted(runs, key=lambda r: r["env_steps_per_s"])[(len(runs) - 1) // 2]
        results[name] = {**median, "env_steps_per_s_repeats": [r["env_steps_per_s"] for r in runs]}
    for pool in pools.values():
        pool.close()
    baseline = results["sequential"]["env_steps_per_s"]
    speedup = {
        name: round(r["env_steps_per_s"] / baseline, 2)
        for name, r in results.items()
        if name != "sequential"
    }
    print(f"{env_name}: speed-up over sequential (medians): {speedup}", flush=True)
    return {
        "env": env_name,
        "obs_dim": envs.obs_dim,
        "action_dim": envs.action_dim,
        "max_episode_steps": envs.max_episode_steps,
        "seeds": args.seeds,
        "repeats": args.repeats,
        "episodes_per_seed": args.episodes,
        "num_envs": num_envs,
        "envs_per_seed_in_lockstep": per_seed,
        "agent": description,
        "env_creation_s": round(env_creation_s, 2),
        "worker_pool_creation_s": round(worker_creation_s, 2) if args.workers > 0 else None,
        "workers": args.workers,
        "compile_s": {"batched": round(compile_batched_s, 2), "single": round(compile_single_s, 2)},
        **results,
        "speedup_over_sequential": speedup,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default=DEFAULT_ENVS, help="comma-separated env names")
    parser.add_argument("--seeds", type=int, default=2, help="S, agent seeds side by side")
    parser.add_argument("--episodes", type=int, default=2, help="M, episodes per seed")
    parser.add_argument("--num_envs", type=int, default=0, help="pool size (0: S x M)")
    parser.add_argument(
        "--max_episode_steps", type=int, default=None, help="time limit (default: OGBench's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="agent init key and reset seeds")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also time the batched evaluator with W worker "
        "processes stepping the environments (0: skip)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each evaluator")
    parser.add_argument("--progress", action="store_true", help="tqdm bars")
    parser.add_argument("--out", default=None, help="json path (default results/eval_speed_<d>)")
    args = parser.parse_args(argv)

    platform_name = jax.devices()[0].platform
    print(f"policy device: {jax.devices()[0].device_kind} ({platform_name}); envs on host CPU")
    key = jax.random.PRNGKey(args.seed)
    load_start = os.getloadavg()[0]
    runs = [run_one(name, args, key) for name in args.envs.split(",") if name]
    record = {
        "benchmark": "eval_speed",
        "label": f"{platform_name.upper()} results"
        + (" (policy and environments on CPU)" if platform_name == "cpu" else ""),
        "command": "python -m benchmarks.eval_speed "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "load_average_1min_at_start": load_start,
        "runs": runs,
    }
    out = write_result("eval_speed", record, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
