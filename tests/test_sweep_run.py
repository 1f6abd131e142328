"""The sweep CLI end to end: a reduced sweep (BC, two agents, the report) on a tiny generated
dataset, resumed, refused when its config changed, its workers stopped with it, and the same
sweep split over two local CPU processes joined by jax.distributed."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.sweep_tiny import DOMAIN, TINY_DATA, run_cli, start, tiny_flags
from trqam_jax import run_dir, sweep
from trqam_jax.report import runs as report_runs


@pytest.fixture(scope="module")
def tiny_single_dir(tmp_path_factory):
    """A generated cube-single-play dataset of two short episodes (seconds to make)."""
    from trqam_jax.data.generate import generate_dataset

    out = str(tmp_path_factory.mktemp("cube_single"))
    generate_dataset(out_dir=out, workers=1, progress=False, **TINY_DATA)
    return out


def read_jsonl(path):
    return run_dir.read_jsonl(str(path), required=True)


# ----------------------------------------------------------------------------------------------
# A reduced sweep end to end


@pytest.fixture(scope="module")
def reduced_sweep(tiny_single_dir, tmp_path_factory):
    """The reduced sweep (BC, TRQAM and QAM on 2 tasks x 2 seeds) run once by one process:
    (its root, its output). The tests below leave its TRQAM and BC runs as they are."""
    root = tmp_path_factory.mktemp("reduced") / "sweep"
    return root, run_cli([*tiny_flags(tiny_single_dir, root, tasks="1,2"), "--time_calls=0"])


def test_a_reduced_sweep_runs_bc_both_agents_and_the_report_then_resumes(
    reduced_sweep, tiny_single_dir
):
    root, out = reduced_sweep
    assert out.index("Sweep plan") < out.index("running")  # the plan comes before any work
    plan = json.loads((root / sweep.PLAN_FILE).read_text())
    names = [p["name"] for p in plan["programs"]]
    assert names == [f"bc-{DOMAIN}", f"trqam-{DOMAIN}", f"qam-{DOMAIN}"]
    assert [p["rows"] for p in plan["programs"]] == [2, 4, 4]  # BC: seeds; then tasks x seeds

    # One BC run, its checkpoint the start of both agents' fine-tuning (no BC stage of their own).
    bc_metrics = read_jsonl(root / f"bc-{DOMAIN}" / run_dir.TRAIN_METRICS_FILE)
    assert {(r["stage"], r["step"]) for r in bc_metrics} == {("bc", 10)}
    starts = {}
    for agent in ("trqam", "qam"):
        out_dir = root / f"{agent}-{DOMAIN}"
        config = json.loads((out_dir / run_dir.CONFIG_FILE).read_text())
        assert config["init_from"] == str(root / f"bc-{DOMAIN}") and config["bc_steps"] == 0
        metrics = read_jsonl(out_dir / run_dir.TRAIN_METRICS_FILE)
        assert {r["stage"] for r in metrics} == {"offline"}
        evals = read_jsonl(out_dir / run_dir.EVAL_FILE)
        starts[agent] = [
            (r["task"], r["seed"], r["return"], r["length"]) for r in evals if r["step"] == 0
        ]
    # At step 0 both policies are the BC policy, evaluated on the same episodes of each task.
    assert starts["trqam"] == starts["qam"] and len(starts["qam"]) == 4
    report_md = (root / sweep.REPORT_DIR / "report.md").read_text()
    assert "| trqam" in report_md and "| qam" in report_md
    # The report reads the root: the BC program is marked, not refused.
    assert f"| `{root / f'bc-{DOMAIN}'}` | {report_runs.BC_ONLY} |" in report_md
    first = {
        r["program"]: r for r in json.loads((root / sweep.SUMMARY_FILE).read_text())["programs"]
    }

    # More fine-tuning steps for QAM, with the cost measurement: BC is finished and skipped, QAM
    # resumes from its checkpoint at step 10.
    flags = tiny_flags(tiny_single_dir, root, agents="qam", tasks="1,2", sets=("offline_steps=20",))
    out = run_cli([*flags, "--time_calls=1"])
    assert f"bc-{DOMAIN} part 0: finished before, skipped" in out
    plan = json.loads((root / sweep.PLAN_FILE).read_text())
    assert [p["status"] for p in plan["programs"]] == ["done", "resumes"]
    cost = plan["programs"][1]["cost"]
    # The estimate: the process start, the data, the first call's start, 20 updates, 3
    # evaluations and 3 checkpoints (steps 10 and 20, and the BC base loaded), as measured.
    expected = plan["process_start_s"] + cost["data_s"] + cost["envs_s"] + cost["start_s"]
    expected += 3 * cost["eval_s"] + 3 * cost["checkpoint_s"]
    assert cost["s_per_step"] > 0 and cost["evals"] == 3 and cost["checkpoints"] == 3
    assert plan["programs"][1]["estimate_s"] == pytest.approx(expected + 20 * cost["s_per_step"])
    metrics = read_jsonl(root / f"qam-{DOMAIN}" / run_dir.TRAIN_METRICS_FILE)
    rows = [(1, 0), (1, 1), (2, 0), (2, 1)]  # (task, seed), task-major
    assert [(r["step"], r["task"], r["seed"]) for r in metrics] == [
        (s, *row) for s in (10, 20) for row in rows
    ]
    evals = read_jsonl(root / f"qam-{DOMAIN}" / run_dir.EVAL_FILE)
    assert [r["step"] for r in evals] == [0] * 4 + [10] * 4 + [20] * 4
    # Compile once: the measurement and the resumed program loaded the first run's compiles.
    again = {
        r["program"]: r for r in json.loads((root / sweep.SUMMARY_FILE).read_text())["programs"]
    }
    program = f"qam-{DOMAIN}"
    assert cost["cache_hits"] > 0 and cost["cache_misses"] == 0, cost
    assert again[program]["cache_hits"] > 0, again
    assert again[program]["compile_s"] < first[program]["compile_s"], (again, first)


def test_a_finished_sweep_rerun_with_a_changed_set_is_refused_naming_the_field(
    reduced_sweep, tiny_single_dir
):
    root, _ = reduced_sweep
    before = sorted(os.listdir(root))
    flags = tiny_flags(tiny_single_dir, root, agents="trqam", tasks="1,2", sets=("agent.num_qs=3",))
    out = run_cli([*flags, "--time_calls=0"], code=2)
    assert "agent.num_qs: 2 -> 3" in out and "another --root" in out, out
    assert "running" not in out and sorted(os.listdir(root)) == before


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def _gone(pid: int, wait_s: float = 60.0) -> bool:
    """Whether process `pid` has ended (or is a zombie), waiting up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _running_worker(tiny_single_dir, root):
    """A sweep whose BC worker trains for long, once that worker started: (sweep, worker pid, its
    output so far and to come: a thread reads it on, so the pipe never fills)."""
    flags = tiny_flags(tiny_single_dir, root, agents="trqam", sets=("bc_steps=1000000",))
    # Under a shell's background job SIGINT is ignored, and an ignored signal stays ignored in
    # the children; with a handler here, the sweep starts with Ctrl-C's default.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = start([*flags, "--time_calls=0"])
    finally:
        signal.signal(signal.SIGINT, ignored)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "running" in line:
            break
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60  # it says "running" just before it starts the worker
    while not _children(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (worker,) = _children(process.pid)
    return process, worker, (lines, reader)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_a_killed_sweep_takes_its_worker_with_it_and_holds_its_root(tiny_single_dir, tmp_path):
    process, worker, _ = _running_worker(tiny_single_dir, tmp_path / "sweep")
    # A second sweep on the same root is refused at once, naming the lock.
    flags = tiny_flags(tiny_single_dir, tmp_path / "sweep", agents="trqam")
    out = run_cli([*flags, "--time_calls=1"], code=2)
    assert "another sweep runs on --root" in out and run_dir.LOCK_FILE in out, out
    assert "Sweep plan" not in out
    process.kill()  # kill -9: the worker gets the parent-death signal
    process.wait()
    assert _gone(worker)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_sigterm_stops_the_sweep_and_its_worker_and_says_how_to_resume(tiny_single_dir, tmp_path):
    process, worker, (lines, reader) = _running_worker(tiny_single_dir, tmp_path / "sweep")
    # SIGTERM (a scheduler's stop) to the sweep alone (the worker has a process group of its
    # own): run_absl turns it into Ctrl-C's KeyboardInterrupt, so both take this path.
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    reader.join(timeout=60)
    out = "".join(lines)
    assert process.returncode == 130 and "rerun the same command to resume" in out, out
    assert _gone(worker, wait_s=0)


# ----------------------------------------------------------------------------------------------
# Two processes joined by jax.distributed

TIMEOUT_S = 900  # per sweep process; a hung barrier fails the test instead of hanging it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(processes) -> list[str]:
    """Each process's output; every process is killed and the test fails if one fails or hangs."""
    outputs, failed = [], False
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            outputs.append(process.communicate()[0] + "\n[timed out]")
        failed |= process.returncode != 0
    if failed:
        shown = "\n".join(
            f"--- process {i} (exit {p.returncode}):\n{out[-3000:]}"
            for i, (p, out) in enumerate(zip(processes, outputs, strict=True))
        )
        pytest.fail(f"a sweep process failed:\n{shown}")
    return outputs


def final_params(out):
    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(out, "checkpoints", "offline")))
    return mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())["params"]


def test_two_processes_split_the_rows_and_equal_one_process(
    reduced_sweep, tiny_single_dir, tmp_path
):
    """The reduced sweep's TRQAM program (4 rows) over two processes: a task's block each."""
    whole, split = reduced_sweep[0], tmp_path / "split"
    address = f"127.0.0.1:{free_port()}"
    flags = [
        *tiny_flags(tiny_single_dir, split, agents="trqam", tasks="1,2"),
        f"--compile_cache={whole / 'compile_cache'}",  # the BC program is compiled already
        "--time_calls=0",
        f"--coordinator_address={address}",
        "--num_processes=2",
    ]
    outputs = finish([start([*flags, f"--process_id={i}"]) for i in range(2)])

    program = f"trqam-{DOMAIN}"
    assert sorted(os.listdir(split / program)) == ["part0", "part1"]
    whole_params = final_params(whole / program)
    for part in range(2):
        part_params = final_params(split / program / f"part{part}")
        jax.tree.map(
            lambda a, b, p=part: np.testing.assert_allclose(
                a[2 * p : 2 * p + 2], b, rtol=1e-5, atol=1e-6
            ),
            whole_params,
            part_params,
        )
    summaries = [
        run_dir.read_json(str(split / program / f"part{p}" / run_dir.SUMMARY_FILE)) for p in (0, 1)
    ]
    expected = run_dir.read_json(str(whole / program / run_dir.SUMMARY_FILE))
    assert [s for summary in summaries for s in summary["seeds"]] == expected["seeds"] == [0, 1] * 2
    assert (
        [t for summary in summaries for t in summary["tasks"]] == expected["tasks"] == [1, 1, 2, 2]
    )
    assert [r for summary in summaries for r in summary["final_return"]] == expected["final_return"]

    # The BC program ran whole, once, on process 0, and both blocks started from it.
    assert f"bc-{DOMAIN} part 0 of 1: running" in outputs[0]
    assert f"bc-{DOMAIN} part 0 of 1" not in outputs[1]
    assert not (split / f"bc-{DOMAIN}" / "part0").exists()
    for part in (0, 1):
        config = json.loads((split / program / f"part{part}" / run_dir.CONFIG_FILE).read_text())
        assert config["init_from"] == str(split / f"bc-{DOMAIN}")
        assert (config["rows_part"], config["rows_parts"]) == (part, 2)
    # Only process 0 prints the plan and writes the shared files; the report covers both blocks.
    for name in (sweep.PLAN_FILE, sweep.SUMMARY_FILE, sweep.REPORT_DIR):
        assert f"wrote {split / name}" in outputs[0], outputs[0][-3000:]
    assert "wrote" not in outputs[1] and "Sweep plan" not in outputs[1], outputs[1][-3000:]
    missing = (split / sweep.REPORT_DIR / "report.md").read_text().split("## Missing")[1]
    assert "seed" not in missing.split("##")[0], missing  # both seeds are in the table
    records = json.loads((split / sweep.SUMMARY_FILE).read_text())["programs"]
    assert sorted((r["program"], r["part"]) for r in records) == [
        (f"bc-{DOMAIN}", 0),
        (program, 0),
        (program, 1),
    ]
