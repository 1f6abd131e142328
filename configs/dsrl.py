"""DSRL: `--config=configs/dsrl.py[:DOMAIN]`; the latent noise scale is `agent.noise_scale`.

Diffusion steering: a tanh-Gaussian latent policy with a tuned entropy temperature picks the flow
policy's initial noise (times `noise_scale`), scored by a latent critic distilled from the action
critic; the flow keeps training by BC and is steered through its EMA. `agent.noise_scale` takes
the QAM paper's value per domain (configs/domains.py); the rest is this protocol (H, discount,
rho, 10 critics, widths) with plain Adam as the authors' release.
"""

from configs import domains
from configs.agent_defaults import shared_defaults
from configs.run_defaults import run_config


def defaults():
    """DSRL's agent config before per-domain values."""
    agent = shared_defaults("dsrl")
    agent.noise_scale = 1.0  # the latent policy's noise is noise_scale * tanh(...)
    agent.target_entropy_multiplier = 0.5  # target entropy -0.5 * d, d = H * |a|
    agent.grad_clip = 0.0  # the release trains with plain Adam
    return agent


def get_config(domain=None):
    config = run_config(defaults(), domain)
    config.agent.update(domains.dsrl_overrides(config.domain))
    return config
