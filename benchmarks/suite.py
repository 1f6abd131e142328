"""Every benchmark in one command, each part bounded in time: one JSON and one markdown table.

    python -m benchmarks.suite             # sized for one H100 / H200: under 8 minutes
    python -m benchmarks.suite --quick     # the same code paths at tiny sizes (minutes on a CPU)
    bash benchmarks/device_run.sh          # on the lent accelerator machine (docs/benchmarks.md)

Parts (`--parts`), each its own module with its own time budget (`budget.Budget`): a point or
environment that would overrun a part's budget is skipped, and one that fails (out of memory at
a large S, say) is recorded, each with the reason, and the part goes on; a part that fails as a
whole is recorded and the next part runs.
- update (`suite_update`): the launcher's compiled program of S rows, S doubling until out of
  memory or out of budget, float32 and bfloat16.
- baseline (`suite_baseline`): the reference codes' shape, one row and one update per Python
  call with a host-fed batch; each update row's aggregate rate over it.
- launcher (`suite_launcher`): the launcher's BC and fine-tuning stages (`experiment.prepare`,
  `loop.run_stage`) on synthetic data of cube-double's shapes, 64 rows, timed from outside; the
  paper sweep's projected hours.
- eval (`suite_eval`): batched evaluation env-steps/s against one episode at a time.
Results go to `--out_dir` (default benchmarks/results) as suite_<device>.json / .md
(suite_quick_<device>.* with --quick), rewritten after every part, so a run stopped by a time
limit keeps the parts it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("TQDM_DISABLE", "1")  # run_stage's progress bars would fill the log

import jax

from benchmarks import eval_speed, presets, suite_baseline, suite_eval, suite_launcher, suite_update
from benchmarks.budget import Budget, describe
from benchmarks.common import RESULTS_DIR, device_info, device_label, write_result
from trqam_jax import memory

PARTS = ("update", "baseline", "launcher", "eval")
# Settings of the full suite (one H100 / H200, under 8 minutes in all) and of --quick.
FULL = dict(
    size="paper",
    seeds="1,8,32,64,128",
    max_seeds=4096,
    dtypes="float32,bfloat16",
    steps_per_call=10,
    calls=3,
    baseline_steps=300,
    launcher_rows=64,
    launcher_bc_steps=0,
    launcher_offline_steps=0,
    launcher_steps_per_call=250,
    launcher_episodes=10,
    launcher_episode_length=1000,
    eval_envs=eval_speed.DEFAULT_ENVS,
    eval_seeds=4,
    eval_episodes=2,
    eval_workers=4,
    eval_max_episode_steps=0,
    budget_update=240.0,
    budget_baseline=20.0,
    budget_launcher=130.0,
    budget_eval=50.0,
)
QUICK = dict(
    FULL,
    size="tiny",
    seeds="1",
    max_seeds=2,
    steps_per_call=2,
    calls=1,
    baseline_steps=4,
    launcher_rows=2,
    launcher_bc_steps=4,
    launcher_offline_steps=4,
    launcher_steps_per_call=2,
    launcher_episodes=2,
    launcher_episode_length=50,
    eval_envs="cube-double-play-singletask-task1-v0",
    eval_seeds=1,
    eval_episodes=2,
    eval_workers=1,
    eval_max_episode_steps=10,
    budget_update=120.0,
    budget_baseline=60.0,
    budget_launcher=120.0,
    budget_eval=90.0,
)
# --quick compiles with XLA's backend optimisation off (30 -> 9 CPU seconds for the tiny TRQAM
# program): its numbers are no benchmark, only the code paths are exercised.
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0"


def jax_environment() -> str:
    try:
        return jax.print_environment_info(return_string=True)
    except Exception as err:  # informative only
        return describe(err)


def markdown(record: dict) -> str:
    """The suite's record as markdown: a header, then one table per part that ran."""
    info, versions = record["device"], record["versions"]
    lines = [
        f"# Benchmark suite: {info['device_kind']} ({info['platform']} x {info['num_devices']})",
        "",
        f"- command: `{record['command']}`"
        + (f" (from `{record['launched_by']}`)" if record.get("launched_by") else ""),
        f"- date (UTC): {record['date_utc']}",
        "- versions: "
        + ", ".join(f"{name} {value}" for name, value in versions.items() if value is not None),
        f"- host: {info['host_cpu']}, {info['host_cpus_usable']} usable CPUs, "
        f"load {info['load_average_1min']:.2f}",
        f"- {memory.describe(record['peak_memory'])}, the suite's process up to its last part",
        "",
    ]
    parts = record["parts"]
    for name, part in parts.items():
        lines.append(
            f"## {name}: {part['status']} ({part['elapsed_s']:.0f} s of a {part['budget_s']:.0f} s"
            " budget)"
        )
        lines.append("")
        if part["status"] == "failed":
            lines += [f"Failed: `{part['error']}`", ""]
            continue
        lines += PART_TABLES[name](part, parts)
        for item in part.get("skipped", []):
            lines.append(f"- skipped {dict_label(item)}: {item['reason']}")
        for item in part.get("errors", []):
            lines.append(f"- failed {dict_label(item)}: `{item['error']}`")
        lines.append("")
    return "\n".join(lines) + "\n"


def dict_label(item: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in item.items() if k not in ("reason", "error"))


PART_TABLES = {
    "update": suite_update.update_table,
    "baseline": suite_baseline.baseline_table,
    "launcher": suite_launcher.launcher_table,
    "eval": suite_eval.eval_table,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the same code paths")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument("--out_dir", default=RESULTS_DIR, help="where the JSON and .md go")
    # Every setting below defaults to FULL's value, or QUICK's with --quick.
    for name, value in FULL.items():
        parser.add_argument(
            f"--{name}", type=type(value), default=None, help=f"{value} (--quick: {QUICK[name]})"
        )
    opts = parser.parse_args(argv)
    defaults = QUICK if opts.quick else FULL
    for name, value in defaults.items():
        if getattr(opts, name) is None:
            setattr(opts, name, value)
    unknown = set(opts.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; expected some of {', '.join(PARTS)}")
    if opts.size not in presets.SIZES:
        parser.error(f"--size={opts.size!r}; expected one of {', '.join(presets.SIZES)}")
    return opts


def main(argv=None) -> str:
    """Run the suite; returns the JSON path written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = parse_args(argv)
    if opts.quick and "XLA_FLAGS" not in os.environ:
        # A third of the compile time on a CPU; read when JAX starts its backend (below).
        os.environ["XLA_FLAGS"] = QUICK_XLA_FLAGS
    info = device_info()
    name = "suite_quick" if opts.quick else "suite"
    path = os.path.join(opts.out_dir, f"{name}_{device_label(info)}.json")
    print(f"device: {info['device_kind']} ({info['platform']}) x {info['num_devices']}; -> {path}")
    record = {
        "benchmark": "suite",
        "command": " ".join(["python -m benchmarks.suite", *argv]),
        # The script that started the suite, when one says so (benchmarks/device_run.sh does).
        "launched_by": os.environ.get("SUITE_LAUNCHER"),
        "quick": opts.quick,
        "settings": {k: getattr(opts, k) for k in FULL},
        "jax_environment": jax_environment(),
        "parts": {},
    }
    runners = {
        "update": lambda b: suite_update.update_part(b, opts),
        "baseline": lambda b: suite_baseline.baseline_part(b, opts),
        "launcher": lambda b: suite_launcher.launcher_part(b, opts, record["parts"].get("update")),
        "eval": lambda b: suite_eval.eval_part(b, opts),
    }
    for part_name in [p for p in PARTS if p in opts.parts.split(",")]:
        budget_s = getattr(opts, f"budget_{part_name}")
        budget = Budget(budget_s)
        print(f"== {part_name} (budget {budget_s:.0f} s)", flush=True)
        try:
            part = runners[part_name](budget)
            incomplete = part.get("skipped") or part.get("errors")
            part["status"] = "partial" if incomplete else "ok"
        except Exception as err:  # recorded; the next part runs
            traceback.print_exc()
            part = {"status": "failed", "error": describe(err)}
        part.update(budget_s=budget_s, elapsed_s=round(budget.elapsed(), 2))
        record["parts"][part_name] = part
        if part_name == "baseline" and part["status"] != "failed":
            part["ratio_vs_baseline"] = suite_baseline.baseline_ratios(
                record["parts"].get("update", {}), part
            )
        write_result(name, record, path)  # adds the device, the versions and the date
        with open(path) as f:
            table = markdown(json.load(f))
        with open(path[: -len(".json")] + ".md", "w") as f:
            f.write(table)
        print(f"== {part_name}: {part['status']} in {part['elapsed_s']:.0f} s; wrote {path}")
    return path


if __name__ == "__main__":
    main()
