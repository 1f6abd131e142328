"""QAM agent defaults: `--config=configs/qam.py` (inverse temperature `inv_temp`)."""

from configs.agent_defaults import adjoint_matching_defaults


def get_config():
    return adjoint_matching_defaults("qam")
