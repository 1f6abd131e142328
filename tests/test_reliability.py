"""A run directory is one experiment; divergence stops the run; data is never overwritten.

Each test is one row of docs/reliability.md.
"""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.runs import SHORT_EPISODE_STEPS, read_jsonl, tiny_run_config
from trqam_jax import checkpoint, experiment, loop, run_dir
from trqam_jax.data.errors import DataError


@pytest.fixture(scope="module")
def finished(tiny_dataset_dir, tmp_path_factory):
    """A finished tiny run with BC (10 steps) and offline (20 steps): (its config, its dir)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    config = tiny_run_config(tiny_dataset_dir, out, bc_steps=10)
    experiment.run(config)
    return config, out


def snapshot(out):
    """Every file of a run directory but its lock, as bytes."""
    files = {}
    for root, _, names in os.walk(out):
        for name in names:
            if name != run_dir.LOCK_FILE:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, out)] = f.read()
    return files


def test_a_changed_config_is_refused_before_any_work(finished):
    config, out = finished
    before = snapshot(out)
    changed = config.copy_and_resolve_references()
    changed.agent.kl_budget = 0.25
    changed.agent.lr = 1e-3
    with pytest.raises(experiment.ConfigError) as err:
        experiment.run(changed)
    message = str(err.value)
    assert "agent.kl_budget: 1.0 -> 0.25" in message and "agent.lr: 0.0003 -> 0.001" in message
    assert "--config.run_dir" in message and "--config.allow_config_change=True" in message
    assert snapshot(out) == before  # config.json included: nothing was written
    # More steps or other logging only extend the run: allowed.
    longer = config.copy_and_resolve_references()
    longer.offline_steps, longer.log_interval = 40, 20
    records = [experiment.config_record(c) for c in (config, longer)]
    assert experiment.validation.config_differences(*records) == {}


def test_rerunning_a_finished_run_returns_its_saved_summary(finished):
    config, out = finished
    before = snapshot(out)
    saved = json.loads((out / "summary.json").read_text())
    assert experiment.run(config.copy_and_resolve_references()) == saved
    fewer = config.copy_and_resolve_references()
    fewer.offline_steps = 10
    assert experiment.run(fewer) == saved
    assert snapshot(out) == before


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(tiny_dataset_dir, tmp_path):
    experiment.run(tiny_run_config(tiny_dataset_dir, tmp_path, offline_steps=10))
    # The same run continued with a huge learning rate (allowed, and recorded, on purpose).
    config = tiny_run_config(tiny_dataset_dir, tmp_path, offline_steps=200, save_interval=10)
    config.agent.lr, config.allow_config_change = 1e3, True
    with pytest.raises(loop.DivergenceError) as err:
        experiment.run(config)
    message = str(err.value)
    assert "diverged at step" in message and "row 0 (task 1, seed 0, kl_budget 1)" in message
    assert "non-finite" in message and "agent.lr" in message
    step = int(message.split("diverged at step ")[1].split(":")[0])
    mngr = ocp.CheckpointManager(os.path.abspath(tmp_path / "checkpoints" / "offline"))
    latest = mngr.latest_step()
    assert latest is not None and latest < step <= 200
    raw = mngr.restore(latest, args=ocp.args.StandardRestore())
    assert all(
        np.all(np.isfinite(x)) for x in jax.tree.leaves(raw) if np.issubdtype(x.dtype, float)
    )
    # summary.json is still the one of the finished 10-step run.
    assert json.loads((tmp_path / "summary.json").read_text())["steps"]["offline_steps"] == 10


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("offline_steps", -10, "offline_steps=-10: must be >= 0"),
        ("bc_steps", -10, "bc_steps=-10: must be >= 0"),
        ("kl_budgets", (0.0, 1.0), "kl_budgets=.*positive budgets"),
        ("kl_budgets", (-1.0,), "kl_budgets=.*positive budgets"),
        ("eval_episodes", -1, "eval_episodes=-1: must be >= 0"),
        ("agent.discount", 1.5, r"agent.discount=1.5: must be in \(0, 1\]"),
        ("agent.discount", 0.0, r"agent.discount=0.0: must be in \(0, 1\]"),
        ("agent.actor_hidden_dims", (16,) * 10, r"1 to 8 positive widths; e.g. '\(512"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(tiny_dataset_dir, tmp_path, field, value, match):
    config = tiny_run_config(tiny_dataset_dir, tmp_path / "run")
    *parents, name = field.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    node[name] = value
    with pytest.raises(experiment.ConfigError, match=match):
        experiment.run(config)
    assert not (tmp_path / "run").exists()


def test_generation_never_overwrites_existing_data(tiny_dataset_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset_dir, data)
    os.remove(data / "cube-double-play-v0-val.npz")
    config = tiny_run_config(str(data), tmp_path / "run", generate_if_missing=True)
    with pytest.raises(DataError, match="cube-double-play-v0-val.npz"):
        experiment.run(config)
    train_file = data / "cube-double-play-v0.npz"
    shutil.copy(os.path.join(tiny_dataset_dir, "cube-double-play-v0-val.npz"), data)
    train_file.write_bytes(train_file.read_bytes()[:1000])  # truncated
    broken = train_file.read_bytes()
    with pytest.raises(DataError, match="cube-double-play-v0.npz"):
        experiment.run(config)
    assert train_file.read_bytes() == broken


def test_a_second_launcher_on_one_directory_is_refused(tmp_path):
    holder = f"in use by pid {os.getpid()} on"
    with (
        run_dir.locked(str(tmp_path)),
        pytest.raises(run_dir.RunDirError, match=holder),
        run_dir.locked(str(tmp_path)),
    ):
        pass
    with run_dir.locked(str(tmp_path)):  # released when the holder ends
        pass


def test_resume_drops_a_partial_last_line_and_rows_logged_before_any_checkpoint(
    tiny_dataset_dir, tmp_path
):
    straight = tiny_run_config(tiny_dataset_dir, tmp_path / "straight", offline_steps=20)
    experiment.run(straight)
    expected = read_jsonl(tmp_path / "straight" / "train_metrics.jsonl")
    # A run killed before its first checkpoint, mid-way through writing a metrics line.
    out = tmp_path / "killed"
    config = tiny_run_config(tiny_dataset_dir, out, offline_steps=20)
    os.makedirs(out)
    (out / "config.json").write_text(json.dumps(experiment.config_record(config)))
    lines = [json.dumps(row, sort_keys=True) for row in expected[:2]]
    (out / "train_metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 10, "sta')
    experiment.run(config)
    rows = read_jsonl(out / "train_metrics.jsonl")
    assert [(r["step"], r["seed"]) for r in rows] == [(r["step"], r["seed"]) for r in expected]
    with open(out / "train_metrics.jsonl", "a") as f:
        f.write("not json\n{}\n")
    with pytest.raises(run_dir.RunDirError, match=r"train_metrics.jsonl:5: not valid JSON"):
        run_dir.truncate_jsonl(str(out / "train_metrics.jsonl"), lambda row: True)


def test_init_from_with_other_widths_names_both_shapes(finished, tmp_path):
    config, out = finished
    wider = tiny_run_config(config.dataset_dir, tmp_path / "wider", init_from=str(out))
    wider.agent.actor_hidden_dims = (32, 32)
    with pytest.raises(checkpoint.CheckpointError, match="other shapes") as err:
        experiment.run(wider)
    assert "16x16" in str(err.value) and "32x32" in str(err.value)
    assert not (tmp_path / "wider" / "config.json").exists()  # a corrected rerun is not refused


def test_ctrl_c_says_where_and_how_to_resume(tiny_dataset_dir, tmp_path, monkeypatch):
    config = tiny_run_config(tiny_dataset_dir, tmp_path, offline_steps=40)
    original = loop.OfflineStage.step

    def interrupt_at_30(self, states, step):
        if step == 30:
            raise KeyboardInterrupt
        return original(self, states, step)

    monkeypatch.setattr(loop.OfflineStage, "step", interrupt_at_30)
    with pytest.raises(
        loop.Interrupted, match="interrupted at step 30 of the offline stage.*checkpoint at step 30"
    ):
        experiment.run(config)


def test_the_evaluation_pool_is_bounded(tiny_dataset_dir, tmp_path, monkeypatch):
    made = []
    real = experiment.make_envs
    # Short episodes: the pool's size is the point, not 20 full-length episodes.
    short = lambda name, n: made.append(n) or real(name, n, max_episode_steps=SHORT_EPISODE_STEPS)
    monkeypatch.setattr(experiment, "make_envs", short)
    config = tiny_run_config(
        tiny_dataset_dir, tmp_path, seeds=2, eval_episodes=10, eval_envs=4, offline_steps=10
    )
    experiment.run(config)
    assert made == [4]  # 2 rows x 2 environments, not 2 x 10


def test_an_online_checkpoint_of_agent_states_only_is_refused_with_the_fix(tmp_path):
    """An online checkpoint written before the online stage could resume holds agent states only:
    resuming from it is refused, naming the directory to delete, and the files stay."""
    states = {"w": np.arange(3.0, dtype=np.float32)}
    old = checkpoint.manager(str(tmp_path / "online"))
    checkpoint.save(old, 5, states)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    current = checkpoint.manager(str(tmp_path / "online"), extras=True)
    with pytest.raises(checkpoint.CheckpointError, match=r"holds only agent states.*delete"):
        checkpoint.restore(current, 5, states, extras=True)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
