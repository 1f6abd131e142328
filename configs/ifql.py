"""IFQL: `--config=configs/ifql.py[:DOMAIN]`; the expectile is `agent.kappa`.

Implicit flow Q-learning: an expectile value, a TD critic bootstrapped from it, the BC flow as the
behaviour model and best-of-N action selection by the critic. `agent.kappa` takes the QAM paper's
value per domain (configs/domains.py); the rest is this protocol (H, discount, rho, 10 critics,
widths) with plain Adam as the authors' release.
"""

from configs import domains
from configs.agent_defaults import shared_defaults
from configs.run_defaults import run_config


def defaults():
    """IFQL's agent config before per-domain values."""
    agent = shared_defaults("ifql")
    agent.kappa = 0.9  # expectile of the value regression (the release's default)
    agent.num_samples = 32  # N of the best-of-N policy (the release's default)
    agent.grad_clip = 0.0  # the release trains with plain Adam
    return agent


def get_config(domain=None):
    config = run_config(defaults(), domain)
    config.agent.update(domains.ifql_overrides(config.domain))
    return config
