"""What the sweep tests share: a tiny cube-single-play sweep (its overrides and CLI flags) and
the sweep CLI run in a subprocess."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The quickstart's domain: its 200-step episodes and one-cube scene make evaluation and
# environment creation the cheapest of the manipulation domains.
DOMAIN = "cube-single-play"
TINY_DATA = dict(name=f"{DOMAIN}-v0", episodes=2, val_episodes=1, max_episode_steps=100, seed=0)
# Tiny networks and a few steps: every program compiles in seconds and trains in one call.
TINY = (
    "agent.actor_hidden_dims=(16,16)",
    "agent.critic_hidden_dims=(16,16)",
    "agent.num_qs=2",
    "agent.batch_size=8",
    "bc_steps=10",
    "offline_steps=10",
    "steps_per_call=10",
    "log_interval=10",
    "eval_interval=10",
    "save_interval=10",
    "eval_episodes=1",
)


def tiny_flags(data_dir, root, agents="trqam,qam", tasks="1", seeds=2, kl_budgets="", sets=()):
    """The sweep CLI's flags for a reduced sweep on `data_dir`."""
    overrides = (*TINY, f"dataset_dir={data_dir}", *sets)
    return [
        f"--agents={agents}",
        f"--domains={DOMAIN}",
        f"--tasks={tasks}",
        f"--seeds={seeds}",
        f"--kl_budgets={kl_budgets}",
        f"--root={root}",
        "--noplots",
        *(f"--set={o}" for o in overrides),
    ]


def cli_env():
    # XLA's optimisation passes dominate these tiny programs' compile time (by about 3x on a
    # CPU); every run of a test compiles the same way, so the runs still agree with each other.
    # The sweep keeps its own compile cache under its root (the tests count its hits), not the
    # test session's shared one (tests/conftest.py).
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def run_cli(flags, timeout=900, code=0):
    """The sweep CLI's output (stdout + stderr) after it exited with `code`."""
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *flags],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == code, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def start(flags):
    """The sweep CLI as a running process (its output piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *flags],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
