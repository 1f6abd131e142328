"""The stability experiment's settings: the two agents it compares and every number of a run."""

import dataclasses

AGENTS = ("qam", "trqam")
SWEPT = {"qam": "inv_temp", "trqam": "kl_budget"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the experiment needs (static; defaults are the committed run)."""

    betas: tuple[float, ...] = (1.0, 10.0, 100.0)
    budgets: tuple[float, ...] = (0.1, 0.3, 1.0)
    seeds: int = 3
    bc_steps: int = 2000
    steps: int = 2000
    eval_every: int = 100
    dataset_size: int = 4000
    batch_size: int = 64
    hidden: int = 64
    num_qs: int = 4
    flow_steps: int = 10
    lr: float = 1e-3
    eta_lambda: float = 0.01
    eval_contexts: int = 8
    eval_samples: int = 512
    critic_error: float = 0.2
    seed: int = 0


QUICK = dict(bc_steps=600, steps=600, eval_every=100, seeds=2, eval_samples=256)
