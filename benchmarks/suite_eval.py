"""The suite's eval part: `eval_speed.run_one`, batched evaluation env-steps/s against one
episode at a time, per environment while the budget lasts."""

import argparse
import time

import jax

from benchmarks import eval_speed, presets
from benchmarks.budget import Budget, describe


def eval_part(budget: Budget, opts) -> dict:
    """`eval_speed.run_one` per environment while the budget lasts."""
    args = argparse.Namespace(
        seeds=opts.eval_seeds,
        episodes=opts.eval_episodes,
        num_envs=0,
        max_episode_steps=opts.eval_max_episode_steps or None,
        seed=0,
        workers=opts.eval_workers,
        repeats=1,
        progress=False,
    )
    runs, skipped, errors = [], [], []
    estimate = 0.0
    for env_name in [name for name in opts.eval_envs.split(",") if name]:
        reason = budget.refuses(estimate)
        if reason:
            skipped.append({"env": env_name, "reason": reason})
            continue
        config = eval_speed.agent_config_for(env_name)
        config.update(presets.PRESET_OVERRIDES[opts.size])
        start = time.perf_counter()
        try:
            runs.append(eval_speed.run_one(env_name, args, jax.random.PRNGKey(0), config))
        except Exception as err:  # recorded; the next environment runs
            errors.append({"env": env_name, "error": describe(err)})
        estimate = time.perf_counter() - start
    return {
        "settings": {
            "size": opts.size,
            "seeds": args.seeds,
            "episodes_per_seed": args.episodes,
            "workers": args.workers,
            "max_episode_steps": args.max_episode_steps,
        },
        "runs": runs,
        "skipped": skipped,
        "errors": errors,
    }


def eval_table(part: dict, _parts: dict) -> list[str]:
    lines = [
        "| env | evaluator | env-steps/s | policy ms / call | policy share | x sequential |",
        "|---|---|---|---|---|---|",
    ]
    for run in part["runs"]:
        for name in ("sequential", *run["speedup_over_sequential"]):
            r = run[name]
            speedup = run["speedup_over_sequential"].get(name)
            lines.append(
                f"| {run['env']} | {name} | {r['env_steps_per_s']:,.0f} | "
                f"{r['ms_per_policy_call']:.2f} | {r['policy_share_of_wall']:.0%} | "
                f"{'-' if speedup is None else speedup} |"
            )
    return lines
