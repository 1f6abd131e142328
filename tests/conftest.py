"""Shared fixtures: tiny datasets generated once per test session with OGBench's oracles.

They are small on purpose (a few short episodes, seconds to make): enough to exercise loading,
relabelling, options, shards and every error path, not to train anything.
"""

import os
import tempfile

import pytest

# Tests run on the CPU unless told otherwise; MuJoCo needs no display for state-based tasks.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same tiny programs (in both test workers and in CLI subprocesses, which
# inherit these): JAX's persistent cache compiles each once. Set before jax is imported.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"trqam-jax-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# The test files that take longest, longest first. `--dist loadfile` hands whole files to the
# workers in collection order, so these start first and the short files fill in at the end
# (pytest-xdist's own order, by number of tests, left the few-but-long files for last).
LONGEST_FIRST = (
    "test_launcher.py",
    "test_agents.py",
    "test_new_baselines.py",
    "test_sweep.py",
    "test_online_resume.py",
    "test_tasks.py",
    "test_baselines.py",
    "test_stability.py",
    "test_reliability.py",
    "test_suite.py",
    "test_loggers.py",
    "test_benchmarks.py",
)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the collection order
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    last = len(LONGEST_FIRST)
    rank = lambda item: (
        LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else last
    )
    items.sort(key=rank)  # stable: the other files, and the tests within a file, keep their order


TINY = dict(name="cube-double-play-v0", episodes=2, val_episodes=1, max_episode_steps=150, seed=0)
TINY_SHARDS = dict(
    name="cube-double-play-v0", episodes=1, val_episodes=1, max_episode_steps=40, seed=1, shards=3
)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
    """Directory with cube-double-play-v0.npz / -val.npz / -provenance.json (generated)."""
    from trqam_jax.data.generate import generate_dataset

    out = str(tmp_path_factory.mktemp("ogbench_tiny"))
    generate_dataset(out_dir=out, workers=1, progress=False, **TINY)
    return out


@pytest.fixture(scope="session")
def tiny_shard_dir(tmp_path_factory):
    """Directory with three shards cube-double-play-v0-00{0,1,2}.npz (+ -val) (generated)."""
    from trqam_jax.data.generate import generate_dataset

    out = str(tmp_path_factory.mktemp("ogbench_shards"))
    generate_dataset(out_dir=out, workers=1, progress=False, **TINY_SHARDS)
    return out


@pytest.fixture
def short_episodes():
    """Within the test, the launcher's episodes end after 20 steps (`tests.runs.short_episodes`)."""
    from tests.runs import short_episodes

    with short_episodes():
        yield
