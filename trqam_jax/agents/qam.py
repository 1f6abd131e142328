"""QAM: adjoint matching towards pi_base * exp(beta Q) with a fixed inverse temperature beta."""

from trqam_jax.agents import adjoint_matching
from trqam_jax.agents.adjoint_matching import act, update, with_pretrained_base

__all__ = ["init", "update", "act", "with_pretrained_base"]
# The traced hparam whose values a sweep's rows take (experiment.swept_values).
SWEPT = adjoint_matching.SWEPT["qam"]


def init(key, config, example_obs, example_actions):
    """Fresh QAM state; `config` from configs/qam.py, obs (D,), actions (H, A)."""
    return adjoint_matching.init(key, config, example_obs, example_actions, kind="qam")
