"""QAM-E: `--config=configs/qam_e.py[:DOMAIN]`; QAM plus a tanh-Gaussian edit policy.

`agent.inv_temp` and `agent.edit_scale` take the QAM paper's QAM-E values per domain
(configs/domains.py); the edit's entropy coefficient is tuned towards a target entropy of
-edit_target_entropy_multiplier * dim(A) with dim(A) = H * |a|.
"""

from configs import domains
from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def get_config(domain=None):
    agent = adjoint_matching_defaults("qam_e")
    agent.edit_scale = 0.1
    agent.edit_target_entropy_multiplier = 0.5
    config = run_config(agent, domain)
    config.agent.update(domains.qam_e_overrides(config.domain))
    return config
