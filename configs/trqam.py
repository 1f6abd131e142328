"""TRQAM agent defaults: `--config=configs/trqam.py`."""

from configs.agent_defaults import adjoint_matching_defaults


def get_config():
    return adjoint_matching_defaults("trqam")
