"""TRQAM: `--config=configs/trqam.py[:DOMAIN]` (see configs/domains.py for the domains)."""

from ml_collections import config_dict

from configs import domains
from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def defaults():
    """TRQAM's agent config before per-domain values."""
    agent = adjoint_matching_defaults("trqam")
    agent.kl_budget = 1.0  # epsilon, the path-KL budget (per-domain values in domains.py)
    # The budget of the online stage, set on every row when it starts; None: each row keeps its
    # offline budget (kl_budget, or its value of kl_budgets).
    agent.kl_budget_online = config_dict.placeholder(float)
    return agent


def get_config(domain=None):
    config = run_config(defaults(), domain)
    config.agent.update(domains.trqam_overrides(config.domain))
    return config
