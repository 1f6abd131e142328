"""The embedded default: TRQAM on cube-single-play, small networks, 2 seeds, minutes on a CPU.

    python -m experiments.run          # same as --config=configs/quickstart.py

Generates a small cube-single-play dataset with OGBench's scripted oracles if none is present
(labelled GENERATED everywhere it is reported), pretrains the flow by BC, fine-tunes with TRQAM,
evaluates and prints a summary table.
"""

from configs.agent_defaults import adjoint_matching_defaults
from configs.run_defaults import run_config


def get_config(arg=None):
    config = run_config(adjoint_matching_defaults("trqam"), "cube-single-play")
    config.agent.actor_hidden_dims = (128, 128)
    config.agent.critic_hidden_dims = (128, 128)
    config.agent.num_qs = 4
    config.agent.batch_size = 128
    config.dataset_dir = "data/generated"
    config.generate_if_missing = True
    config.generate_episodes = 30
    config.seeds = 2
    config.bc_steps = 2_000
    config.offline_steps = 3_000
    config.steps_per_call = 500
    config.log_interval = 500
    config.eval_interval = 1_500
    config.eval_episodes = 10
    config.save_interval = 1_500
    config.run_dir = "runs/quickstart"
    if arg == "ci":  # the shortened version .ci/run executes
        config.generate_episodes = 4
        config.bc_steps = config.offline_steps = 200
        config.steps_per_call = config.log_interval = 100
        config.eval_interval = config.save_interval = 200
        config.eval_episodes = 2
        config.run_dir = "runs/quickstart-ci"
        config.dataset_dir = "data/generated-ci"
    return config
