"""The embedded default: TRQAM on cube-single-play, small networks, 2 seeds, minutes on a CPU.

    python -m experiments.run          # same as --config=configs/quickstart.py

Generates a 100-episode cube-single-play dataset with OGBench's scripted oracles if none is
present (labelled GENERATED everywhere it is reported), pretrains the flow by BC, fine-tunes with
TRQAM, evaluates and prints a summary table that ends with `EXPECT`: what the run measured here.
It shows the method learning a real task at CPU scale; it is not a benchmark result (the
reduced-scale table of every agent is docs/reduced_scale.md).
"""

import os

from configs import trqam
from trqam_jax.data.datasets import DATA_DIR_ENV_VAR

EXPECT = (
    "Expected (measured on 2 + 4 seeds, README and docs/reduced_scale.md): mean success about "
    "0.0 for the BC policy at the start of fine-tuning and about 0.20 after {steps} TRQAM "
    "steps, seeds ranging 0.10-0.40, on GENERATED data (not the official release). Next: more "
    "seeds (--config.seeds=8), other tasks (--config.tasks='(1,2,3,4,5)'), every agent side by "
    "side (docs/reduced_scale.md), the paper's scale (README)."
)


def get_config(arg=None):
    config = trqam.get_config("cube-single-play")
    config.agent.actor_hidden_dims = (128, 128)
    config.agent.critic_hidden_dims = (128, 128)
    config.agent.num_qs = 2
    config.agent.batch_size = 128
    # $OGBENCH_DATA_DIR when set (like every run), else a directory of the checkout, so that the
    # generated data never lands among official files in ~/.ogbench/data.
    config.dataset_dir = "" if os.environ.get(DATA_DIR_ENV_VAR) else "data/quickstart"
    config.generate_if_missing = True
    config.generate_episodes = 100
    config.seeds = 2
    config.bc_steps = 20_000
    config.offline_steps = 20_000
    config.steps_per_call = 1_000
    config.log_interval = 1_000
    config.eval_interval = 10_000
    config.eval_episodes = 20
    config.save_interval = 10_000
    config.run_dir = "runs/quickstart"
    config.expect = EXPECT.format(steps=f"{config.offline_steps:,}")
    if arg == "ci":  # the shortened version .ci/run executes
        config.generate_episodes = 4
        config.bc_steps = config.offline_steps = 200
        config.steps_per_call = config.log_interval = 100
        config.eval_interval = config.save_interval = 200
        config.eval_episodes = 2
        config.run_dir = "runs/quickstart-ci"
        config.dataset_dir = "data/generated-ci"
        config.expect = (
            "Expected: success 0.00 at the start and the end; 200 steps only show that every "
            "stage runs (the full quickstart: python -m experiments.run)."
        )
    return config
