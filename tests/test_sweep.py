"""The sweep: its plan, cost estimate, skip / resume logic and the compilation cache, a reduced
sweep end to end (BC, two agents, the report) on a tiny generated dataset, and the same sweep
split over two local CPU processes joined by jax.distributed."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from trqam_jax import run_dir, sweep
from trqam_jax.data.datasets import DataError

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


@pytest.fixture(scope="module")
def tiny_single_dir(tmp_path_factory):
    """A generated cube-single-play dataset of two short episodes (seconds to make)."""
    from trqam_jax.data.generate import generate_dataset

    out = str(tmp_path_factory.mktemp("cube_single"))
    generate_dataset(out_dir=out, workers=1, progress=False, **TINY_DATA)
    return out


def cli_env():
    # XLA's optimisation passes dominate these tiny programs' compile time (by about 3x on a
    # CPU); every run of a test compiles the same way, so the runs still agree with each other.
    # The sweep keeps its own compile cache under its root (the tests count its hits), not the
    # test session's shared one (tests/conftest.py).
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def run_cli(flags, timeout=900):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *flags],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def read_jsonl(path):
    return run_dir.read_jsonl(str(path), required=True)


def tiny_sweep(root, agents="trqam,qam,fql", domains=DOMAIN, tasks="1,2", seeds=2, budgets=""):
    return sweep.make_sweep(agents, domains, tasks, seeds, budgets, str(root), TINY)


# ----------------------------------------------------------------------------------------------
# The plan


def test_every_agent_config_takes_part_and_the_paper_set_is_the_tables():
    configs = sweep.agent_configs()
    assert {"trqam", "qam", "qam_e", "fql", "fql_chunked"} <= set(configs)
    assert "quickstart" not in configs and configs[0] == "trqam"
    paper = sweep.parse_agents("paper")
    assert set(paper) <= set(sweep.PAPER_AGENTS) and "fql" not in paper and "fql_chunked" in paper


def test_one_bc_program_per_domain_and_field_shape_starts_every_agent(tmp_path):
    spec = tiny_sweep(tmp_path, agents="qam,trqam,fql", domains=f"{DOMAIN},scene-play")
    plan = sweep.make_plan(spec)
    by_name = {p.name: p for p in plan}
    # Agents whose base fields have the same layers share one BC program (an independent rule:
    # same horizon, widths and layer norm); FQL's original preset (H = 1) gets its own.
    for domain in (DOMAIN, "scene-play"):
        shape = {}
        for name in ("qam", "trqam", "fql"):
            a = sweep.agent_config(spec, name, domain).agent
            shape[name] = (a.horizon, tuple(a.actor_hidden_dims), a.actor_layer_norm)
        assert shape["qam"] == shape["trqam"] != shape["fql"]
        assert by_name[f"qam-{domain}"].bc == by_name[f"trqam-{domain}"].bc == f"bc-{domain}"
        assert by_name[f"fql-{domain}"].bc == f"bc-{domain}-fql"
        # The shared BC trains with the first config (TRQAM's) whatever order the agents came in.
        assert by_name[f"bc-{domain}"].config_name == "trqam"
    assert [p.stage for p in plan] == [sweep.BC] * 4 + [sweep.FINETUNE] * 6
    # Rows: tasks x budgets x seeds for the agent with a budget, tasks x seeds for the others.
    spec = tiny_sweep(tmp_path, agents="trqam,qam", tasks="1,2", seeds=2, budgets="0.5,1.0,2.0")
    plan = {p.name: p for p in sweep.make_plan(spec)}
    assert plan[f"trqam-{DOMAIN}"].rows == 2 * 3 * 2 and plan[f"qam-{DOMAIN}"].rows == 2 * 2
    assert plan[f"bc-{DOMAIN}"].rows == 2 and plan[f"trqam-{DOMAIN}"].updates == 12 * 10

    config = sweep.program_config(spec, plan[f"trqam-{DOMAIN}"])
    assert config.init_from == os.path.join(str(tmp_path), f"bc-{DOMAIN}") and config.bc_steps == 0
    assert tuple(config.kl_budgets) == (0.5, 1.0, 2.0) and tuple(config.tasks) == (1, 2)
    assert config.agent.num_qs == 2 and config.run_dir == os.path.join(
        str(tmp_path), f"trqam-{DOMAIN}"
    )
    assert tuple(sweep.program_config(spec, plan[f"qam-{DOMAIN}"]).kl_budgets) == ()
    bc_config = sweep.program_config(spec, plan[f"bc-{DOMAIN}"])
    assert (bc_config.bc_steps, bc_config.offline_steps, bc_config.eval_episodes) == (10, 0, 0)
    assert tuple(bc_config.kl_budgets) == () and bc_config.task == 1
    # Without BC steps there is nothing to share: every agent starts from scratch.
    spec = sweep.make_sweep("trqam", DOMAIN, "1", 2, "", str(tmp_path), (*TINY, "bc_steps=0"))
    (program,) = sweep.make_plan(spec)
    assert program.bc == "" and sweep.program_config(spec, program).init_from == ""


def test_several_processes_split_the_rows_and_deal_out_the_bc_programs(tmp_path):
    spec = tiny_sweep(tmp_path, agents="trqam,fql", domains=f"{DOMAIN},scene-play", tasks="1")
    plan = sweep.make_plan(spec, processes=2)
    bcs = [p for p in plan if p.stage == sweep.BC]
    assert [p.process for p in bcs] == [0, 1, 0, 1] and all(p.parts == 1 for p in bcs)
    program = next(p for p in plan if p.name == f"trqam-{DOMAIN}")
    assert program.parts == 2
    out = os.path.join(str(tmp_path), program.name)
    assert sweep.part_dirs(spec, program) == [
        os.path.join(out, "part0"),
        os.path.join(out, "part1"),
    ]
    with pytest.raises(sweep.ConfigError, match="3 rows .* do not split among 2 processes"):
        sweep.make_plan(tiny_sweep(tmp_path, agents="qam", tasks="1", seeds=3), processes=2)


def test_the_estimate_adds_the_busiest_bc_process_and_every_fine_tuning_program(tmp_path):
    spec = tiny_sweep(tmp_path, agents="trqam,fql", domains=f"{DOMAIN},scene-play", tasks="1")
    plan = sweep.make_plan(spec, processes=2)
    status = {p.name: "todo" for p in plan}
    status[f"fql-{DOMAIN}"] = "done"
    costs = {p.name: {"s_per_step": 0.1 * (i + 1), "compile_s": 2.0} for i, p in enumerate(plan)}
    del costs["trqam-scene-play"]
    est = sweep.estimate(plan, status, costs, processes=2)
    # Plain arithmetic: BC programs 0 and 2 run on process 0, 1 and 3 on process 1, each whole.
    seconds = {p.name: p.steps * costs[p.name]["s_per_step"] for p in plan if p.name in costs}
    bc_names = [p.name for p in plan if p.stage == sweep.BC]
    busiest = max(
        seconds[bc_names[0]] + seconds[bc_names[2]], seconds[bc_names[1]] + seconds[bc_names[3]]
    )
    finetune = [p.name for p in plan if p.stage == sweep.FINETUNE and p.name in costs]
    expected = busiest + sum(seconds[n] for n in finetune if status[n] != "done")
    assert est["total_s"] == pytest.approx(expected)
    assert est[f"fql-{DOMAIN}"] == 0.0 and est["unmeasured"] == ["trqam-scene-play"]
    assert est["compile_s"] == pytest.approx(2.0 * (len(costs) - 1))  # the done one is not paid
    lines = sweep.plan_lines(spec, plan, status, costs, processes=2)
    assert (
        "1 not measured" in lines[-1] and f"{sum(p.updates for p in plan):,} updates" in lines[-2]
    )


def test_bad_input_names_the_value_and_the_fix(tmp_path):
    cases = [
        (dict(agents="sac"), "unknown sac; use paper, all or some of trqam"),
        (dict(agents="fql,fql_chunked"), "both run agent 'fql'"),
        (dict(domains="cube-double"), "unknown environment"),
        (dict(tasks="1,9"), "task9"),
        (dict(tasks="one"), "expected comma-separated numbers"),
        (dict(sets=("seeds=3",)), "the sweep sets config.seeds itself"),
        (dict(sets=("agent.no_such_field=1",)), "no config of the sweep"),
        (dict(sets=("steps",)), "expected key=value"),
    ]
    for kwargs, match in cases:
        args = dict(agents="trqam", domains=DOMAIN, tasks="1", sets=()) | kwargs
        with pytest.raises((ValueError, DataError), match=match):
            sweep.make_sweep(
                args["agents"],
                args["domains"],
                args["tasks"],
                2,
                "",
                str(tmp_path),
                (*TINY, *args["sets"]),
            )
    spec = sweep.make_sweep("trqam", DOMAIN, "1", 2, "", str(tmp_path), ("agent.num_qs='two'",))
    with pytest.raises(sweep.ConfigError, match="agent.num_qs='two'"):
        sweep.make_plan(spec)


def test_an_override_reaches_only_the_configs_that_have_the_field(tmp_path):
    spec = sweep.make_sweep(
        "trqam,qam", DOMAIN, "1", 2, "", str(tmp_path), ("agent.kl_budget=0.25",)
    )
    assert sweep.agent_config(spec, "trqam", DOMAIN).agent.kl_budget == 0.25
    assert "kl_budget" not in sweep.agent_config(spec, "qam", DOMAIN).agent


def test_a_worker_is_single_process_jax_on_the_devices_this_process_was_given():
    parent = {
        "JAX_COORDINATOR_ADDRESS": "h:1",
        "JAX_PROCESS_ID": "3",
        "CUDA_VISIBLE_DEVICES": "4,5,6,7",
    }
    # jax.distributed.initialize chose local GPU 2 (e.g. SLURM_LOCALID=2): physical GPU 6.
    env = sweep.worker_env(parent, {"jax_cuda_visible_devices": "2"})
    assert "JAX_COORDINATOR_ADDRESS" not in env and "JAX_PROCESS_ID" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "6" and env["PYTHONPATH"].split(os.pathsep)[0] == ROOT
    assert (
        sweep.worker_env({}, {"jax_cuda_visible_devices": "0,1"})["CUDA_VISIBLE_DEVICES"] == "0,1"
    )
    assert "CUDA_VISIBLE_DEVICES" not in sweep.worker_env({}, {"jax_cuda_visible_devices": "all"})


def _fake_launcher(spec, calls, fail=()):
    """Stands in for the worker processes: writes what a finished launcher run leaves behind."""

    def launch(job):
        calls.append((job["mode"], job.get("program"), job.get("part")))
        program = next(
            p for p in sweep.make_plan(spec, job["processes"]) if p.name == job["program"]
        )
        if program.name in fail:
            return 3
        out = sweep.part_dirs(spec, program)[job["part"]]
        config = sweep.program_config(spec, program)
        os.makedirs(out, exist_ok=True)
        run_dir.write_json(os.path.join(out, run_dir.CONFIG_FILE), {})
        steps = {name: config[name] for name in ("bc_steps", "offline_steps", "online_steps")}
        run_dir.write_json(os.path.join(out, run_dir.SUMMARY_FILE), {"steps": steps})
        return 0

    return launch


def test_the_sweep_skips_what_is_finished_and_runs_around_a_failure(tmp_path, capsys):
    spec = tiny_sweep(tmp_path, agents="trqam,qam,fql", tasks="1")
    reported, calls = [], []
    report = lambda dirs, out: reported.append((dirs, out)) or 0
    fails = _fake_launcher(spec, calls, fail=(f"bc-{DOMAIN}-fql",))
    code = sweep.run(spec, sweep.Processes(), fails, report, time_calls=0)
    # The FQL BC failed: FQL's fine-tuning is not run, the other agents' are, and reported.
    assert code == 3
    assert [c[1] for c in calls] == [
        f"bc-{DOMAIN}",
        f"bc-{DOMAIN}-fql",
        f"trqam-{DOMAIN}",
        f"qam-{DOMAIN}",
    ]
    assert reported == [
        (
            [str(tmp_path / f"trqam-{DOMAIN}"), str(tmp_path / f"qam-{DOMAIN}")],
            str(tmp_path / "report"),
        )
    ]
    summary = json.loads((tmp_path / sweep.SUMMARY_FILE).read_text())
    assert set(summary["failed"]) == {f"bc-{DOMAIN}-fql", f"fql-{DOMAIN}"}
    plan = json.loads((tmp_path / sweep.PLAN_FILE).read_text())
    assert [p["status"] for p in plan["programs"]] == ["todo"] * 5
    # Rerun: only what is not finished runs again.
    calls.clear()
    assert (
        sweep.run(spec, sweep.Processes(), _fake_launcher(spec, calls), report, time_calls=0) == 0
    )
    assert [c[1] for c in calls] == [f"bc-{DOMAIN}-fql", f"fql-{DOMAIN}"]
    plan = json.loads((tmp_path / sweep.PLAN_FILE).read_text())
    assert [p["status"] for p in plan["programs"]] == ["done", "todo", "done", "done", "todo"]
    assert "finished before, skipped" in capsys.readouterr().out


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "sweep"
    spec = tiny_sweep(root, agents="trqam,qam", tasks="1,2")
    never = lambda *_: pytest.fail("a dry run launched work")
    assert sweep.run(spec, sweep.Processes(), never, never, dry_run=True, time_calls=0) == 0
    out = capsys.readouterr().out
    assert f"bc-{DOMAIN}" in out and f"trqam-{DOMAIN}" in out and "no estimate" in out
    assert not root.exists()


_COMPILE = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from trqam_jax import compile_cache
    compile_cache.enable(sys.argv[1])
    with compile_cache.CompileTimer() as timer:
        jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
    print(timer.cache_hits, timer.cache_misses)
    """
)


def test_a_second_process_loads_the_compiled_program_from_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    counts, entries = [], []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE, cache],
            cwd=ROOT,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        counts.append(tuple(map(int, done.stdout.split())))
        entries.append(sorted(os.listdir(cache)))
    (hits1, misses1), (hits2, misses2) = counts
    assert hits1 == 0 and misses1 > 0 and entries[0]  # compiled and stored
    assert hits2 == misses1 and misses2 == 0 and entries[1] == entries[0]  # loaded, nothing new


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
    assert cost["s_per_step"] > 0 and plan["programs"][1]["estimate_s"] == pytest.approx(
        20 * cost["s_per_step"]
    )
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


# ----------------------------------------------------------------------------------------------
# Two processes joined by jax.distributed

TIMEOUT_S = 900  # per sweep process; a hung barrier fails the test instead of hanging it


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
