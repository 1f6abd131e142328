"""Seed sweeps compiled end to end: `python -m experiments.run --config=configs/trqam.py:DOMAIN`.

    python -m experiments.run                     # the quickstart (configs/quickstart.py)
    python -m experiments.run --config=configs/trqam.py:cube-double-play --config.seeds=8
    python -m experiments.run --config=configs/qam.py:scene-play --config.agent.inv_temp=3
    python -m experiments.run --config=configs/trqam.py:cube-triple-play \\
        --config.kl_budgets='(0.25,0.5,1.0)' --config.init_from=runs/bc-cube-triple

Stages: BC pretraining of the flow (`bc_steps`, skipped with `init_from`), then offline
fine-tuning (`offline_steps`), then optional online fine-tuning (`online_steps`). All rows
(kl_budgets x seeds) are one vmapped program, sharded over the local devices; rerunning the same
command resumes from the latest checkpoint. See docs/run_directory.md for what a run writes and
trqam_jax/experiment.py for the stage plan.
"""

import os
import sys

from trqam_jax.envs import headless_mujoco

headless_mujoco()  # state-based tasks need no rendering; set before MuJoCo is first imported

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import configs  # noqa: E402
from experiments import run_absl  # noqa: E402
from trqam_jax import compile_cache, experiment, loop  # noqa: E402

config_flags.DEFINE_config_file(
    "config",
    # Outside a checkout (the installed trqam-run) the packaged file; configs/quickstart.py in one.
    configs.resolve_path("configs/quickstart.py"),
    "Run config: configs/<agent>.py:<domain> (agents: trqam, qam, qam_e, fql, fql_chunked, "
    "ifql, dsrl, cgql; domains in configs/domains.py), then --config.<field>=value overrides, e.g. "
    "--config.seeds=8, --config.agent.kl_budget=0.5, --config.kl_budgets='(0.5,1.0)'.",
)
flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.")
flags.DEFINE_string(
    "compile_cache",
    "",
    "Persistent compilation cache directory: '' = $JAX_COMPILATION_CACHE_DIR, else "
    "compile_cache/ next to the run directory (runs/compile_cache); none = off.",
)
FLAGS = flags.FLAGS


def repeated_overrides(argv) -> list[str]:
    """`--config.X` flags given more than once (ml_collections concatenates repeated tuples)."""
    seen = [arg.split("=")[0] for arg in argv if arg.startswith("--config.")]
    return sorted({name for name in seen if seen.count(name) > 1})


def resolve_config_args(argv: list[str]) -> list[str]:
    """`argv` with the value of `--config` passed through `configs.resolve_path`.

    Args:
      argv: list[str], the command line (program name first).
    Returns:
      list[str]: a copy in which `--config=PATH[:ARG]` (or `--config PATH[:ARG]`) names a file
      that exists from the working directory, when the package has it.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        name, equals, value = arg.partition("=")
        if name not in ("--config", "-config"):
            continue
        if equals:
            out[i] = f"{name}={configs.resolve_path(value)}"
        elif i + 1 < len(out):
            out[i + 1] = configs.resolve_path(out[i + 1])
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (with its usage on errors) after `resolve_config_args`."""
    return app.parse_flags_with_usage(resolve_config_args(argv))


def main(_):
    logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines off the console
    repeated = repeated_overrides(sys.argv)
    if repeated:
        message = f"{', '.join(repeated)} given more than once; pass each override once"
        sys.exit(_fail(message, 2))
    if FLAGS.print_config:
        print(FLAGS.config)
        return
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        # Under jax.distributed orbax saves from process 0 only, so the other processes' rows
        # would lose their checkpoints; the sweep gives every process a launcher of its own.
        message = (
            "JAX_COORDINATOR_ADDRESS is set, but experiments.run is one process: run several "
            "hosts with python -m experiments.sweep (docs/cluster.md), or split the rows with "
            "--config.rows_part / --config.rows_parts, one launcher each"
        )
        sys.exit(_fail(message, 2))
    cache = compile_cache.cache_dir(FLAGS.compile_cache, _runs_root(FLAGS.config))
    if cache:
        compile_cache.enable(cache)  # programs of the same shapes compile once, across runs
    try:
        with compile_cache.CompileTimer() as compiled:
            summary = experiment.run(FLAGS.config)
    except experiment.USER_ERRORS as err:
        sys.exit(_fail(err, 2))
    except loop.DivergenceError as err:
        sys.exit(_fail(err, 3))
    except KeyboardInterrupt as err:
        sys.exit(_fail(str(err) or "interrupted; rerun the same command to resume", 130))
    print("\n".join(experiment.summary_lines(FLAGS.config, summary)))
    where = f"the compilation cache {cache}" if cache else "no cache (off)"
    print(f"Compiling took {compiled.seconds:.1f} s ({compiled.cache_hits} programs from {where}).")


def _runs_root(config) -> str:
    """The directory holding the run directory (runs/ by default), where the cache goes."""
    out = os.path.abspath(experiment.run_directory(config))
    return os.path.dirname(os.path.dirname(out) if config.rows_parts > 1 else out)


def _fail(err, code: int) -> int:
    print(f"error: {err}", file=sys.stderr)
    return code


def cli() -> None:
    """The `trqam-run` console script: the same as `python -m experiments.run`."""
    run_absl(main, __name__, flags_parser=parse_flags)


if __name__ == "__main__":
    cli()
