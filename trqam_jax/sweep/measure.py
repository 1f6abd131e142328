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
import tempfile
import time

import jax

from configs import resolved
from trqam_jax import checkpoint, compile_cache, experiment, loop, run_dir
from trqam_jax.agents import bc
from trqam_jax.data.datasets import DatasetNotFoundError
from trqam_jax.envs import make_envs
from trqam_jax.sweep import processes
from trqam_jax.sweep.plan import BC, FINETUNE


def _timed(fn, *args):
    """(fn(*args) once its arrays are ready, the seconds it took)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def measure(config, stage: str, calls: int) -> dict:
    """Seconds of the parts of one launcher run of `config` (its rows block 0), built as the
    launcher builds them (`experiment.prepare`, `initial_states`, `offline_stage`: the same
    compiled call, which the launcher then loads from the cache).

    Args:
      config: a resolved program config; stage: BC or FINETUNE; calls: timed calls >= 1.
    Returns:
      data_s (validating and loading the data onto the devices); compile_s, cache_hits,
      cache_misses (the first two training calls'); start_s (what the launcher's first two calls
      add to two calls: tracing, and loading their compiles from the persistent cache, or
      compiling without one); s_per_step (the fastest timed call per update step of all rows);
      steps_per_call; rows; checkpoint_s (saving one checkpoint of the states) and checkpoints
      (`checkpoints`); for a program that evaluates, envs_s (creating its evaluation
      environments), eval_s (one evaluation after its compile) and evals (`evaluations`).
    """
    prepared, data_s = _prepare(config)
    agent = bc if stage == BC else prepared.agent
    states = experiment.initial_states(prepared, agent)
    timed = experiment.offline_stage(prepared, BC if stage == BC else "offline", agent)

    def first_calls(initial):
        """The launcher's first two calls: the second one's states come out of a call, which
        makes it a program of its own (other input layouts)."""
        (after, *_), first_s = _timed(timed.step, initial, 0)
        (after, *_), second_s = _timed(timed.step, after, timed.stride)
        return after, first_s + second_s

    with compile_cache.CompileTimer() as timer:
        after, first_s = first_calls(states)
    if jax.config.jax_compilation_cache_dir:  # the launcher will load these compiles: time that
        jax.clear_caches()
        after, first_s = first_calls(states)
    seconds = []
    for call in range(2, calls + 2):
        (after, *_), took = _timed(timed.step, after, call * timed.stride)
        seconds.append(took)
    states = after
    with tempfile.TemporaryDirectory() as tmp:
        _, checkpoint_s = _timed(checkpoint.save, checkpoint.manager(tmp), 0, states)
    record = dict(
        timer.record(),
        data_s=data_s,
        rows=len(prepared.rows),
        steps_per_call=timed.stride,
        s_per_step=min(seconds) / timed.stride,
        start_s=max(0.0, first_s - 2 * min(seconds)),
        checkpoint_s=checkpoint_s,
        checkpoints=checkpoints(config),
    )
    if stage != BC and config.eval_episodes:
        record.update(_evaluation(prepared, states), evals=evaluations(config))
    return record


def _prepare(config):
    """(experiment.prepare(config), its seconds); a missing dataset that may be generated is
    generated first, untimed (the program will find it on disk)."""
    quiet = config.copy_and_resolve_references()
    quiet.generate_if_missing = False
    try:
        return _timed(experiment.prepare, quiet)
    except DatasetNotFoundError:
        if not config.generate_if_missing:
            raise
    experiment.load_data(config)
    return _timed(experiment.prepare, quiet)


def _ends(total: int, stride: int, interval: int) -> int:
    """Calls of a stage of `total` steps (`stride` per call) that end on a multiple of
    `interval` or at the stage's end (`loop.run_stage`'s cadence)."""
    return sum(1 for end in range(stride, total + 1, stride) if end % interval == 0 or end == total)


def evaluations(config) -> int:
    """How many evaluations a fresh run of `config` makes: one at the start of the offline stage,
    then at every multiple of `eval_interval` and at each stage's end (offline calls run
    steps_per_call steps, online ones a step each; the online stage does not evaluate first)."""
    start = 1 if config.offline_steps else 0
    offline = _ends(config.offline_steps, config.steps_per_call, config.eval_interval)
    return start + offline + _ends(config.online_steps, 1, config.eval_interval)


def checkpoints(config) -> int:
    """How many checkpoints a fresh run of `config` saves (every `save_interval`, each stage's
    end)."""
    stages = (
        (config.bc_steps, config.steps_per_call),
        (config.offline_steps, config.steps_per_call),
    )
    saves = sum(_ends(total, stride, config.save_interval) for total, stride in stages)
    return saves + _ends(config.online_steps, 1, config.save_interval)


def _evaluation(prepared, states) -> dict:
    """envs_s and eval_s of one evaluation as the launcher builds it (experiment._run)."""
    config, rows = prepared.config, prepared.rows
    start = time.perf_counter()
    per_row = max(1, min(config.eval_episodes, config.eval_envs // len(rows)))
    envs = make_envs(experiment.row_env_names(config, rows, per_row), len(rows) * per_row)
    envs_s = time.perf_counter() - start
    try:
        key = experiment.run_keys(config)["eval"]
        evaluate = loop.make_evaluator(config, envs, prepared.agent.act, key, rows)
        evaluate(states)  # compiles the policy
        _, eval_s = _timed(evaluate, states)
    finally:
        envs.close()
    return dict(envs_s=envs_s, eval_s=eval_s)


def main(argv: list[str]) -> int:
    """argv: [program, OUT.json, calls, generate (0/1), cache dir, config files...]."""
    out, calls, generate, cache, paths = argv[1], int(argv[2]), argv[3] == "1", argv[4], argv[5:]
    processes.die_with_parent()
    if cache != compile_cache.DISABLED:
        compile_cache.enable(cache)
    costs = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        config = resolved.get_config(path)
        config.generate_if_missing = config.generate_if_missing and generate
        loads_base, config.init_from = bool(config.init_from), ""  # the BC has not run yet
        stage = BC if config.bc_steps else FINETUNE  # a fine-tuning program starts from BC
        start = time.perf_counter()
        try:
            costs[name] = measure(config, stage, calls)
            costs[name]["checkpoints"] += loads_base  # restoring the BC base costs about a save
        except experiment.USER_ERRORS as err:
            costs[name] = {"error": str(err)}
        costs[name]["measure_s"] = time.perf_counter() - start
        print(f"[sweep] measured {name} in {costs[name]['measure_s']:.0f} s", flush=True)
    run_dir.write_json(out, costs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
