"""QAM: `--config=configs/qam.py[:DOMAIN]`; the inverse temperature is `agent.inv_temp`."""

from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def get_config(domain=None):
    return run_config(adjoint_matching_defaults("qam"), domain)
