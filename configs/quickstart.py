"""The embedded default: TRQAM on cube-single-play, small networks, 2 seeds, minutes on a CPU.

    python -m experiments.run          # same as --config=configs/quickstart.py

Generates a small cube-single-play dataset with OGBench's scripted oracles if none is present
(labelled GENERATED everywhere it is reported), pretrains the flow by BC, fine-tunes with TRQAM,
evaluates and prints a summary table. Measured on an idle 2-core CPU on 2026-12-01: 13.2 minutes
wall in all (data generation included), 4.5 GB peak memory, and evaluation success per seed (20
episodes each) of 0.05 / 0.05 for the BC policy at the start of fine-tuning, 0.00 / 0.00 at 5K
fine-tuning steps, 0.05 / 0.15 at 10K and 0.10 / 0.10 at 15K. This demonstrates the pipeline on a
30-episode generated dataset; it is not a benchmark result.
"""

import os

from configs import trqam
from trqam_jax.data.datasets import DATA_DIR_ENV_VAR


def get_config(arg=None):
    config = trqam.get_config("cube-single-play")
    config.agent.actor_hidden_dims = (128, 128)
    config.agent.critic_hidden_dims = (128, 128)
    config.agent.num_qs = 4
    config.agent.batch_size = 128
    # $OGBENCH_DATA_DIR when set (like every run), else a directory of the checkout, so that the
    # generated data never lands among official files in ~/.ogbench/data.
    config.dataset_dir = "" if os.environ.get(DATA_DIR_ENV_VAR) else "data/generated"
    config.generate_if_missing = True
    config.generate_episodes = 30
    config.seeds = 2
    config.bc_steps = 30_000
    config.offline_steps = 15_000
    config.steps_per_call = 500
    config.log_interval = 500
    config.eval_interval = 5_000
    config.eval_episodes = 20
    config.save_interval = 5_000
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
