"""Resuming the online stage: a stage interrupted mid-episode, mid-chunk and mid-window (after
its updates began), or a run's online stage extended to more steps, ends exactly as an
uninterrupted one; and the budget TRQAM's dual uses online (`agent.kl_budget_online`)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.trqam import get_config
from tests.runs import ROOT, tiny_run_config
from tests.test_online import HORIZON, ROWS, SEED, UTD, setup  # noqa: F401
from tests.tiny import tiny_config
from trqam_jax import checkpoint, loop, online, train
from trqam_jax import experiment as launcher
from trqam_jax.agents import common, trqam

TOTAL, START, SAVE, LOG = 16, 8, 5, 4
# Killed at env step 14: the checkpoint of step 10 is the latest, step 12's metrics are logged
# (and must be dropped), the rows are 10 steps into their first episode (MAX_STEPS = 12), one
# action into a chunk (H = 3), with 2 of the window's 4 update steps summed.
KILL_AT = 14


class Killable(loop.OnlineStage):
    """The online stage, Ctrl-C'd at env step `kill_at` (None: never)."""

    kill_at = None

    def step(self, states, step):
        if step + 1 == self.kill_at:
            raise KeyboardInterrupt
        return super().step(states, step)


def _run(setup, out, total=TOTAL, kill_at=None, kl_budget_online=None, budgets=(), hparams=None):  # noqa: F811
    """(final states, stage) of the online stage through `loop.run_stage`, into `out`;
    `hparams`: the traced values to train with instead of those the stage sets."""
    offline, envs, init_states = setup
    config = get_config("cube-double-play")
    config.agent = tiny_config("trqam", horizon=HORIZON, batch_size=8, discount=0.99)
    config.agent.kl_budget_online = kl_budget_online
    config.update(
        seed=SEED, start_training=START, utd=UTD, offline_steps=0, online_steps=total,
        log_interval=LOG, eval_interval=total, save_interval=SAVE,
    )  # fmt: skip
    rows = train.make_rows(ROWS, {"kl_budget": budgets} if budgets else {})
    stage = Killable(trqam, config, offline, envs, jax.random.PRNGKey(1), rows)
    stage.kill_at = kill_at
    states = init_states()
    if hparams is not None:
        stage.hparams, states = {}, common.set_hparams(states, hparams)
    states, _ = loop.run_stage(stage, states, total, config, str(out), rows)
    return states, stage


def _records(out):
    """train_metrics.jsonl's lines without the wall-clock rate."""
    with open(out / "train_metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k != "online/steps_per_s"} for r in lines]


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("straight")
    return (*_run(setup, out), out)


def _assert_same_stage(a, b):
    """Equal agent states, replay buffers and finished episodes, bit for bit."""
    (states_a, stage_a), (states_b, stage_b) = a, b
    jax.tree.map(np.testing.assert_array_equal, states_a, states_b)
    jax.tree.map(np.testing.assert_array_equal, stage_a.replays, stage_b.replays)
    episodes_a, episodes_b = (s.interaction.episode_arrays() for s in (stage_a, stage_b))
    jax.tree.map(np.testing.assert_array_equal, episodes_a, episodes_b)
    assert len(episodes_a["row"]) == ROWS  # each row's first episode ended after the resume


def test_interrupted_online_stage_resumes_to_the_uninterrupted_result(setup, straight, tmp_path):  # noqa: F811
    *uninterrupted, straight_out = straight
    with pytest.raises(loop.Interrupted, match="resume from its checkpoint at step 10"):
        _run(setup, tmp_path, kill_at=KILL_AT)
    assert [r["step"] for r in _records(tmp_path)][-ROWS:] == [12] * ROWS  # logged, not saved
    # The checkpoint holds the buffers' filled part only: 10 online steps per row.
    mngr = checkpoint.manager(tmp_path / "checkpoints" / "online", extras=True)
    _, arrays, host = checkpoint.restore(mngr, 10, uninterrupted[0], extras=True)
    assert arrays["replay"]["actions"].shape[:2] == (ROWS, 10)
    assert host["interaction"]["ep_length"] == [10] * ROWS and host["updates"] == 2 * UTD

    resumed = _run(setup, tmp_path)
    _assert_same_stage(uninterrupted, resumed)
    # Step 12's lines were dropped and logged again, with the same window means.
    assert _records(tmp_path) == _records(straight_out)


def test_kl_budget_online_is_the_budget_of_the_online_dual(setup, straight, tmp_path):  # noqa: F811
    """Rows of budget 1 with kl_budget_online 0.25 update online exactly as rows given budget
    0.25 by hand; their lines keep kl_budget 1 as the row's identity."""
    states, stage = _run(setup, tmp_path / "a", kl_budget_online=0.25, budgets=(1.0,))
    np.testing.assert_array_equal(stage.hparams["kl_budget"], [0.25] * ROWS)
    by_hand = _run(setup, tmp_path / "b", hparams={"kl_budget": 0.25})[0]
    jax.tree.map(np.testing.assert_array_equal, states, by_hand)
    # The budget-1 rows of the straight run move their dual otherwise.
    assert not np.array_equal(states.lam, straight[0].lam)
    lines = _records(tmp_path / "a")
    assert {(r["kl_budget"], r["kl_budget_online"]) for r in lines} == {(1.0, 0.25)}
    assert "critic_loss" in lines[-1]  # a window with updates: their kl_budget metric dropped


def test_a_resumed_interaction_continues_its_episodes_exactly(setup):  # noqa: F811
    """Saved 10 steps into the rows' first episodes and resumed on reset environments, the
    interaction steps on as the original (through an episode end); a stored episode that its
    environment does not reproduce is refused, naming the row."""
    envs = setup[1]
    action_dim = envs[0].action_space.shape[0]
    # A deterministic policy of the observation, so both interactions plan alike.
    plan = lambda obs: np.repeat(np.tanh(obs[:, None, :action_dim]), HORIZON, axis=1)
    stack = lambda steps: {k: np.stack([t[k] for t in steps], axis=1) for k in steps[0]}

    original = online.Interaction(envs, SEED, np.arange(ROWS), sparse=False)
    steps = [original.step(plan, t) for t in range(1, 11)]
    saved, stored = json.loads(json.dumps(original.state())), stack(steps)
    later = stack([original.step(plan, t) for t in range(11, 17)])

    resumed = online.Interaction(envs, SEED, np.arange(ROWS), sparse=False)
    resumed.resume(saved, stored)
    jax.tree.map(
        np.testing.assert_array_equal, stack([resumed.step(plan, t) for t in range(11, 17)]), later
    )
    jax.tree.map(np.testing.assert_array_equal, resumed.episode_arrays(), original.episode_arrays())
    assert len(original.episode_arrays()["row"]) == ROWS  # both rows' episodes ended at 12

    stored["next_observations"][1, -1, 0] += 1.0
    with pytest.raises(checkpoint.CheckpointError, match="row 1's environment does not repro"):
        online.Interaction(envs, SEED, np.arange(ROWS), sparse=False).resume(saved, stored)


def _online_params(run_dir):
    """(step, params) of a run's latest online checkpoint."""
    mngr = checkpoint.manager(run_dir / "checkpoints" / "online", extras=True)
    step = mngr.latest_step()
    raw = mngr.restore(step, args=ocp.args.Composite(default=ocp.args.StandardRestore()))
    return step, raw["default"]["params"]


def test_launcher_resumes_the_online_stage_and_records_its_budget(tiny_dataset_dir, tmp_path):
    """Offline, then online to 6 steps (buffers of 6), rerun to 12: the parameters of one run
    to 12; the online budget is in provenance.json, summary.json and the online lines."""
    online = dict(online_steps=12, start_training=3, kl_budgets=(1.0, 2.0), seeds=1)

    def config(out, **overrides):
        run = tiny_run_config(tiny_dataset_dir, tmp_path / out, **dict(online, **overrides))
        run.agent.kl_budget_online = 0.5
        return run

    launcher.run(config("once"))
    launcher.run(config("twice", online_steps=6))
    summary = launcher.run(config("twice"))
    step, params = _online_params(tmp_path / "twice")
    assert step == _online_params(tmp_path / "once")[0] == 20 + 12
    jax.tree.map(np.testing.assert_array_equal, params, _online_params(tmp_path / "once")[1])

    assert summary["kl_budgets"] == [1.0, 2.0] and summary["kl_budgets_online"] == [0.5, 0.5]
    provenance = json.loads((tmp_path / "twice" / "provenance.json").read_text())
    assert provenance["rows"]["kl_budget_online"] == [0.5, 0.5]
    lines = [r for r in _records(tmp_path / "twice") if r["stage"] == "online"]
    assert [(r["kl_budget"], r["kl_budget_online"]) for r in lines[-2:]] == [(1.0, 0.5), (2.0, 0.5)]
    # The printed table shows it beside the offline budget (here with made-up final results).
    evaluated = dict(summary, final_success=[0.25, 0.75], final_return=[-3.0, -1.0])
    table = launcher.summary_lines(config("twice"), evaluated)
    assert table[1].split()[:4] == ["seed", "kl_budget", "eps", "online"]
    assert table[2].split()[:3] == ["0", "1", "0.5"] and table[3].split()[:3] == ["0", "2", "0.5"]


def test_a_bad_kl_budget_online_is_refused_on_the_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "experiments.run", "--config=configs/trqam.py:cube-double-play",
            "--config.agent.kl_budget_online=-1", f"--config.run_dir={tmp_path / 'run'}",
        ],
        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: config.agent.kl_budget_online=-1.0: must be > 0 (or None: the offline budget)"
    )
    assert not (tmp_path / "run").exists()
