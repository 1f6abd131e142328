"""Two local CPU processes joined by jax.distributed run a split sweep: together they equal the
sweep run by one process, and only process 0 writes the shared files."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.test_sweep import DOMAIN, ROOT, cli_env, make_tiny_dataset, tiny_flags
from trqam_jax import run_dir, sweep

TIMEOUT_S = 900  # per sweep; a hung barrier fails the test instead of hanging it


@pytest.fixture(scope="module")
def tiny_single_dir(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp("cube_single")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(flags):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *flags],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


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


def test_two_processes_split_the_rows_and_equal_one_process(tiny_single_dir, tmp_path):
    # 2 budgets x 1 seed = 2 rows of TRQAM: each process runs a block of one.
    common = dict(agents="trqam", seeds=1, kl_budgets="0.5,4.0")
    cache = f"--compile_cache={tmp_path / 'cache'}"  # both sweeps compile the BC program once
    whole, split = tmp_path / "whole", tmp_path / "split"
    (single,) = finish(
        [start([*tiny_flags(tiny_single_dir, whole, **common), cache, "--time_calls=0"])]
    )
    address = f"127.0.0.1:{free_port()}"
    outputs = finish(
        [
            start(
                [
                    *tiny_flags(tiny_single_dir, split, **common),
                    cache,
                    "--time_calls=0",
                    f"--coordinator_address={address}",
                    "--num_processes=2",
                    f"--process_id={i}",
                ]
            )
            for i in range(2)
        ]
    )

    program = f"trqam-{DOMAIN}"
    assert sorted(os.listdir(split / program)) == ["part0", "part1"]
    whole_params = final_params(whole / program)
    for part in range(2):
        part_params = final_params(split / program / f"part{part}")
        jax.tree.map(
            lambda a, b, p=part: np.testing.assert_allclose(a[p : p + 1], b, rtol=1e-5, atol=1e-6),
            whole_params,
            part_params,
        )
    summaries = [
        run_dir.read_json(str(split / program / f"part{p}" / run_dir.SUMMARY_FILE)) for p in (0, 1)
    ]
    expected = run_dir.read_json(str(whole / program / run_dir.SUMMARY_FILE))
    assert [s for summary in summaries for s in summary["kl_budgets"]] == expected["kl_budgets"]
    assert [r for summary in summaries for r in summary["final_return"]] == expected["final_return"]

    # The BC program ran whole, once, on process 0 and was shared by both blocks.
    assert f"bc-{DOMAIN} part 0 of 1: running" in outputs[0]
    assert f"bc-{DOMAIN} part 0 of 1" not in outputs[1]
    assert not (split / f"bc-{DOMAIN}" / "part0").exists()
    for part in (0, 1):
        config = json.loads((split / program / f"part{part}" / run_dir.CONFIG_FILE).read_text())
        assert config["init_from"] == str(split / f"bc-{DOMAIN}")
        assert (config["rows_part"], config["rows_parts"]) == (part, 2)
    # Only process 0 writes the shared files; the report covers both blocks.
    shared = [sweep.PLAN_FILE, sweep.SUMMARY_FILE, sweep.REPORT_DIR]
    for name in shared:
        assert f"wrote {split / name}" in outputs[0], outputs[0][-3000:]
        assert "wrote" not in outputs[1], outputs[1][-3000:]
    report_md = (split / sweep.REPORT_DIR / "report.md").read_text()
    assert "trqam[eps=0.5]" in report_md and "trqam[eps=4.0]" in report_md
    records = json.loads((split / sweep.SUMMARY_FILE).read_text())["programs"]
    assert sorted((r["program"], r["part"]) for r in records) == [
        (f"bc-{DOMAIN}", 0),
        (program, 0),
        (program, 1),
    ]
    assert "Sweep plan" in single and "Sweep plan" not in outputs[1]
