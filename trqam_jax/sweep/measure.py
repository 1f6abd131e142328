"""The cost of each program, measured on this machine in a worker process of its own.

    python -m trqam_jax.sweep.measure OUT.json CALLS GENERATE CACHE_DIR CONFIG.json ...

For each resolved program config (a `configs/resolved.py` file; its name is the program's) it
builds the launcher's compiled training call on the program's own data, rows and sharding, times
`CALLS` calls after the compiling one, and times one evaluation and the environments it needs;
OUT.json maps each program to its record (or {"error": message} for a config or data the
launcher would refuse). GENERATE (0 / 1) allows generating missing data (a dry run does not). The
compiles go to the persistent compilation cache CACHE_DIR ("none": off), where the program's
launcher later finds them.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp

from configs import resolved
from trqam_jax import compile_cache, experiment, loop, run_dir, train
from trqam_jax.agents import bc, common, get_agent
from trqam_jax.data.datasets import DatasetNotFoundError
from trqam_jax.envs import make_envs
from trqam_jax.sweep.plan import BC, FINETUNE


def _timed(fn, *args):
    """(fn(*args) once its arrays are ready, the seconds it took)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def measure(config, stage: str, calls: int) -> dict:
    """Seconds of the parts of one launcher run of `config` (its rows block 0).

    Args:
      config: a resolved program config; stage: "bc" or "finetune"; calls: timed calls >= 1.
    Returns:
      data_s (loading the data onto the devices), compile_s / cache_hits / cache_misses (the
      first training call's), s_per_step (the fastest timed call per update step of all rows),
      steps_per_call, rows, and for a program that evaluates: envs_s (creating its evaluation
      environments), eval_s (one evaluation after its compile) and evals (`evaluations`).
    """
    rows = experiment.check_config(config)
    mesh = train.make_mesh(len(rows))
    data, data_s = _load(config)
    start = time.perf_counter()
    source = experiment.data_source(data, config, mesh)
    data_s += time.perf_counter() - start
    examples = (
        jnp.zeros(data.train["observations"].shape[1]),
        jnp.zeros((config.agent.horizon, data.train["actions"].shape[1])),
    )
    agent = bc if stage == BC else get_agent(config.agent.agent_name)
    states = train.init_rows(agent, config.agent, jax.random.PRNGKey(0), rows.ids, *examples)
    if agent is not bc:
        states = common.set_hparams(states, rows.swept)
    states = train.shard_rows(states, mesh)
    timed = loop.OfflineStage(stage, agent, config, source, jax.random.PRNGKey(1), rows)
    with compile_cache.CompileTimer() as timer:
        states = jax.block_until_ready(timed.step(states, 0))[0]
    seconds = []
    for call in range(1, calls + 1):
        (states, *_), took = _timed(timed.step, states, call * timed.stride)
        seconds.append(took)
    record = dict(
        timer.record(),
        data_s=data_s,
        rows=len(rows),
        steps_per_call=timed.stride,
        s_per_step=min(seconds) / timed.stride,
    )
    if stage != BC and config.eval_episodes:
        record.update(_evaluation(config, rows, agent, states), evals=evaluations(config))
    return record


def _load(config):
    """(the dataset, seconds to load it): generated first if missing and allowed, untimed (the
    program will find it on disk)."""
    quiet = config.copy_and_resolve_references()
    quiet.generate_if_missing = False
    try:
        return _timed(experiment.load_data, quiet)
    except DatasetNotFoundError:
        if not config.generate_if_missing:
            raise
    experiment.load_data(config)
    return _timed(experiment.load_data, quiet)


def evaluations(config) -> int:
    """How many evaluations a fresh run of `config` makes (`loop.run_stage`'s cadence): one at the
    start of the offline stage, then at every multiple of `eval_interval` and at each stage's end
    (the online stage does not evaluate at its start)."""
    count = 1 if config.offline_steps else 0
    # Offline calls run steps_per_call steps, online ones a step each (loop.OnlineStage.stride).
    for total, stride in ((config.offline_steps, config.steps_per_call), (config.online_steps, 1)):
        ends = range(stride, total + 1, stride)
        count += sum(1 for step in ends if step % config.eval_interval == 0 or step == total)
    return count


def _evaluation(config, rows, agent, states) -> dict:
    """envs_s and eval_s of one evaluation as the launcher builds it (experiment._run)."""
    start = time.perf_counter()
    per_row = max(1, min(config.eval_episodes, config.eval_envs // len(rows)))
    envs = make_envs(experiment.row_env_names(config, rows, per_row), len(rows) * per_row)
    envs_s = time.perf_counter() - start
    try:
        evaluate = loop.make_evaluator(config, envs, agent.act, jax.random.PRNGKey(2), rows)
        evaluate(states)  # compiles the policy
        _, eval_s = _timed(evaluate, states)
    finally:
        envs.close()
    return dict(envs_s=envs_s, eval_s=eval_s)


def main(argv: list[str]) -> int:
    """argv: [program, OUT.json, calls, generate (0/1), cache dir, config files...]."""
    out, calls, generate, cache, paths = argv[1], int(argv[2]), argv[3] == "1", argv[4], argv[5:]
    if cache != compile_cache.DISABLED:
        compile_cache.enable(cache)
    costs = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        config = resolved.get_config(path)
        config.generate_if_missing = config.generate_if_missing and generate
        config.init_from = ""  # not trained yet; the timed states start from scratch
        stage = BC if config.bc_steps else FINETUNE  # a fine-tuning program starts from BC
        start = time.perf_counter()
        try:
            costs[name] = measure(config, stage, calls)
        except experiment.USER_ERRORS as err:
            costs[name] = {"error": str(err)}
        costs[name]["measure_s"] = time.perf_counter() - start
        print(f"[sweep] measured {name} in {costs[name]['measure_s']:.0f} s", flush=True)
    run_dir.write_json(out, costs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
