"""The paper's protocol as one command: BC per domain, every agent's fine-tuning, the report.

    python -m experiments.sweep --agents=paper --domains=paper --tasks=1,2,3,4,5 --seeds=8
    python -m experiments.sweep --agents=trqam,qam --domains=cube-double-play --tasks=1,2 \\
        --seeds=2 --root=runs/sweep-small --set agent.num_qs=2 --set offline_steps=2000 --dry_run

Prints the plan first (programs, rows, update steps, status, measured compile seconds and
seconds per step, the estimated wall time), writes it to <root>/plan.json, then runs one BC
program per domain, one fine-tuning program per (agent, domain) starting from it, and
experiments.report over the fine-tuning runs (<root>/report). Rerunning skips what is finished and
resumes what is not. `--set key=value` overrides a config field of every agent that has it.
Several processes (one per host or GPU, e.g. `srun`): add --distributed (docs/cluster.md).
docs/sweep.md describes the layout of <root> and every flag; trqam_jax/sweep.py the plan.
"""

import json
import os
import subprocess
import sys

from trqam_jax.envs import headless_mujoco

headless_mujoco()  # state-based tasks need no rendering; set before MuJoCo is first imported

from absl import flags, logging  # noqa: E402

from experiments import report, run_absl  # noqa: E402
from trqam_jax import compile_cache, sweep  # noqa: E402

flags.DEFINE_string(
    "agents", "paper", "paper (the TRQAM table's methods present here), all, or config names"
)
flags.DEFINE_string("domains", "paper", "paper (the TRQAM table's 10 domains) or domain names")
flags.DEFINE_string("tasks", "1,2,3,4,5", "task ids; they ride the row axis of each program")
flags.DEFINE_integer("seeds", 8, "seeds per (task, budget)")
flags.DEFINE_string("kl_budgets", "", "budgets swept by the agents that have one ('' = own)")
flags.DEFINE_string("root", "runs/sweep", "directory of every run, the plan and the report")
flags.DEFINE_multi_string(
    "set",
    [],
    "key=value config override for every agent that has the field (repeatable), "
    "e.g. --set agent.num_qs=2 --set offline_steps=2000 --set dataset_dir=data/small",
)
flags.DEFINE_bool("dry_run", False, "print the plan and stop; writes nothing (but the cache)")
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
flags.DEFINE_string("worker", "", "internal: a job of a worker process (JSON)")
FLAGS = flags.FLAGS


def _worker_command(spec: sweep.Sweep) -> list[str]:
    """This CLI with the sweep's own flags (no distributed ones): what every worker runs."""
    return [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--agents={','.join(spec.agents)}",
        f"--domains={','.join(spec.domains)}",
        f"--tasks={','.join(map(str, spec.tasks))}",
        f"--seeds={spec.seeds}",
        f"--kl_budgets={','.join(map(str, spec.kl_budgets))}",
        f"--root={spec.root}",
        f"--compile_cache={FLAGS.compile_cache}",
        *(f"--set={override}" for override in FLAGS.set),
    ]


def main(argv):
    if len(argv) > 1:
        sys.exit(_fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value", 2))
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
        )
    except sweep.USER_ERRORS as err:
        sys.exit(_fail(err, 2))
    if FLAGS.worker:
        cache = compile_cache.cache_dir(FLAGS.compile_cache, spec.root)
        if cache:
            compile_cache.enable(cache)
        sys.exit(sweep.run_worker(spec, json.loads(FLAGS.worker)))

    if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        processes = sweep.connect(
            FLAGS.coordinator_address or None,
            FLAGS.num_processes or None,
            None if FLAGS.process_id < 0 else FLAGS.process_id,
            timeout_s=FLAGS.barrier_timeout_h * 3600,
        )
    else:
        processes = sweep.Processes()
    command, env = _worker_command(spec), sweep.worker_env()

    def launch(job: dict) -> int:
        return subprocess.run([*command, f"--worker={json.dumps(job)}"], env=env).returncode

    def make_report(run_dirs: list[str], out: str) -> int:
        plots = [] if FLAGS.plots else ["--no-plots"]
        return report.main([*run_dirs, "--out", out, *plots])

    try:
        code = sweep.run(
            spec,
            processes,
            launch,
            make_report,
            dry_run=FLAGS.dry_run,
            time_calls=FLAGS.time_calls,
            command=sys.argv,
        )
    except sweep.USER_ERRORS as err:
        code = _fail(err, 2)
    except KeyboardInterrupt:
        code = _fail("interrupted; rerun the same command to resume", 130)
    sys.exit(code)


def _fail(err, code: int) -> int:
    print(f"error: {err}", file=sys.stderr)
    return code


def cli() -> None:
    """The `trqam-sweep` console script: the same as `python -m experiments.sweep`."""
    run_absl(main, __name__)


if __name__ == "__main__":
    cli()
