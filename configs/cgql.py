"""CGQL: `--config=configs/cgql.py[:DOMAIN[:MODE]]`; MODE linex (CGQL-L, default), mse or simple.

Classifier-guidance Q-learning: a time-conditioned critic guides the BC flow's Euler sampler with
its action gradient. The variant is `agent.mode`; pass it after the domain
(`configs/cgql.py:scene-play:mse`) so that `inv_temp`, `guidance_coef` and `noisy_coef` take the
QAM paper's values of that variant for the domain (configs/domains.py). The rest is this protocol
(H, discount, rho, 10 critics, widths) with plain Adam as the authors' release.
"""

from configs import domains
from configs.agent_defaults import shared_defaults
from configs.run_defaults import run_config


def defaults():
    """CGQL's agent config before per-domain values (CGQL-L)."""
    agent = shared_defaults("cgql")
    agent.mode = "linex"  # "simple": critic at t = 1 only; "mse" / "linex": noisy-chunk critic
    agent.inv_temp = 10.0  # the guidance's inverse temperature (all domains in the QAM paper)
    agent.guidance_coef = 0.1  # scale of the guidance term of the sampler
    agent.noisy_coef = 0.001  # weight of the noisy-chunk critic loss (mse / linex)
    agent.linex_clip = 5.0  # LINEX: beyond this delta the loss is linear (the release's isd_clip)
    agent.grad_clip = 0.0  # the release trains with plain Adam
    return agent


def get_config(arg=None):
    domain, _, mode = (arg or "").partition(":")
    mode = mode or "linex"
    config = run_config(defaults(), domain or None)
    config.agent.update(domains.cgql_overrides(config.domain, mode))
    return config
