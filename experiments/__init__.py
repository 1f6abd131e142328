"""Thin CLIs: each parses flags and calls the library (`python -m experiments.<name>`, or the
console scripts of pyproject.toml)."""

import sys

from absl import app, flags


def run_absl(main, module: str, **kwargs) -> None:
    """`absl.app.run(main, **kwargs)`, with `module`'s flags listed by `--help` under any launcher.

    absl's `--help` lists the flags of the main module, which it names by `sys.argv[0]`. Under
    `python -m` that is the CLI module itself; under a console script it is the generated
    wrapper, which defines no flags, so the CLI module's flags are declared key flags of it.

    Args:
      main: callable taking the remaining argv, as for `absl.app.run`.
      module: str, the `__name__` of the module that defines the flags.
      **kwargs: passed to `absl.app.run` (e.g. `flags_parser`).
    """
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, **kwargs)
