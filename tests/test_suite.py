"""The benchmark suite: its grid and budget logic, its arithmetic, the wheel list, and --quick."""

import argparse
import json
import os
import zipfile

import pytest

from benchmarks import device_wheels, suite, suite_launcher, suite_update
from benchmarks.budget import Budget
from tests.runs import run_module


def fake_options(**overrides):
    opts = dict(
        size="tiny", seeds="1,4", max_seeds=64, dtypes="float32,bfloat16", steps_per_call=2, calls=1
    )
    opts.update(overrides)
    return argparse.Namespace(**opts)


def fake_measure(out_of_memory_from: dict):
    """An `update_speed.measure` stand-in: rows without any compiling, OOM from a given S."""

    def measure(size, num_seeds, steps, calls, dtype, loop_share=True):
        assert not loop_share  # the suite never runs the loop (and its checkpoint) per point
        if num_seeds >= out_of_memory_from.get(dtype, float("inf")):
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        rate = 1e3 * steps  # 1 ms per call
        return {
            "size": size,
            "seeds": num_seeds,
            "compute_dtype": dtype,
            "gflop_per_update": 1.0,
            "compile_s": 0.0,
            "ms_per_call": 1.0,
            "ms_per_update": 1.0 / steps,
            "updates_per_s_per_seed": rate,
            "updates_per_s_aggregate": rate * num_seeds,
            "achieved_gflops": rate * num_seeds,
        }

    return measure


def test_grid_doubles_past_the_listed_sizes_up_to_the_cap():
    grid = suite_update.grid_points([1, 8, 32, 64, 128], 1024)
    assert grid == [1, 8, 32, 64, 128, 256, 512, 1024]
    assert suite_update.grid_points([8, 1], 10) == [1, 8]


def test_point_estimate_scales_only_the_timed_calls():
    last = {"point_s": 10.0, "ms_per_call": 1000.0, "seeds": 8}
    # 2 s of calls (a warm-up and one timed) of the 10 s double with S; the rest stays.
    assert suite_update.point_estimate(last, 16, calls=1) == pytest.approx(12.0)
    assert suite_update.point_estimate(last, 4, calls=1) == pytest.approx(10.0)
    assert suite_update.point_estimate(None, 4, calls=1) == 0.0


def test_out_of_memory_stops_one_dtype_and_is_recorded(monkeypatch):
    monkeypatch.setattr(suite_update.update_speed, "measure", fake_measure({"float32": 16}))
    part = suite_update.update_part(Budget(1e6), fake_options())
    measured = {(r["compute_dtype"], r["seeds"]) for r in part["rows"]}
    assert measured == {("float32", s) for s in (1, 4, 8)} | {
        ("bfloat16", s) for s in (1, 4, 8, 16, 32, 64)
    }
    (error,) = part["errors"]
    assert (error["seeds"], error["compute_dtype"], error["out_of_memory"]) == (16, "float32", True)
    assert part["largest_seeds"] == {
        "float32": {"seeds": 8, "limited_by": "out of memory"},
        "bfloat16": {"seeds": 64, "limited_by": "grid"},
    }


def test_a_spent_budget_skips_points_with_the_reason(monkeypatch):
    monkeypatch.setattr(suite_update.update_speed, "measure", fake_measure({}))
    part = suite_update.update_part(Budget(0.0), fake_options(max_seeds=16))
    assert part["rows"] == []
    # Every listed S is tried (and skipped) per dtype; the doubling stops at its first skip.
    skipped = [(s["seeds"], s["compute_dtype"]) for s in part["skipped"]]
    assert skipped == [(s, d) for s in (1, 4, 8) for d in ("float32", "bfloat16")]
    assert all(s["reason"].startswith("budget: 0 s left of 0 s") for s in part["skipped"])
    assert part["largest_seeds"]["float32"] == {"seeds": None, "limited_by": "budget"}


def test_stage_report_splits_compiled_and_outside_time():
    timings = {"stage_s": 20.0, "first_call_s": 5.0, "checkpoint_s": 1.0, "call_s": 3.0}
    report = suite_launcher.stage_report(timings, steps=1000, spc=250, rows=4)
    # 4 calls: the first (compiled) one, then 3 of 3 s each; 15 s after the first call, of which
    # 1 s is the checkpoint save, 9 s compiled calls and 5 s the rest.
    assert report["calls"] == 4 and report["compiled_s"] == 9.0
    assert report["outside_compiled_s"] == 5.0
    assert report["outside_compiled_share"] == pytest.approx(5 / 14, abs=1e-4)
    assert report["s_per_row_step"] == pytest.approx(15 / (750 * 4))


def test_paper_projection_is_rows_times_steps():
    stages = {"bc": {"s_per_row_step": 1e-4}, "offline": {"s_per_row_step": 1e-3}}
    projection = suite_launcher.paper_projection(stages)
    rows = 10 * 5 * 8 * 7
    assert projection["rows"] == rows
    assert projection["hours"] == pytest.approx(rows * (3e5 * 1e-4 + 1e6 * 1e-3) / 3600, abs=0.1)
    shared = (rows / 7 * 3e5 * 1e-4 + rows * 1e6 * 1e-3) / 3600
    assert projection["hours_bc_shared_across_methods"] == pytest.approx(shared, abs=0.1)


def test_launcher_steps_fit_the_budget_and_follow_the_device_speed():
    opts = argparse.Namespace(
        launcher_rows=64, launcher_steps_per_call=250, launcher_offline_steps=0, launcher_bc_steps=0
    )

    def plan(ms_per_update):
        rows = {"rows": [{"compute_dtype": "float32", "seeds": 64, "ms_per_update": ms_per_update,
                          "compile_s": 10.0}]}  # fmt: skip
        return suite_launcher.plan_launcher_steps(Budget(140.0), opts, rows)

    fast, slow = plan(5.0), plan(40.0)
    for bc_steps, offline_steps, _ in (fast, slow):
        assert bc_steps % 250 == 0 and offline_steps % 250 == 0 and bc_steps >= 500
    assert fast[1] == 5000 and slow[1] < fast[1]
    assert suite_launcher.plan_launcher_steps(Budget(140.0), opts, None)[:2] == (1000, 2000)


def test_wheel_list_pins_what_the_device_lacks():
    names = {line.split("==")[0] for line in device_wheels.requirements()}
    assert {"ml-collections", "ogbench", "mujoco", "gymnasium", "dm-control"} <= names


def test_wheel_list_refuses_unpinned_lines(tmp_path):
    path = tmp_path / "wheels.txt"
    path.write_text("# comment\nogbench==1.2.2\nmujoco\n")
    with pytest.raises(ValueError, match="'mujoco' is not NAME==VERSION"):
        device_wheels.requirements(str(path))


def test_slim_wheel_drops_folders_and_their_record_rows(tmp_path):
    path = str(tmp_path / "pkg-1.0-py3-none-any.whl")
    files = {
        "pkg/__init__.py": b"x = 1\n",
        "pkg/big/asset.bin": b"\0" * 1000,
        "pkg/big/more/asset.bin": b"\1" * 10,
    }
    record = "".join(f"{name},sha256=abc,{len(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("pkg-1.0.dist-info/RECORD", record + "pkg-1.0.dist-info/RECORD,,\n")
    device_wheels.slim_wheel(path, ("pkg/big/",))
    with zipfile.ZipFile(path) as wheel:
        assert sorted(wheel.namelist()) == ["pkg-1.0.dist-info/RECORD", "pkg/__init__.py"]
        assert wheel.read("pkg/__init__.py") == files["pkg/__init__.py"]
        rows = wheel.read("pkg-1.0.dist-info/RECORD").decode().splitlines()
    assert [row.split(",")[0] for row in rows] == ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]


def test_quick_suite_writes_every_part(tmp_path):
    """`python -m benchmarks.suite --quick` as the CLI runs it, trimmed to one point per part."""
    budgets = [f"--budget_{part}=900" for part in suite.PARTS]  # a loaded machine skips nothing
    flags = ["--quick", f"--out_dir={tmp_path}", "--dtypes=float32", "--max_seeds=1"]
    flags += ["--eval_workers=0", *budgets]
    env = dict(os.environ, JAX_PLATFORMS="cpu", MUJOCO_GL="disable")
    done = run_module("benchmarks.suite", *flags, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(tmp_path / "suite_quick_cpu.json") as f:
        record = json.load(f)
    parts = record["parts"]
    assert list(parts) == list(suite.PARTS)
    assert all(part["status"] == "ok" for part in parts.values()), parts
    assert record["versions"]["jax"] and record["device"]["platform"] == "cpu"
    assert record["command"].startswith("python -m benchmarks.suite --quick")

    (row,) = parts["update"]["rows"]
    assert row["seeds"] == 1 and row["gflop_per_update"] > 0 and row["compile_s"] > 0
    assert row["ms_per_update"] == pytest.approx(row["ms_per_call"] / row["steps_per_call"], 1e-2)
    # Both are rounded: GFLOP per update to 1e-3, the achieved rate to 1e-2.
    tolerance = 5e-4 * row["updates_per_s_aggregate"] + 5e-3
    achieved = row["gflop_per_update"] * row["updates_per_s_aggregate"]
    assert abs(row["achieved_gflops"] - achieved) <= tolerance

    baseline = parts["baseline"]["row"]
    assert baseline["steps"] == 4 and baseline["finite"]
    assert baseline["ms_per_update"] == pytest.approx(1e3 / baseline["updates_per_s"], rel=1e-2)
    (ratio,) = parts["baseline"]["ratio_vs_baseline"]
    expected = row["updates_per_s_aggregate"] / baseline["updates_per_s"]
    assert ratio["ratio_vs_baseline"] == pytest.approx(expected, abs=0.01)

    launcher = parts["launcher"]
    assert launcher["settings"]["shapes"]["observations"] == [37]  # cube-double's
    for stage in launcher["stages"].values():
        assert stage["calls"] == 2 and stage["stage_s"] > stage["first_call_s"] > 0
        assert stage["call_s"] > 0 and stage["s_per_row_step"] > 0 and stage["checkpoint_s"] > 0
    assert 0 < launcher["prepare_s"] < launcher["wall_s"]
    rates = {name: stage["s_per_row_step"] for name, stage in launcher["stages"].items()}
    hours = 2800 * (3e5 * rates["bc"] + 1e6 * rates["offline"]) / 3600
    assert launcher["projection"]["hours"] == pytest.approx(hours, rel=1e-3)

    (run,) = parts["eval"]["runs"]
    for name in ("batched", "sequential"):
        # The untrained policy runs every episode (2 per seed) to the 10-step time limit.
        assert run[name]["env_steps"] == 2 * 10 and run[name]["env_steps_per_s"] > 0

    table = (tmp_path / "suite_quick_cpu.md").read_text()
    for part in suite.PARTS:
        assert f"## {part}: ok" in table
    assert "| float32 | 1 |" in table and "Paper sweep" in table
