"""The sweep's plan: programs, configs, overrides, the swept hparam of each agent, the estimate,
the checks before any work, skip / resume around failures (a stand-in launcher) and the
compilation cache. tests/test_sweep_run.py runs the CLI end to end."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs import resolved
from tests.runs import run_module
from tests.sweep_tiny import DOMAIN, ROOT, TINY, cli_env
from trqam_jax import experiment, run_dir, sweep
from trqam_jax.data.errors import DataError


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
    costs = {
        p.name: {"s_per_step": 0.1 * (i + 1), "compile_s": 9.0, "start_s": 2.0}
        for i, p in enumerate(plan)
    }
    del costs["trqam-scene-play"]
    costs[f"trqam-{DOMAIN}"].update(data_s=3.0, envs_s=4.0, eval_s=5.0, evals=2)
    costs[f"bc-{DOMAIN}"].update(checkpoint_s=0.5, checkpoints=3)
    est = sweep.estimate(plan, status, costs, processes=2, overhead_s=7.0)
    # Plain arithmetic: BC programs 0 and 2 run on process 0, 1 and 3 on process 1, each whole;
    # every part starts a process and its training call, loads its data, evaluates and saves.
    seconds = {
        p.name: 7.0 + 2.0 + p.steps * costs[p.name]["s_per_step"] for p in plan if p.name in costs
    }
    seconds[f"trqam-{DOMAIN}"] += 3.0 + 4.0 + 2 * 5.0
    seconds[f"bc-{DOMAIN}"] += 3 * 0.5
    bc_names = [p.name for p in plan if p.stage == sweep.BC]
    busiest = max(
        seconds[bc_names[0]] + seconds[bc_names[2]], seconds[bc_names[1]] + seconds[bc_names[3]]
    )
    finetune = [p.name for p in plan if p.stage == sweep.FINETUNE and p.name in costs]
    expected = busiest + sum(seconds[n] for n in finetune if status[n] != "done")
    assert est["total_s"] == pytest.approx(expected)
    assert est[f"fql-{DOMAIN}"] == 0.0 and est["unmeasured"] == ["trqam-scene-play"]
    assert est["compile_s"] == pytest.approx(9.0 * (len(costs) - 1))  # the done one is not paid
    lines = sweep.plan_lines(spec, plan, status, costs, processes=2, overhead_s=7.0)
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


def test_a_key_given_twice_keeps_its_last_value_and_types_are_ml_collections(tmp_path):
    overrides = ("agent.num_qs=2", "agent.actor_hidden_dims=(8,8)", "agent.num_qs=3")
    spec = sweep.make_sweep("trqam", DOMAIN, "1", 2, "", str(tmp_path), overrides)
    config = sweep.agent_config(spec, "trqam", DOMAIN)
    assert config.agent.num_qs == 3 and config.agent.actor_hidden_dims == (8, 8)
    spec = sweep.make_sweep("trqam", DOMAIN, "1", 2, "", str(tmp_path), ("agent.num_qs=0.5",))
    with pytest.raises(sweep.ConfigError, match="agent.num_qs=0.5: .*float.*int"):
        sweep.agent_config(spec, "trqam", DOMAIN)


def test_each_agent_sweeps_its_own_hparam_as_rows(tmp_path):
    spec = sweep.make_sweep(
        "trqam,qam,fql", DOMAIN, "1,2", 2, "0.5,1", str(tmp_path), TINY, ("inv_temp=1,3,10",)
    )
    plan = {p.name: p for p in sweep.make_plan(spec)}
    # QAM's inv_temp rides the rows as TRQAM's kl_budget does; FQL sweeps nothing.
    assert plan[f"trqam-{DOMAIN}"].rows == 2 * 2 * 2 and plan[f"qam-{DOMAIN}"].rows == 2 * 3 * 2
    assert plan[f"fql-{DOMAIN}"].rows == 2 * 2
    qam = sweep.program_config(spec, plan[f"qam-{DOMAIN}"])
    assert experiment.swept_values(qam) == {"inv_temp": (1.0, 3.0, 10.0)}
    trqam = sweep.program_config(spec, plan[f"trqam-{DOMAIN}"])
    assert experiment.swept_values(trqam) == {"kl_budget": (0.5, 1.0)}
    fql = sweep.program_config(spec, plan[f"fql-{DOMAIN}"])
    assert experiment.swept_values(fql) == {} and tuple(fql.kl_budgets) == ()
    # Each value is a traced hparam of the agent's state, set per row.
    assert experiment.swept_hparam(qam) == "inv_temp" and "inv_temp" in qam.agent
    with pytest.raises(sweep.ConfigError, match="no agent of the sweep sweeps alpha"):
        sweep.make_sweep("qam,fql", DOMAIN, "1", 2, "", str(tmp_path), TINY, ("alpha=1,2",))


def test_a_resolved_config_file_is_the_program_config(tmp_path):
    spec = tiny_sweep(tmp_path, agents="trqam", budgets="0.5,2")
    program = next(p for p in sweep.make_plan(spec) if p.stage == sweep.FINETUNE)
    config = sweep.program_config(spec, program)
    path = sweep.config_file(spec, program)
    sweep.plan.write_config(config, path)
    loaded = resolved.get_config(path)
    assert experiment.config_record(loaded) == experiment.config_record(config)
    assert loaded.agent.actor_hidden_dims == (16, 16) and loaded.kl_budgets == (0.5, 2.0)


def test_evaluations_and_checkpoints_follow_the_launchers_cadence():
    from trqam_jax.sweep import measure

    config = sweep.base_config_of("trqam", DOMAIN)
    config.update(bc_steps=40, offline_steps=30, steps_per_call=10, online_steps=5)
    config.update(eval_interval=20, save_interval=20)
    # Offline: step 0, 20 and the end (30); online (a step per call): its end only.
    assert measure.evaluations(config) == 4
    # BC: 20, 40; offline: 20, 30; online: 5.
    assert measure.checkpoints(config) == 5


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


def _fake_launcher(calls, fail=()):
    """Stands in for a part's experiments.run: writes what a finished launcher run leaves."""

    def launch(config_path, part, record):
        name = os.path.splitext(os.path.basename(config_path))[0]
        calls.append(name)
        if name in fail:
            return 3
        config = resolved.get_config(config_path)
        config.rows_part = part
        out = experiment.run_directory(config)
        os.makedirs(out, exist_ok=True)
        run_dir.write_json(os.path.join(out, run_dir.CONFIG_FILE), experiment.config_record(config))
        steps = {name: config[name] for name in experiment.STAGE_STEPS}
        run_dir.write_json(os.path.join(out, run_dir.SUMMARY_FILE), {"steps": steps})
        return 0

    return launch


def _no_report(dirs, out):
    return 0


def test_the_sweep_skips_what_is_finished_and_runs_around_a_failure(tmp_path, capsys):
    spec = tiny_sweep(tmp_path, agents="trqam,qam,fql", tasks="1")
    reported, calls = [], []
    report = lambda dirs, out: reported.append((dirs, out)) or 0
    fails = _fake_launcher(calls, fail=(f"bc-{DOMAIN}-fql",))
    code = sweep.run(spec, sweep.Processes(), fails, report, time_calls=0)
    # The FQL BC failed: FQL's fine-tuning is not run, the other agents' are, and reported.
    assert code == 3
    assert calls == [f"bc-{DOMAIN}", f"bc-{DOMAIN}-fql", f"trqam-{DOMAIN}", f"qam-{DOMAIN}"]
    assert reported == [([str(tmp_path)], str(tmp_path / "report"))]  # the root: marks the rest
    summary = json.loads((tmp_path / sweep.SUMMARY_FILE).read_text())
    assert set(summary["failed"]) == {f"bc-{DOMAIN}-fql", f"fql-{DOMAIN}"}
    plan = json.loads((tmp_path / sweep.PLAN_FILE).read_text())
    assert [p["status"] for p in plan["programs"]] == ["todo"] * 5
    # Each program's launcher ran the resolved config the plan names.
    trqam = plan["programs"][2]
    config = resolved.get_config(trqam["config_file"])
    assert config.run_dir == trqam["run_dirs"][0] and config.agent.num_qs == 2
    # Rerun: only what is not finished runs again.
    calls.clear()
    assert sweep.run(spec, sweep.Processes(), _fake_launcher(calls), report, time_calls=0) == 0
    assert calls == [f"bc-{DOMAIN}-fql", f"fql-{DOMAIN}"]
    plan = json.loads((tmp_path / sweep.PLAN_FILE).read_text())
    assert [p["status"] for p in plan["programs"]] == ["done", "todo", "done", "done", "todo"]
    assert "finished before, skipped" in capsys.readouterr().out


def test_a_changed_override_over_a_finished_sweep_is_refused_naming_the_field(tmp_path, capsys):
    spec = tiny_sweep(tmp_path, agents="trqam,qam", tasks="1")
    assert sweep.run(spec, sweep.Processes(), _fake_launcher([]), _no_report, time_calls=0) == 0
    changed = sweep.make_sweep(
        "trqam,qam", DOMAIN, "1", 2, "", str(tmp_path), (*TINY, "agent.num_qs=3")
    )
    calls = []
    for dry_run in (True, False):
        capsys.readouterr()
        code = sweep.run(
            changed, sweep.Processes(), _fake_launcher(calls), _no_report, dry_run=dry_run,
            time_calls=0,
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 2 and "agent.num_qs: 2 -> 3" in err and "another --root" in err, err
        assert err.startswith("error: ") and len(err.splitlines()) == 1
        assert "Sweep plan" not in out  # refused before the plan, the measurement, any work
    assert calls == []


def test_the_root_is_locked_before_any_work(tmp_path, capsys):
    spec = tiny_sweep(tmp_path, agents="trqam", tasks="1")
    never = lambda *_: pytest.fail("a sweep worked on a root another sweep holds")
    os.makedirs(tmp_path, exist_ok=True)
    with run_dir.locked(str(tmp_path)):
        assert sweep.run(spec, sweep.Processes(), never, never, never, time_calls=1) == 2
    err = capsys.readouterr().err
    assert "another sweep runs on --root" in err and run_dir.LOCK_FILE in err


def test_a_dry_run_checks_every_program_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "sweep"
    spec = tiny_sweep(root, agents="trqam,qam", budgets="-1,1")
    never = lambda *_: pytest.fail("a dry run launched work")
    assert sweep.run(spec, sweep.Processes(), never, never, dry_run=True, time_calls=0) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: trqam-{DOMAIN}: config.kl_budgets=(-1.0, 1.0)")
        and "positive" in err
    )
    assert not root.exists()

    spec = tiny_sweep(root, agents="trqam,qam", tasks="1,2")

    def measure(paths, calls, generate):  # the measurement gets resolved configs off the root
        assert calls == 1 and not generate and not any(p.startswith(str(root)) for p in paths)
        names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        assert resolved.get_config(paths[1]).run_dir == str(root / names[1])
        cost = {"s_per_step": 0.01, "compile_s": 1.0, "start_s": 0.1, "data_s": 2.0}
        return {name: cost for name in names}, 5.0

    assert sweep.run(spec, sweep.Processes(), never, never, measure, dry_run=True) == 0
    out = capsys.readouterr().out
    assert f"bc-{DOMAIN}" in out and f"trqam-{DOMAIN}" in out and "estimated wall" in out
    assert "{" not in out  # a table, no raw records
    assert not root.exists()
    assert sweep.run(spec, sweep.Processes(), never, never, dry_run=True, time_calls=0) == 0
    assert "no estimate" in capsys.readouterr().out


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


def test_a_repeated_set_takes_its_last_value_and_says_so_in_one_line(tmp_path):
    """`--set KEY` given twice follows the launcher's rule for `--config.X`: the last value wins,
    said in the same one-line note (experiments.last_one_wins)."""
    done = run_module(
        "experiments.sweep", "--agents=trqam", f"--domains={DOMAIN}", "--tasks=1", "--seeds=2",
        f"--root={tmp_path / 'root'}", "--dry_run", "--time_calls=0",
        "--set", "agent.num_qs=2", "--set", "agent.num_qs=3", env=cli_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: --set agent.num_qs given 2 times; the last one wins: --set agent.num_qs=3"
    ]
    spec = sweep.make_sweep("trqam", DOMAIN, "1", 2, "", str(tmp_path), ("agent.num_qs=2",
                            "agent.num_qs=3"))  # fmt: skip
    assert dict(spec.overrides)["agent.num_qs"] == 3
    assert not (tmp_path / "root").exists()  # a dry run writes nothing
