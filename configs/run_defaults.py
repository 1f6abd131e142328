"""The launcher's run settings around an agent config (ALGORITHM.md §12 protocol)."""

import ml_collections

from configs import domains


def run_config(agent: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """A full run config: `agent` plus data, stages, seeds, logging and checkpoint settings.

    Args:
      agent: the agent's defaults (e.g. configs/agent_defaults.py).
      arg: the text after ':' in `--config=configs/trqam.py:DOMAIN`; None keeps the agent's
        defaults and the quickstart's domain.
    """
    domain = arg or "cube-single-play"
    agent.update(domains.agent_overrides(domain))
    config = ml_collections.ConfigDict()
    config.agent = agent
    config.domain = domain
    config.task = 1  # env id: {domain}-singletask-task{task}-v0
    # Several tasks of the domain in one program, e.g. (1, 2, 3, 4, 5): the rows are tasks x
    # kl_budgets x seeds, sharing one copy of the data (only rewards and masks differ by task).
    # Empty = the single `task`.
    config.tasks = ()
    # Data: official OGBench files, or generated with experiments.make_dataset (labelled so).
    config.dataset_dir = ""  # "" = $OGBENCH_DATA_DIR, else ~/.ogbench/data
    config.generate_if_missing = False  # generate a small labelled dataset when files are absent
    config.generate_episodes = 100
    config.sparse = domains.data_overrides(domain)["sparse"]
    config.dataset_proportion = 1.0
    config.shard_interval = 1_000  # steps between shard rotations (10M / 100M releases)
    # Seeds and the optional kl_budget sweep share one vmapped axis (budgets x seeds).
    config.seed = 0
    config.seeds = 8
    config.kl_budgets = ()  # e.g. (0.5, 1.0, 2.0); empty = agent.kl_budget only
    # Split the rows over several launchers (e.g. one per host): this one runs equal block
    # `rows_part` of `rows_parts` and writes to <run_dir>/part<rows_part>; together the parts
    # equal the sweep run in one piece.
    config.rows_part = 0
    config.rows_parts = 1
    # Stages (gradient steps); BC pretraining can be skipped by loading `init_from`.
    config.bc_steps = 300_000
    config.offline_steps = 1_000_000
    config.online_steps = 0  # 500_000 for offline-to-online
    config.start_training = 5_000  # online env steps before the first online update
    config.utd = 1  # updates per online env step
    # A BC checkpoint: the run directory of an earlier run, or the authors' params_<step>.pkl
    # (or its directory; docs/reference_checkpoints.md).
    config.init_from = ""
    config.steps_per_call = 1_000  # updates per compiled call (lax.scan)
    config.log_interval = 5_000
    config.eval_interval = 50_000
    config.eval_episodes = 50  # per row; 0 disables evaluation
    # Evaluation environments kept for the whole run (about 160 MB each); at least one per row.
    config.eval_envs = 16
    config.save_interval = 100_000
    # Mirror the JSONL metrics and evaluations to "tensorboard", "wandb" or both
    # ("tensorboard,wandb"); "" = the run directory only (docs/logging.md).
    config.log_to = ""
    config.run_dir = ""  # "" = runs/{agent}-{domain}-task{task}
    # A run directory resumes only the config that made it; True resumes one whose
    # result-determining fields differ (the differences are recorded in config_changes.jsonl).
    config.allow_config_change = False
    # Printed under the summary: what this config's results should look like and what to run
    # next (the quickstart's measured numbers); "" prints nothing.
    config.expect = ""
    return config
