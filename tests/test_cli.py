"""The command lines: one-line errors, the last override wins, --print_config, help, signals,
and what a run directory holds (strict JSON, nothing left by a run that did no work)."""

import importlib
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from configs.run_defaults import field_meanings
from experiments import fetch_data, known_answer, make_dataset, report, stability
from experiments import run as cli
from tests.runs import tiny_run_config
from trqam_jax import experiment, run_dir
from trqam_jax.data.errors import DataError
from trqam_jax.envs import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT_CONFIGS = ("trqam", "qam", "qam_e", "fql", "fql_chunked", "ifql", "dsrl", "cgql")


def check(*args):
    """`cli.check_command_line` on `run ARGS` from the checkout (paths are relative to it)."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return cli.check_command_line(["run", *args])
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize(
    "args,names",
    [
        (["--config=configs/trqm.py"], ["configs/trqm.py", "configs/trqam.py", "configs/qam.py"]),
        (["--config=configs/trqam.py:cube-dbl"], ["'cube-dbl'", "cube-double-play", "scene-play"]),
        (["--config.sedes=3"], ["--config.sedes", "did you mean --config.seeds?"]),
        (["--config.agent.lrr", "3"], ["'lrr'", "did you mean --config.agent.lr?"]),
        (["--config=configs/qam.py", "--config=configs/fql.py"], ["given 2 times", "fql.py"]),
    ],
)
def test_bad_command_lines_are_one_line_naming_the_fix(args, names):
    with pytest.raises(cli.UsageError) as caught:
        check(*args)
    message = str(caught.value)
    assert "\n" not in message and all(name in message for name in names), message


def test_the_last_override_wins_and_says_so():
    argv, notes = check(
        "--config.agent.actor_hidden_dims=(8,8)",
        "--config.seeds",
        "3",
        "--config=configs/qam.py:scene-play",
        "--config.agent.actor_hidden_dims=(4,4)",
        "--config.generate_if_missing",
        "--noconfig.generate_if_missing",
        "--config.seed",
        "-1",
    )
    assert argv[1].startswith("--config=") and argv[1].endswith("configs/qam.py:scene-play")
    assert argv[2:] == [
        "--config.agent.actor_hidden_dims=(4,4)",
        "--config.seeds",
        "3",
        "--noconfig.generate_if_missing",
        "--config.seed",
        "-1",
    ]
    assert notes == [
        "note: --config.agent.actor_hidden_dims given 2 times; the last one wins: "
        "--config.agent.actor_hidden_dims=(4,4)",
        "note: --config.generate_if_missing given 2 times; the last one wins: "
        "--noconfig.generate_if_missing",
    ]
    # Without --config the default is passed explicitly, found from any directory.
    assert check()[0][1].endswith(cli.DEFAULT_CONFIG)


def test_a_task_outside_the_tasks_given_is_refused():
    config = importlib.import_module("configs.trqam").get_config("cube-double-play")
    config.task, config.tasks = 3, (1, 2)
    with pytest.raises(cli.UsageError, match=r"--config.task=3 is not among.*\(1, 2\)"):
        cli.check_overrides(config, ["task", "tasks"])
    cli.check_overrides(config, ["tasks"])  # the default task is not the user's
    config.task = 2
    cli.check_overrides(config, ["task", "tasks"])


def test_every_field_of_every_config_has_a_meaning():
    meanings = field_meanings()
    # resolved.py loads a sweep program's resolved config (configs/resolved.py:PATH).
    expected = sorted(AGENT_CONFIGS + ("quickstart", "resolved"))
    assert [f"configs/{name}.py" for name in expected] == (cli.available_configs())
    seen = set()
    for name in AGENT_CONFIGS:
        for arg in ("cube-double-play", "cube-double-play:mse") if name == "cgql" else (None,):
            lines = cli.describe(importlib.import_module(f"configs.{name}").get_config(arg))
            fields = [line.split(" = ")[0] for line in lines]
            assert [f for f in fields if not meanings.get(f)] == [], name
            assert all(
                line.endswith(f"# {meanings[f]}") for f, line in zip(fields, lines, strict=True)
            )
            seen.update(fields)
    assert sorted(set(meanings) - seen) == []  # no meaning of a field no config has


def test_print_config_says_whether_the_config_can_run(tmp_path, capsys):
    config = importlib.import_module("configs.trqam").get_config("cube-double-play")
    config.update(dataset_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), seeds=2)
    assert cli.print_config(config) == 0
    out = capsys.readouterr().out
    assert f"resolved: dataset_dir {tmp_path / 'data'}, run_dir {tmp_path / 'run'}" in out
    assert "seeds = 2" in out and out.strip().endswith("valid: 2 rows (tasks x kl_budgets x seeds)")
    config.offline_steps = 1500
    assert cli.print_config(config) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "error: invalid config: config.offline_steps=1500: must be a multiple of "
        "config.steps_per_call=1000; the compiled loop runs whole calls\n"
    )
    assert "resolved: dataset_dir" in captured.out and not (tmp_path / "run").exists()


def test_the_command_lines_exit_with_one_line():
    """Every failure prints one line and exits 2, help exits 0, the last tuple override wins."""
    commands = {
        "bar": ["--config=configs/trqm.py"],
        "field": ["--config=configs/trqam.py:scene-play", "--config.sedes=2"],
        "stray": ["--config.seeds=2", "stray"],
        "tasks": ["--config.task=3", "--config.tasks=(1,2)", "--print_config"],
        "twice": ["--config.agent.critic_hidden_dims=(8,8)"] * 2
        + ["--config.agent.critic_hidden_dims=(4,4)", "--print_config"],
        "help": ["--help"],
        "helpfull": ["--helpfull"],
    }
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "experiments.run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    done = {name: (p.communicate(timeout=300), p.returncode) for name, p in procs.items()}
    for name, texts in [
        ("bar", ["no config file configs/trqm.py", "configs/trqam.py"]),
        ("field", ["did you mean --config.seeds?"]),
        ("stray", ["unexpected arguments ['stray']"]),
        ("tasks", ["--config.task=3 is not among"]),
    ]:
        (out, err), code = done[name]
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (name, err)
        assert all(text in err for text in texts), (name, err)
    (out, err), code = done["twice"]
    assert code == 0 and "agent.critic_hidden_dims = (4, 4) " in out, out
    assert err == (
        "note: --config.agent.critic_hidden_dims given 3 times; the last one wins: "
        "--config.agent.critic_hidden_dims=(4,4)\n"
    )
    for name in ("help", "helpfull"):
        (out, err), code = done[name]
        assert code == 0 and "print_config" in out, (name, out, err)


ARGPARSE_CLIS = [
    report._parse,
    make_dataset.parse_args,
    fetch_data.parse_args,
    known_answer.parse_args,
    stability.parse_args,
]


@pytest.mark.parametrize("parse", ARGPARSE_CLIS)
def test_argparse_command_lines_take_helpfull(parse, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(["--helpfull"])
    assert stop.value.code == 0 and "--help" in capsys.readouterr().out


_SIGTERM = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from experiments import run_absl

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        except KeyboardInterrupt:
            sys.exit("stopped as by Ctrl-C")

    run_absl(main, "__main__")
    """
)


def test_sigterm_takes_the_ctrl_c_path():
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM, ROOT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.strip() == "stopped as by Ctrl-C", done.stderr


def test_run_files_are_strict_json(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    run_dir.append_jsonl(path, [{"loss": math.nan, "q": [1.0, -math.inf], "step": 1}])
    run_dir.write_json(str(tmp_path / "summary.json"), {"return": math.inf, "ok": 0.5})

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    with open(path) as f:
        assert json.loads(f.read(), parse_constant=refuse) == {
            "loss": None,
            "q": [1.0, None],
            "step": 1,
        }
    with open(tmp_path / "summary.json") as f:
        assert json.load(f, parse_constant=refuse) == {"return": None, "ok": 0.5}


def test_a_run_that_fails_before_any_work_leaves_nothing(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    config = tiny_run_config(str(empty), tmp_path / "runs" / "a")
    with pytest.raises(DataError, match="config.dataset_dir"):
        experiment.run(config)
    assert os.listdir(tmp_path) == ["no-data"]
    kept = tmp_path / "mine"
    kept.mkdir()
    with pytest.raises(DataError):
        experiment.run(tiny_run_config(str(empty), kept))
    assert kept.is_dir()  # a directory the run did not make stays


def test_a_copied_run_directory_names_itself(tmp_path):
    """A finished run found in a copy reports the copy, not where its summary was written."""
    config = tiny_run_config("unused", tmp_path / "copy", seeds=1)
    os.makedirs(config.run_dir)
    run_dir.write_json(str(tmp_path / "copy" / "config.json"), experiment.config_record(config))
    summary = dict(
        wall_clock_s=1.0, data_source="generated", rows=1, tasks=[1], seeds=[0], kl_budgets=[1.0],
        steps={name: config[name] for name in experiment.STAGE_STEPS}, start_success=[0.0],
        final_success=[0.5], final_return=[-10.0], run_dir="/elsewhere/original",
    )  # fmt: skip
    run_dir.write_json(str(tmp_path / "copy" / "summary.json"), summary)
    found = experiment.run(config)
    assert found == dict(summary, run_dir=config.run_dir)
    lines = experiment.summary_lines(config, found)
    assert any(line.startswith(f"Results in {config.run_dir};") for line in lines), lines


def test_making_environments_raises_no_box_precision_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_env("cube-single-play-singletask-task1-v0")
    assert [str(w.message) for w in caught if "precision" in str(w.message)] == []
