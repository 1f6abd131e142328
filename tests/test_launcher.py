"""The launcher end to end on a tiny generated dataset: resume, sharding, sweeps, bad input."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from experiments import report
from tests.runs import ROOT, final_params, read_jsonl, tiny_run_config
from trqam_jax import checkpoint, memory, validation
from trqam_jax import experiment as launcher


def test_interrupted_and_resumed_run_equals_straight_run(tiny_dataset_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    launcher.run(tiny_run_config(tiny_dataset_dir, straight, offline_steps=40))
    launcher.run(tiny_run_config(tiny_dataset_dir, resumed, offline_steps=20))
    # As if the first run had logged step 30 and died before its next checkpoint.
    metrics_path = resumed / "train_metrics.jsonl"
    lost = dict(read_jsonl(metrics_path)[-1], step=30)
    with open(metrics_path, "a") as f:
        f.write(json.dumps(lost) + "\n")
    launcher.run(tiny_run_config(tiny_dataset_dir, resumed, offline_steps=40))

    step_a, params_a = final_params(straight)
    step_b, params_b = final_params(resumed)
    assert step_a == step_b == 40
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params_a, params_b
    )
    rows_a, rows_b = read_jsonl(straight / "train_metrics.jsonl"), read_jsonl(metrics_path)
    assert [(r["step"], r["seed"]) for r in rows_b] == [(r["step"], r["seed"]) for r in rows_a]
    assert [(r["step"], r["seed"]) for r in rows_a] == [
        (s, i) for s in (10, 20, 30, 40) for i in (0, 1)
    ]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        np.testing.assert_allclose(ra["critic_loss"], rb["critic_loss"], rtol=1e-4)


def test_prepared_states_and_stage_are_the_launchers(tiny_dataset_dir, tmp_path):
    """`prepare` writes nothing; its initial states and offline stage make the run's first call."""
    run = tmp_path / "run"
    config = tiny_run_config(tiny_dataset_dir, run, offline_steps=10, kl_budgets=(1.0, 4.0))
    prepared = launcher.prepare(config)
    assert not os.path.exists(prepared.out) and len(prepared.rows) == 4
    states, _, _ = launcher.offline_stage(prepared).step(launcher.initial_states(prepared), 0)
    launcher.run(config)
    step, params = final_params(prepared.out)
    assert step == 10
    for saved, ours in zip(jax.tree.leaves(params), jax.tree.leaves(states.params), strict=True):
        np.testing.assert_array_equal(saved, ours)


def test_resumed_run_trains_on_the_same_shards(tiny_shard_dir, tmp_path):
    """With three shards rotated every 10 steps, a run resumed at step 20 continues on shard 2."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    shard_config = dict(shard_interval=10, save_interval=20)
    launcher.run(tiny_run_config(tiny_shard_dir, straight, offline_steps=40, **shard_config))
    launcher.run(tiny_run_config(tiny_shard_dir, resumed, offline_steps=20, **shard_config))
    launcher.run(tiny_run_config(tiny_shard_dir, resumed, offline_steps=40, **shard_config))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        final_params(straight)[1],
        final_params(resumed)[1],
    )


def test_budget_sweep_rides_the_seed_axis_and_evaluates(tiny_dataset_dir, tmp_path, short_episodes):
    config = tiny_run_config(
        tiny_dataset_dir, tmp_path, kl_budgets=(0.5, 4.0), eval_episodes=1, offline_steps=20
    )
    summary = launcher.run(config)
    assert summary["rows"] == 4 and summary["kl_budgets"] == [0.5, 0.5, 4.0, 4.0]
    rows = [r for r in read_jsonl(tmp_path / "train_metrics.jsonl") if r["step"] == 20]
    assert [(r["seed"], r["kl_budget"]) for r in rows] == [(0, 0.5), (1, 0.5), (0, 4.0), (1, 4.0)]
    # Same seed, same data and keys: the rows differ only through the budget of the dual.
    assert rows[0]["lambda"] != rows[2]["lambda"]
    evals = read_jsonl(tmp_path / "eval.jsonl")
    assert [r["step"] for r in evals] == [0] * 4 + [20] * 4  # the start of fine-tuning, the end
    evals = evals[4:]
    assert len(evals) == 4 and all(0.0 <= r["success"] <= 1.0 for r in evals)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["data_source"] == "generated"
    # The summary's means are the rows' own, and a config's expectation is its last line.
    lines = launcher.summary_lines(config, summary)
    start = np.mean([r["success"] for r in read_jsonl(tmp_path / "eval.jsonl")[:4]])
    end = np.mean([r["success"] for r in evals])
    assert f"mean success {start:.3f} at the start of fine-tuning, {end:.3f} at the end" in (
        "\n".join(lines)
    )
    assert "[GENERATED data]" in lines[0] and not lines[-1].startswith("Expected")
    # The run's peak memory: the host's always, the devices' where the backend counts it.
    peak = summary["peak_memory"]
    assert peak["host_peak_rss_bytes"] > 0 and memory.describe(peak) in lines
    cpu = jax.devices()[0].platform == "cpu"
    assert (peak["device_peak_bytes"] is None) == cpu and (cpu or peak["device_peak_bytes"] > 0)
    expecting = config.copy_and_resolve_references()
    expecting.expect = "Expected: success 0.00 at the start and the end."
    assert launcher.summary_lines(expecting, summary)[-1] == expecting.expect
    # The expectation only annotates the summary: a run with another one resumes.
    records = [launcher.config_record(c) for c in (config, expecting)]
    assert validation.config_differences(*records) == {}


def test_a_sweep_split_into_parts_equals_the_sweep_in_one_piece(
    tiny_dataset_dir, tmp_path, short_episodes
):
    """Two launchers running rows_part 0 and 1 of 2 together reproduce the whole sweep."""
    common = dict(kl_budgets=(0.5, 4.0), bc_steps=10, offline_steps=10, eval_episodes=1)
    whole = launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path / "whole", **common))
    split = dict(common, rows_parts=2)
    parts = [
        launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path / "split", rows_part=p, **split))
        for p in (0, 1)
    ]
    assert [row for part in parts for row in part["kl_budgets"]] == whole["kl_budgets"]
    assert [row for part in parts for row in part["seeds"]] == whole["seeds"]
    assert [s for part in parts for s in part["final_return"]] == whole["final_return"]
    whole_params = final_params(tmp_path / "whole")[1]
    for p in (0, 1):
        part_params = final_params(tmp_path / "split" / f"part{p}")[1]
        jax.tree.map(
            lambda a, b, p=p: np.testing.assert_allclose(
                a[2 * p : 2 * p + 2], b, rtol=1e-5, atol=1e-6
            ),
            whole_params,
            part_params,
        )
    # The report reads the launcher's part directories together: both budgets, all seeds.
    report_dir = tmp_path / "report"
    part_dirs = [str(tmp_path / "split" / f"part{p}") for p in (0, 1)]
    assert report.main([*part_dirs, "--out", str(report_dir), "--reps", "10", "--no-plots"]) == 0
    table = (report_dir / "report.md").read_text()
    assert "trqam[eps=0.5]" in table and "trqam[eps=4.0]" in table, table
    missing = table.split("## Missing")[1]  # tasks 2-5 of the domain were not run
    assert "task" in missing and "seed" not in missing, missing
    with pytest.raises(ValueError, match="do not split into 3 equal parts"):
        launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path / "bad", rows_parts=3))


_SHARDED_RUN = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    sys.path.insert(0, sys.argv[4])
    from tests.runs import tiny_run_config
    from trqam_jax import experiment as launcher
    import jax
    assert len(jax.devices()) == int(sys.argv[1])
    launcher.run(tiny_run_config(sys.argv[2], sys.argv[3], seeds=4, offline_steps=10))
    """
)


def test_four_simulated_devices_give_the_same_results_as_one(tiny_dataset_dir, tmp_path):
    # One device: this process (its 4-row program is test_prepared_states_...'s, compiled once).
    assert len(jax.devices()) == 1
    one = tiny_run_config(tiny_dataset_dir, tmp_path / "devices1", seeds=4, offline_steps=10)
    launcher.run(one)
    out = tmp_path / "devices4"
    done = subprocess.run(
        [sys.executable, "-c", _SHARDED_RUN, "4", tiny_dataset_dir, str(out), ROOT],
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        final_params(one.run_dir)[1],
        final_params(out)[1],
    )


@pytest.mark.parametrize(
    "module,metric",
    [
        ("qam", "am_loss"),
        ("qam_e", "edit_alpha"),
        ("fql", "distill_loss"),
        ("fql_chunked", "alpha"),
    ],
)
def test_every_agent_runs_bc_then_fine_tuning_and_evaluates(
    tiny_dataset_dir, tmp_path, short_episodes, module, metric
):
    """Each agent's config runs the shared BC stage, its own fine-tuning and evaluation."""
    get = importlib.import_module(f"configs.{module}").get_config
    config = tiny_run_config(
        tiny_dataset_dir, tmp_path, get, bc_steps=10, offline_steps=10, eval_episodes=1
    )
    summary = launcher.run(config)
    assert summary["rows"] == 2 and all(0.0 <= s <= 1.0 for s in summary["final_success"])
    rows = read_jsonl(tmp_path / "train_metrics.jsonl")
    assert [(r["stage"], r["step"]) for r in rows] == [("bc", 10)] * 2 + [("offline", 10)] * 2
    assert all(np.isfinite(r[metric]) for r in rows[2:])
    assert [r["step"] for r in read_jsonl(tmp_path / "eval.jsonl")] == [0, 0, 10, 10]


def test_bad_input_fails_before_any_work(tiny_dataset_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown agent 'sac'"):
        bad = tiny_run_config(tiny_dataset_dir, tmp_path / "a")
        bad.agent.agent_name = "sac"
        launcher.run(bad)
    with pytest.raises(launcher.ConfigError, match="init_from"):
        launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path / "b", init_from="/nonexistent"))
    with pytest.raises(launcher.ConfigError, match="multiple of config.steps_per_call"):
        launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path / "c", offline_steps=15))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_checkpoint_of_other_shapes_is_refused(tiny_dataset_dir, tmp_path):
    launcher.run(tiny_run_config(tiny_dataset_dir, tmp_path, offline_steps=10))
    wider = tiny_run_config(tiny_dataset_dir, tmp_path, offline_steps=20)
    wider.agent.actor_hidden_dims = (32, 32)
    # Refused as another experiment first (tests/test_reliability.py); when allowed anyway, the
    # checkpoint of other shapes is still refused.
    wider.allow_config_change = True
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        launcher.run(wider)


def test_command_line_exits_non_zero_with_the_fix(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "--config=configs/trqam.py:cube-double-play",
            f"--config.dataset_dir={tmp_path}",
            f"--config.run_dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "make_dataset" in result.stderr
