"""Tiny launcher runs and the files they write, and CLIs run in a subprocess: shared by the tests
that train end to end."""

import contextlib
import json
import os
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from configs.trqam import get_config
from trqam_jax import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_run_config(data_dir, run_dir, get=get_config, **overrides):
    """`get("cube-double-play")` (a configs/<agent>.py) shrunk to 2x16 networks and 20 steps."""
    config = get("cube-double-play")
    config.agent.update(
        actor_hidden_dims=(16, 16), critic_hidden_dims=(16, 16), num_qs=2, batch_size=8
    )
    config.update(
        dataset_dir=data_dir,
        run_dir=str(run_dir),
        seeds=2,
        bc_steps=0,
        offline_steps=20,
        steps_per_call=10,
        log_interval=10,
        eval_interval=20,
        save_interval=10,
        eval_episodes=0,
    )
    config.update(overrides)
    return config


# Episode length of the launcher's environments in tests of its plumbing (OGBench's are 500+).
SHORT_EPISODE_STEPS = 20


@contextlib.contextmanager
def short_episodes(steps=SHORT_EPISODE_STEPS):
    """The launcher's environments (evaluation and online) end their episodes after `steps`
    steps: evaluations then cost a few policy calls, not the hundreds of a full episode."""
    real = experiment.make_envs
    short = lambda names, n: real(names, n, max_episode_steps=steps)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment, "make_envs", short)
        yield


def final_params(run_dir, stage="offline"):
    """(step, params) of the latest checkpoint of a run's `stage` ("offline" or "online")."""
    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints", stage)))
    raw = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
    return mngr.latest_step(), raw["params"]


def read_jsonl(path):
    """The records of a jsonl file, read independently of the library's reader."""
    with open(path) as f:
        return [json.loads(line) for line in f]


def run_module(module, *args, env=None, timeout=900):
    """`python -m module *args` from the repository root -> the finished process (text output).

    Args:
      env: the subprocess's environment; None inherits this one (tests/conftest.py's settings).
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
