"""Thin CLIs: each parses flags and calls the library (`python -m experiments.<name>`, or the
console scripts of pyproject.toml).

Importing this package (which every CLI does first) selects MuJoCo's no-GL mode and silences
gymnasium's warning about OGBench's float64 space bounds: neither has anything to fix.
"""

import signal
import sys

from absl import app, flags

from trqam_jax.envs import headless_mujoco, ignore_box_precision_warnings

headless_mujoco()  # before MuJoCo is first imported: state-based tasks need no rendering
ignore_box_precision_warnings()

# absl's help flags (they print the help and exit 1; asking for help is not a failure).
HELP_FLAGS = frozenset(
    f"{dash}{name}" for dash in ("-", "--") for name in ("help", "helpshort", "helpfull", "?")
) | {"-h"}


def fail(err, code: int) -> int:
    """Print `error: <err>` (one line) on stderr; returns `code` for `sys.exit`."""
    print(f"error: {err}", file=sys.stderr)
    return code


def refuse_arguments(argv: list[str]) -> None:
    """Exit 2 with one line if `argv` (absl's leftover, program name first) has positionals."""
    if len(argv) > 1:
        sys.exit(fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value", 2))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a bad flag exits 2 with one line instead of absl's usage text."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        first = str(err).strip().splitlines()[0]
        sys.exit(fail(f"{first} (--helpfull lists every flag)", 2))


def last_one_wins(flag: str, given: list[str]) -> str:
    """The note for `flag` given more than once (`given`: each occurrence as typed): the launcher's
    `--config.X` and the sweep's `--set KEY` follow this one rule, said in this one line."""
    return f"note: {flag} given {len(given)} times; the last one wins: {given[-1]}"


def numbers(kind):
    """An argparse type: comma-separated `kind` values -> tuple, e.g. "0.1,0.3" -> (0.1, 0.3)."""
    return lambda text: tuple(kind(v) for v in text.split(",") if v)


def add_helpfull(parser) -> None:
    """Let an argparse CLI take `--helpfull` as the absl ones do (the same as --help)."""
    parser.add_argument("--helpfull", action="help", help="the same as --help")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's stop) takes Ctrl-C's path: stop, say resume


def run_absl(main, module: str, **kwargs) -> None:
    """`absl.app.run(main, **kwargs)`, with `module`'s flags listed by `--help` under any launcher.

    absl's `--help` lists the flags of the main module, which it names by `sys.argv[0]`. Under
    `python -m` that is the CLI module itself; under a console script it is the generated
    wrapper, which defines no flags, so the CLI module's flags are declared key flags of it.
    Flag errors print one line and exit 2 (`parse_flags`, unless `flags_parser` is given); the
    help flags exit 0; SIGTERM raises KeyboardInterrupt, as Ctrl-C does.

    Args:
      main: callable taking the remaining argv, as for `absl.app.run`.
      module: str, the `__name__` of the module that defines the flags.
      **kwargs: passed to `absl.app.run` (e.g. `flags_parser`).
    """
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    signal.signal(signal.SIGTERM, _interrupt)
    kwargs.setdefault("flags_parser", parse_flags)
    try:
        app.run(main, **kwargs)
    except SystemExit as stop:
        if stop.code == 1 and HELP_FLAGS & set(sys.argv[1:]):
            raise SystemExit(0) from None
        raise
