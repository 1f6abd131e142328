"""The paper's protocol as one command: BC per domain, every agent's fine-tuning, the report.

    python -m experiments.sweep --agents=paper --domains=paper --tasks=1,2,3,4,5 --seeds=8
    python -m experiments.sweep --agents=trqam,qam --domains=cube-double-play --tasks=1,2 \\
        --seeds=2 --root=runs/sweep-small --set agent.num_qs=2 --set offline_steps=2000 --dry_run

Checks every program and prints the plan first (programs, rows, update steps, status), then its
cost measured on this machine (compile seconds, seconds per step, evaluation, the estimated wall
time), writes it to <root>/plan.json with every program's resolved config, then runs one BC
program per domain, one fine-tuning program per (agent, domain) starting from it, each one
experiments.run, and the report over the root (<root>/report). Rerunning skips what
is finished and resumes what is not; a changed config is refused, naming the field.
Several processes (one per host or GPU, e.g. `srun`): add --distributed (docs/cluster.md).
docs/sweep.md describes the layout of <root> and every flag; trqam_jax/sweep/ the plan.
"""

import os
import sys
import tempfile
import time

from absl import flags, logging

# The package import selects MuJoCo's no-GL mode before MuJoCo is imported.
from experiments import fail, last_one_wins, refuse_arguments, run_absl
from trqam_jax import compile_cache, run_dir, sweep
from trqam_jax.report import USER_ERRORS as REPORT_ERRORS
from trqam_jax.report import write_report

flags.DEFINE_string(
    "agents", "paper", "paper (the TRQAM table's methods present here), all, or config names"
)
flags.DEFINE_string("domains", "paper", "paper (the TRQAM table's 10 domains) or domain names")
flags.DEFINE_string("tasks", "1,2,3,4,5", "task ids; they ride the row axis of each program")
flags.DEFINE_integer("seeds", 8, "seeds per (task, swept value)")
flags.DEFINE_string(
    "kl_budgets", "", "kl_budget values for the agents that sweep it (TRQAM; '' = own)"
)
flags.DEFINE_multi_string(
    "swept",
    [],
    "HPARAM=V1,V2,...: the values of an agent's swept hparam for every agent that sweeps it, "
    "e.g. --swept=inv_temp=1,3,10 (QAM); --kl_budgets=X is --swept=kl_budget=X",
)
flags.DEFINE_string("root", "runs/sweep", "directory of every run, the plan and the report")
flags.DEFINE_multi_string(
    "set",
    [],
    "key=value config override for every agent that has the field (repeatable; a key given "
    "twice: the last one wins), e.g. --set agent.num_qs=2 --set offline_steps=2000",
)
flags.DEFINE_bool("dry_run", False, "check and print the plan, then stop; writes nothing")
flags.DEFINE_integer(
    "time_calls", 1, "timed calls of each program's compiled update for the estimate (0: none)"
)
flags.DEFINE_bool("plots", True, "let the report draw its figures")
flags.DEFINE_string(
    "compile_cache",
    "",
    "persistent compilation cache directory ('' = $JAX_COMPILATION_CACHE_DIR, "
    "else <root>/compile_cache; none = off)",
)
flags.DEFINE_bool(
    "distributed",
    False,
    "join jax.distributed (detects SLURM, Open MPI, TPU pods; implied by "
    "--coordinator_address or $JAX_COORDINATOR_ADDRESS)",
)
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (jax.distributed)")
flags.DEFINE_integer("num_processes", 0, "processes of the sweep (0: detected)")
flags.DEFINE_integer("process_id", -1, "this process's index (-1: detected)")
flags.DEFINE_float("barrier_timeout_h", 72.0, "hours a process waits for the others")
FLAGS = flags.FLAGS
RESOLVED_CONFIG = "configs/resolved.py"  # the launcher's config file for a resolved JSON config


def make_workers(cache: str, env: dict):
    """(launch, measure) for `sweep.run`: worker processes that die with this one."""

    def launch(config_path: str, part: int, record: str) -> int:
        args = [
            record,
            f"--config={RESOLVED_CONFIG}:{os.path.abspath(config_path)}",
            f"--config.rows_part={part}",
            f"--compile_cache={cache}",
        ]
        return sweep.run_worker("trqam_jax.sweep.part", args, env)

    def measure(paths: list[str], calls: int, generate: bool) -> tuple[dict, float]:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "costs.json")
            start = time.perf_counter()
            args = [out, str(calls), str(int(generate)), cache, *paths]
            if sweep.run_worker("trqam_jax.sweep.measure", args, env) != 0:
                raise sweep.ConfigError("the cost measurement failed (its output is above)")
            costs = run_dir.read_json(out)
        # What a worker spends besides its programs: starting Python, importing JAX and MuJoCo.
        measured = sum(cost["measure_s"] for cost in costs.values())
        return costs, max(0.0, time.perf_counter() - start - measured)

    return launch, measure


def main(argv):
    refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines off the console
    try:
        spec = sweep.make_sweep(
            FLAGS.agents,
            FLAGS.domains,
            FLAGS.tasks,
            FLAGS.seeds,
            FLAGS.kl_budgets,
            FLAGS.root,
            FLAGS.set,
            FLAGS.swept,
        )
    except sweep.USER_ERRORS as err:
        sys.exit(fail(err, 2))
    by_key = {}
    for text in FLAGS.set:
        by_key.setdefault(text.partition("=")[0].strip(), []).append(f"--set {text}")
    for key, given in by_key.items():
        if len(given) > 1:
            print(last_one_wins(f"--set {key}", given), file=sys.stderr)
    if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        processes = sweep.connect(
            FLAGS.coordinator_address or None,
            FLAGS.num_processes or None,
            None if FLAGS.process_id < 0 else FLAGS.process_id,
            timeout_s=FLAGS.barrier_timeout_h * 3600,
        )
    else:
        processes = sweep.Processes()
    cache = compile_cache.cache_dir(FLAGS.compile_cache, spec.root) or compile_cache.DISABLED
    launch, measure = make_workers(cache, sweep.worker_env())

    def make_report(paths: list[str], out: str) -> int:
        try:
            write_report(paths, out, plots=FLAGS.plots)
        except REPORT_ERRORS as err:
            return fail(err, 2)
        return 0

    try:
        code = sweep.run(
            spec,
            processes,
            launch,
            make_report,
            measure,
            dry_run=FLAGS.dry_run,
            time_calls=FLAGS.time_calls,
            command=sys.argv,
        )
    except sweep.USER_ERRORS as err:
        code = fail(err, 2)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run_absl): the workers are stopped already
        code = fail("interrupted; rerun the same command to resume", 130)
    sys.exit(code)


def cli() -> None:
    """The `trqam-sweep` console script: the same as `python -m experiments.sweep`."""
    run_absl(main, __name__)


if __name__ == "__main__":
    cli()
