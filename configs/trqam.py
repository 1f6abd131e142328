"""TRQAM: `--config=configs/trqam.py[:DOMAIN]` (see configs/domains.py for the domains)."""

from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def get_config(domain=None):
    return run_config(adjoint_matching_defaults("trqam"), domain)
