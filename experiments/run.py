"""Seed sweeps compiled end to end: `python -m experiments.run --config=configs/trqam.py:DOMAIN`.

    python -m experiments.run                     # the quickstart (configs/quickstart.py)
    python -m experiments.run --config=configs/trqam.py:cube-double-play --config.seeds=8
    python -m experiments.run --config=configs/qam.py:scene-play --config.agent.inv_temp=3
    python -m experiments.run --config=configs/trqam.py:cube-triple-play \\
        --config.kl_budgets='(0.25,0.5,1.0)' --config.init_from=runs/bc-cube-triple
    python -m experiments.run --config=configs/fql.py:scene-play --print_config  # every field

Stages: BC pretraining of the flow (`bc_steps`, skipped with `init_from`), then offline
fine-tuning (`offline_steps`), then optional online fine-tuning (`online_steps`). All rows
(kl_budgets x seeds) are one vmapped program, sharded over the local devices; rerunning the same
command resumes from the latest checkpoint. See docs/run_directory.md for what a run writes and
trqam_jax/experiment.py for the stage plan.
"""

import difflib
import glob
import importlib.util
import os
import re
import sys

from absl import flags, logging
from ml_collections import config_flags

import configs
import experiments
from configs.run_defaults import field_meanings
from experiments import fail, run_absl
from trqam_jax import compile_cache, experiment, loop
from trqam_jax.data.datasets import resolve_data_dir
from trqam_jax.data.errors import DataError

DEFAULT_CONFIG = "configs/quickstart.py"
# ml_collections reads the names of the --config.X overrides from this list when it parses
# --config (not from sys.argv): `parse_flags` fills it with the command line it checked.
_COMMAND_LINE: list[str] = []

config_flags.DEFINE_config_file(
    "config",
    None,  # `check_command_line` passes the default explicitly, so nothing loads at import
    "Run config: configs/<agent>.py:<domain> (agents: trqam, qam, qam_e, fql, fql_chunked, "
    "ifql, dsrl, cgql; domains in configs/domains.py), then --config.<field>=value overrides, e.g. "
    "--config.seeds=8, --config.agent.kl_budget=0.5, --config.kl_budgets='(0.5,1.0)'; an "
    "override given twice takes its last value. --print_config lists every field and its meaning.",
    sys_argv=_COMMAND_LINE,
)
flags.FLAGS["config"].default_as_str = repr(DEFAULT_CONFIG)
flags.DEFINE_bool(
    "print_config",
    False,
    "Print every field of the resolved config with its meaning, the resolved dataset_dir and "
    "run_dir, then check the config (exit 2 when it cannot run) and exit.",
)
flags.DEFINE_string(
    "compile_cache",
    "",
    "Persistent compilation cache directory: '' = $JAX_COMPILATION_CACHE_DIR, else "
    "compile_cache/ next to the run directory (runs/compile_cache); none = off.",
)
FLAGS = flags.FLAGS

_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)(=.*)?$")
_CONFIG = re.compile(r"^--?config(=.*)?$")


class UsageError(ValueError):
    """A command line that cannot run; the message (one line) names the problem and the fix."""


def available_configs() -> list[str]:
    """The config files of this package, as `--config` takes them (configs/<name>.py)."""
    here = os.path.dirname(configs.resolve_path(DEFAULT_CONFIG))
    files = sorted(glob.glob(os.path.join(here, "*.py")))
    return [f"configs/{os.path.basename(f)}" for f in files if "def get_config" in _read(f)]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def load_config(spec: str):
    """The config `--config=PATH[:ARG]` names (`get_config(ARG)` of PATH); UsageError if not."""
    path, colon, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise UsageError(
            f"--config={spec}: no config file {path}; available: {', '.join(available_configs())}"
        )
    module_spec = importlib.util.spec_from_file_location("run_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UsageError(f"--config={spec}: {path} defines no get_config(); pass a config file")
    try:
        return module.get_config(*([arg] if colon else []))
    except ValueError as err:  # e.g. an unknown domain, with the known ones
        raise UsageError(f"--config={spec}: {err}") from None


def field_of(config, path: str):
    """The value of the dotted field `path` of `config`; UsageError naming the closest field."""
    node, done = config, []
    for name in path.split("."):
        fields = list(node.keys()) if hasattr(node, "keys") else []
        if name not in fields:
            where = f"config.{'.'.join(done)}" if done else "the config"
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean --config.{'.'.join([*done, close[0]])}? " if close else ""
            raise UsageError(
                f"--config.{path}: {where} has no field {name!r}; {hint}"
                "(--print_config lists every field)"
            )
        node, done = node[name], [*done, name]
    return node


def check_command_line(argv: list[str]) -> tuple[list[str], list[str]]:
    """The command line absl should parse, and the notes to print, or UsageError (one line).

    Refuses `--config` given twice, a config file that does not exist (listing the available
    ones), a `get_config` error (e.g. an unknown domain, listing the known ones) and an override
    of a field the config lacks (naming the closest). An override given more than once keeps its
    last value (ml_collections would concatenate tuples), with a note saying so.

    Args:
      argv: list[str], the command line (program name first).
    Returns:
      (argv, notes): argv with `--config=<file found from any directory>` (the default when
      absent) right after the program name and every override once; notes: list[str].
    """
    end = argv.index("--") if "--" in argv else len(argv)
    rest, specs, overrides = [], [], {}  # overrides: field -> [its tokens], the last given
    i = 1
    while i < end:
        arg, value = argv[i], None
        if _CONFIG.match(arg):
            if "=" in arg:
                specs.append(arg.split("=", 1)[1])
            else:
                specs.append(argv[i + 1] if i + 1 < end else "")
                i += 1
        elif match := _OVERRIDE.match(arg):
            field = match.group(2)
            takes_value = not match.group(1) and not match.group(3)
            following = argv[i + 1] if i + 1 < end else "-"
            if takes_value and (not following.startswith("-") or following[1:2].isdigit()):
                value, i = argv[i + 1], i + 1  # `--config.X VALUE`, unless X is a bool (below)
            overrides.setdefault(field, []).append((arg, value))
        else:
            rest.append(arg)
        i += 1
    if len(specs) > 1:
        raise UsageError(
            f"--config given {len(specs)} times ({', '.join(specs)}); pass one config file and "
            "change its fields with --config.<field>=value"
        )
    spec = configs.resolve_path(specs[0] if specs else DEFAULT_CONFIG)
    config = load_config(spec)
    tokens, notes = [], []
    for field, given in overrides.items():
        is_bool = isinstance(field_of(config, field), bool)
        # A bool override takes no value: the token after it is a positional (refused later).
        rest += [value for _, value in given if value is not None and is_bool]
        arg, value = given[-1]
        tokens += [arg] if value is None or is_bool else [arg, value]
        if len(given) > 1:
            typed = [a if v is None or is_bool else f"{a} {v}" for a, v in given]
            notes.append(experiments.last_one_wins(f"--config.{field}", typed))
    return [argv[0], f"--config={spec}", *tokens, *rest, *argv[end:]], notes


def check_overrides(config, fields) -> None:
    """UsageError when the overridden `fields` of `config` contradict each other: a `task` that
    the `tasks` given with it lack would be silently ignored."""
    tasks = tuple(config.tasks)
    if {"task", "tasks"} <= set(fields) and tasks and config.task not in tasks:
        raise UsageError(
            f"--config.task={config.task} is not among --config.tasks={tasks}: with tasks the run "
            f"trains on those only; drop --config.task or add {config.task} to tasks"
        )


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing of the command line `check_command_line` returns (errors: one line)."""
    try:
        argv, notes = check_command_line(argv)
    except UsageError as err:
        sys.exit(fail(err, 2))
    for note in notes:
        print(note, file=sys.stderr)
    _COMMAND_LINE[:] = argv
    rest = experiments.parse_flags(argv)
    fields = [match.group(2) for arg in argv if (match := _OVERRIDE.match(arg))]
    try:
        check_overrides(FLAGS.config, fields)
    except UsageError as err:
        sys.exit(fail(err, 2))
    return rest


def describe(config) -> list[str]:
    """`config`'s fields, one line each: `name = value  # meaning` (`field_meanings`)."""
    meanings = field_meanings()
    flat = {}

    def walk(prefix, node):
        for name, value in node.items():
            if hasattr(value, "keys"):
                walk(f"{prefix}{name}.", value)
            else:
                flat[f"{prefix}{name}"] = value

    walk("", config)
    cells = {name: f"{name} = {value!r}" for name, value in flat.items()}
    width = max(len(cell) for cell in cells.values() if len(cell) <= 60)  # a long text goes over
    return [f"{cell:<{width}}  # {meanings.get(name, '')}" for name, cell in cells.items()]


def print_config(config) -> int:
    """Print `describe(config)`, the resolved data and run directories and whether it can run."""
    print("\n".join(describe(config)))
    data_dir = os.path.abspath(resolve_data_dir(config.dataset_dir or None))
    print(f"resolved: dataset_dir {data_dir}, run_dir {experiment.run_directory(config)}")
    try:
        rows = experiment.check_config(config)
    except (experiment.ConfigError, DataError) as err:
        return fail(f"invalid config: {err}", 2)
    print(f"valid: {len(rows)} rows (tasks x kl_budgets x seeds)")
    return 0


def main(argv):
    experiments.refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines off the console
    if FLAGS.print_config:
        sys.exit(print_config(FLAGS.config))
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        # Under jax.distributed orbax saves from process 0 only, so the other processes' rows
        # would lose their checkpoints; the sweep gives every process a launcher of its own.
        message = (
            "JAX_COORDINATOR_ADDRESS is set, but experiments.run is one process: run several "
            "hosts with python -m experiments.sweep (docs/cluster.md), or split the rows with "
            "--config.rows_part / --config.rows_parts, one launcher each"
        )
        sys.exit(fail(message, 2))
    cache = compile_cache.cache_dir(FLAGS.compile_cache, _runs_root(FLAGS.config))
    if cache:
        compile_cache.enable(cache)  # programs of the same shapes compile once, across runs
    try:
        with compile_cache.CompileTimer() as compiled:
            summary = experiment.run(FLAGS.config)
    except experiment.USER_ERRORS as err:
        sys.exit(fail(err, 2))
    except loop.DivergenceError as err:
        sys.exit(fail(err, 3))
    except KeyboardInterrupt as err:
        sys.exit(fail(str(err) or "interrupted; rerun the same command to resume", 130))
    print("\n".join(experiment.summary_lines(FLAGS.config, summary)))
    where = f"the compilation cache {cache}" if cache else "no cache (off)"
    print(f"Compiling took {compiled.seconds:.1f} s ({compiled.cache_hits} programs from {where}).")


def _runs_root(config) -> str:
    """The directory holding the run directory (runs/ by default), where the cache goes."""
    out = os.path.abspath(experiment.run_directory(config))
    return os.path.dirname(os.path.dirname(out) if config.rows_parts > 1 else out)


def cli() -> None:
    """The `trqam-run` console script: the same as `python -m experiments.run`."""
    run_absl(main, __name__, flags_parser=parse_flags)


if __name__ == "__main__":
    cli()
