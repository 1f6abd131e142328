"""QAM-E: `--config=configs/qam_e.py[:DOMAIN]`; QAM plus a tanh-Gaussian edit policy.

`agent.inv_temp` and `agent.edit_scale` take the QAM paper's QAM-E values per domain
(configs/domains.py); the edit's entropy coefficient is tuned towards a target entropy of
-edit_target_entropy_multiplier * dim(A) with dim(A) = H * |a|.
"""

from configs import domains, qam
from configs.run_defaults import run_config


def defaults():
    """QAM-E's agent config before per-domain values: QAM's plus the edit policy's."""
    agent = qam.defaults("qam_e")
    agent.edit_scale = 0.1
    agent.edit_target_entropy_multiplier = 0.5
    return agent


def get_config(domain=None):
    config = run_config(defaults(), domain)
    config.agent.update(domains.qam_e_overrides(config.domain))
    return config
