"""Agents: each module exposes pure `init`, `update` and `act` functions (README: contract).

`bc` is the pretraining stage every fine-tuning agent starts from (`with_pretrained_base`).
"""

import importlib

AGENTS = ("trqam", "qam", "qam_e", "fql", "ifql", "dsrl", "cgql")


def get_agent(name: str):
    """The agent module `trqam_jax.agents.<name>`, with a clear error for unknown names."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; expected one of {', '.join(AGENTS)}")
    try:
        return importlib.import_module(f"trqam_jax.agents.{name}")
    except ModuleNotFoundError as err:
        raise ValueError(f"agent {name!r} is not implemented in this version") from err
