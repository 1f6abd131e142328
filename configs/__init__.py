"""ml_collections presets (agent defaults, per-domain settings, quickstart)."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def resolve_path(spec: str) -> str:
    """A `--config` value with its file found from any directory.

    `configs/trqam.py:cube-double-play` names a file relative to the working directory, which
    exists in a checkout. Elsewhere (an installed package run from another directory) the same
    file of this package is meant, so the path is rewritten to it; the `:ARG` part is kept.

    Args:
      spec: str, `PATH[:ARG]` as ml_collections' config flags take it.
    Returns:
      str: `spec` unchanged when PATH exists, is absolute, does not start with `configs/` or
      names no file of this package (ml_collections then reports the path the user gave);
      otherwise the absolute path of the packaged file, followed by `:ARG` if given.
    """
    path, colon, arg = spec.partition(":")
    parts = os.path.normpath(path).split(os.sep)
    if os.path.exists(path) or os.path.isabs(path) or len(parts) < 2 or parts[0] != "configs":
        return spec
    packaged = os.path.join(_HERE, *parts[1:])
    return packaged + colon + arg if os.path.isfile(packaged) else spec
