"""FQL, original preset: `--config=configs/fql.py[:DOMAIN]` (the chunked one: fql_chunked.py).

The FQL paper's setting (Park, Li, Levine 2025): single-step actions (H = 1), 2 critics with target
aggregation `q_agg` (min on antmaze, else mean), its discounts, 4x512 networks, plain Adam, the
environments' default rewards, and alpha per domain (see configs/domains.py for every source).
"""

from configs import domains
from configs.agent_defaults import shared_defaults
from configs.run_defaults import run_config


def fql_defaults(preset: str):
    """Agent defaults of an FQL preset ("original" or "chunked") before per-domain values."""
    config = shared_defaults("fql")
    config.preset = preset
    config.alpha = 10.0  # distillation coefficient (FQL's default; tuned per domain)
    config.q_agg = "mean"  # "mean": target mean - rho * std over the ensemble; "min": minimum
    config.normalize_q_loss = False  # divide the actor's Q term by stop_grad(mean |Q|)
    config.grad_clip = 0.0  # both FQL references train with plain Adam
    return config


def fql_run_config(preset: str, domain):
    """The run config of an FQL preset on `domain` (None: the quickstart's domain)."""
    config = run_config(fql_defaults(preset), domain)
    config.agent.update(domains.fql_overrides(config.domain, preset))
    if preset == "original":
        config.sparse = False  # the FQL paper used OGBench's default rewards everywhere
    return config


def get_config(domain=None):
    return fql_run_config("original", domain)
