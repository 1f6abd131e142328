"""Report: rows named by each run's swept hparam (QAM's inv_temp, TRQAM's kl_budget)."""

import csv
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import report
from tests.test_report import A, env, write_run
from trqam_jax import run_dir
from trqam_jax.report import plots, records

SEEDS = (0, 1)


def launcher_run(root, name, agent, hparam, values, evals, rows_hparam=True, **kw):
    """`write_run`, then provenance.json's `rows` as experiment.run writes them: seeds, row ids,
    tasks and, with `rows_hparam`, the swept hparam's value per row (value-major, then seeds)."""
    per_row = [v for v in values for _ in SEEDS]
    cfg_agent = {"agent_name": agent, hparam: values[0]}
    d = write_run(root, name, cfg_agent, env(A, 1), evals, seeds=len(SEEDS), **kw)
    path = os.path.join(d, run_dir.PROVENANCE_FILE)
    rows = dict(seeds=len(SEEDS), row_ids=list(range(len(per_row))), tasks=[1] * len(per_row))
    if rows_hparam:
        rows[hparam] = per_row
    run_dir.write_json(path, dict(run_dir.read_json(path), rows=rows))
    return d


def success(value, seed):
    return 0.1 * value + 0.1 * seed + 0.05


def sweep_evals(hparam, values, column=True):
    """eval.jsonl lines of rows values x SEEDS at steps 50 (offline) and 150 (online, last)."""
    return [
        dict(
            step=step,
            stage="offline" if step == 50 else "online",
            task=1,
            seed=s,
            success=success(v, s) * step / 150,
            **({hparam: v} if column else {}),
        )
        for v in values
        for s in SEEDS
        for step in (50, 150)
    ]


def _table_csv(out):
    with open(os.path.join(out, "table.csv")) as f:
        return [r for r in csv.DictReader(f) if r["source"] == "this repo" and r["domain"] == A]


def _table_labels(out):
    with open(os.path.join(out, "table.md")) as f:
        lines = [ln for ln in f if ln.startswith("| ") and "this repo" in ln]
    return [ln.split(" | ")[0][2:] for ln in lines]


def test_qam_inv_temp_sweep_has_one_row_per_value(tmp_path):
    temps = (1.0, 3.0)
    train = [
        dict(step=50, stage="offline", task=1, seed=s, inv_temp=t, kl_ema=0.2, critic_loss=0.1)
        for t in temps
        for s in SEEDS
    ]
    p = launcher_run(
        str(tmp_path), "qam", "qam", "inv_temp", temps, sweep_evals("inv_temp", temps),
        kl_budgets=list(temps), train=train,
    )  # fmt: skip
    out = str(tmp_path / "out")
    assert report.main([p, "--out", out, "--reps", "10"]) == 0
    want = {f"qam[inv_temp={t}]": [success(t, s) for s in SEEDS] for t in temps}
    got = {r["method"]: r for r in _table_csv(out)}
    assert sorted(got) == sorted(want) == ["qam[inv_temp=1.0]", "qam[inv_temp=3.0]"]
    for label, per_seed in want.items():
        assert float(got[label]["mean_pct"]) == pytest.approx(100 * np.mean(per_seed))
        assert float(got[label]["std_pct"]) == pytest.approx(100 * np.std(per_seed))
        assert got[label]["n_seeds"] == str(len(SEEDS))
    assert _table_labels(out) == sorted(want)
    with open(os.path.join(out, "robust.csv")) as f:
        assert {r["method"] for r in csv.DictReader(f)} == set(want)
    pngs = set(os.listdir(os.path.join(out, "plots")))
    assert {"kl_qam_inv_temp_1.0_.png", "kl_qam_inv_temp_3.0_.png"} <= pngs
    with open(os.path.join(out, "report.md")) as f:
        assert "eps=" not in f.read()


def test_one_value_per_directory_is_two_rows_not_duplicates(tmp_path):
    # The same task and seeds at two inv_temps, each in its own run directory.
    root = str(tmp_path)
    paths = [
        launcher_run(root, f"qam-{t}", "qam", "inv_temp", (t,), sweep_evals("inv_temp", (t,)))
        for t in (1.0, 3.0)
    ]
    recs = records.eval_records(run_dir.load_runs(paths))
    records.check_duplicates(recs)
    assert {r["label"] for r in recs} == {"qam[inv_temp=1.0]", "qam[inv_temp=3.0]"}
    assert {(r["swept"], r["value"]) for r in recs} == {("inv_temp", 1.0), ("inv_temp", 3.0)}


def test_unswept_and_older_qam_runs_keep_the_plain_label(tmp_path):
    root = str(tmp_path)
    one = launcher_run(root, "new", "qam", "inv_temp", (3.0,), sweep_evals("inv_temp", (3.0,)))
    old_evals = sweep_evals("inv_temp", (1.0,), column=False)  # before QAM's rows had a column
    old = launcher_run(root, "old", "qam", "inv_temp", (1.0,), old_evals, rows_hparam=False)
    runs = run_dir.load_runs([one, old])
    assert [records.swept_hparam(r) for r in runs] == ["inv_temp", None]
    assert {r["label"] for r in records.eval_records(runs[:1])} == {"qam"}
    assert {r["label"] for r in records.eval_records(runs[1:])} == {"qam"}


def test_trqam_budget_sweep_labels_as_before(tmp_path):
    # A launcher run (rows in provenance.json) and a run directory without them report alike.
    budgets = (0.5, 1.0)
    evals = sweep_evals("kl_budget", budgets)
    new = launcher_run(
        str(tmp_path / "a"), "trqam", "trqam", "kl_budget", budgets, evals, kl_budgets=[*budgets]
    )
    old = write_run(str(tmp_path / "b"), "trqam", "trqam", env(A, 1), evals, kl_budgets=[*budgets])
    tables = []
    for p in (new, old):
        out = os.path.join(p, "report")
        assert report.main([p, "--out", out, "--reps", "10", "--no-plots"]) == 0
        assert _table_labels(out) == ["trqam[eps=0.5]", "trqam[eps=1.0]"]
        with open(os.path.join(out, "table.md")) as f:
            tables.append(f.read())
    assert tables[0] == tables[1]


def _trqam_train(budget, online):
    lines = []
    for s in SEEDS:
        for step in (50, 100, 150):
            line = dict(step=step, stage="offline" if step <= 100 else "online", task=1, seed=s)
            line.update(kl_budget=budget, kl_ema=0.3, critic_loss=0.1, q_mean=-1.0)
            line["lambda"] = 1.0
            if step > 100:
                line["kl_budget_online"] = online
            lines.append(line)
    return lines


def f32(value):
    """`value` as the launcher writes row values (float32 arrays, `.item()`)."""
    return np.float32(value).item()


def test_float32_values_are_labelled_by_their_shortest_digits(tmp_path):
    budgets = (f32(0.3), f32(1.0))
    assert budgets[0] == 0.30000001192092896
    evals = sweep_evals("kl_budget", budgets)
    p = launcher_run(str(tmp_path), "trqam", "trqam", "kl_budget", budgets, evals)
    recs = records.eval_records(run_dir.load_runs([p]))
    assert {r["label"] for r in recs} == {"trqam[eps=0.3]", "trqam[eps=1.0]"}


@pytest.mark.parametrize("online", [f32(0.1), 0.5])
def test_an_online_budget_is_named_where_it_differs(tmp_path, online):
    p = launcher_run(
        str(tmp_path), "trqam", "trqam", "kl_budget", (0.5,), sweep_evals("kl_budget", (0.5,)),
        train=_trqam_train(0.5, online),
    )  # fmt: skip
    out = str(tmp_path / "out")
    assert report.main([p, "--out", out, "--reps", "10", "--no-plots"]) == 0
    with open(os.path.join(out, "report.md")) as f:
        md = f.read()
    named = "trqam: kl_budget = 0.5 offline, kl_budget_online = 0.1" in md
    assert named == (online != 0.5)
    fig = plots.kl_figures(run_dir.load_runs([p]))["trqam"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "budget ε=0.5" in legend
    assert ("online budget ε=0.1" in legend) == (online != 0.5)
    plt.close(fig)


def test_rows_sweeping_two_hparams_are_refused_naming_the_file(tmp_path):
    p = launcher_run(str(tmp_path), "qam", "qam", "inv_temp", (1.0,), [])
    path = os.path.join(p, run_dir.PROVENANCE_FILE)
    prov = run_dir.read_json(path)
    prov["rows"]["kl_budget"] = [0.5, 0.5]
    run_dir.write_json(path, prov)
    with pytest.raises(records.ReportError, match="provenance.json: its rows sweep"):
        records.swept_hparam(run_dir.load_run(p))
