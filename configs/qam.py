"""QAM: `--config=configs/qam.py[:DOMAIN]`; the inverse temperature is `agent.inv_temp`."""

from configs import domains
from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def defaults(agent_name: str = "qam"):
    """QAM's agent defaults (QAM-E builds on them)."""
    agent = adjoint_matching_defaults(agent_name)
    agent.inv_temp = 1.0  # beta: the fine field targets pi_base * exp(beta Q)
    return agent


def get_config(domain=None):
    config = run_config(defaults(), domain)
    config.agent.update(domains.qam_overrides(config.domain))
    return config
