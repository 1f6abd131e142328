"""Report: a sweep root with runs it cannot tabulate, and figures and tables that do not mislead."""

import csv
import math
import os

import matplotlib.pyplot as plt
import matplotlib.text

from experiments import report
from tests.test_report import A, B, env, write_run
from trqam_jax import run_dir
from trqam_jax.report import build, plots, records, runs, tables

SUMMARY = dict(steps=dict(bc_steps=10, offline_steps=100, online_steps=50))


def _evals(seeds, steps=(50, 100, 150), value=0.5):
    return [
        dict(step=st, seed=s, success=value, stage="offline" if st <= 100 else "online")
        for s in seeds
        for st in steps
    ]


def _train(seeds, steps=(50, 100, 150), budget=None, lam=lambda st: 1.0, bad_from=None):
    rows = []
    for s in seeds:
        for st in steps:
            loss = math.nan if bad_from is not None and st >= bad_from else 0.1
            row = dict(step=st, stage="offline" if st <= 100 else "online", task=1, seed=s)
            row.update(critic_loss=loss, q_mean=-10.0, kl_ema=0.5 + 0.1 * s, **{"lambda": lam(st)})
            if budget is not None:
                row["kl_budget"] = budget
            rows.append(row)
    return rows


def _read(*path):
    with open(os.path.join(*path)) as f:
        return f.read()


def build_root(root):
    """A sweep root: its plan, a BC run, a finished run, a run split in two parts, a run with
    evaluation off, a diverged run, a run not evaluated yet, and a planned run never started."""
    planned_root = "somewhere/else/root"  # the plan keeps the root the sweep was started with
    names = ["bc-a", "qam-a", "trqam-a/part0", "trqam-a/part1", "fql-a", "ifql-a", "cgql-a"]
    names.append("dsrl-a")
    os.makedirs(root)
    plan = dict(
        sweep=dict(root=planned_root),
        programs=[dict(name=n, run_dirs=[os.path.join(planned_root, n)]) for n in names],
    )
    run_dir.write_json(os.path.join(root, runs.PLAN_FILE), plan)
    bc_summary = dict(steps=dict(bc_steps=10, offline_steps=0, online_steps=0))
    bc_train = [dict(step=st, stage="bc", seed=0, bc_loss=0.3) for st in (5, 10)]
    write_run(
        root,
        "bc-a",
        "trqam",
        env(A, 1),
        [],
        seeds=2,
        offline_steps=0,
        online_steps=0,
        eval_episodes=0,
        train=bc_train,
        summary=bc_summary,
    )
    write_run(
        root, "qam-a", "qam", env(A, 1), _evals((0, 1)), train=_train((0, 1)), summary=SUMMARY
    )
    for part in (0, 1):
        write_run(
            os.path.join(root, "trqam-a"),
            f"part{part}",
            "trqam",
            env(A, 1),
            _evals((part,), value=0.2 + 0.4 * part),
            seeds=2,
            train=_train((part,), budget=1.0),
            summary=SUMMARY,
        )
    write_run(
        root,
        "fql-a",
        "fql",
        env(A, 1),
        [],
        seeds=2,
        eval_episodes=0,
        train=_train((0, 1)),
        summary=SUMMARY,
    )
    write_run(
        root,
        "ifql-a",
        "ifql",
        env(A, 1),
        _evals((0, 1), steps=(50,)),
        train=_train((0, 1), bad_from=100),
    )
    write_run(root, "cgql-a", "cgql", env(A, 1), [], seeds=2, train=_train((0, 1), steps=(50,)))
    return root


def test_sweep_root_renders_what_it_can_and_marks_the_rest(tmp_path, capsys):
    root = build_root(str(tmp_path / "root"))
    assert report.main([root, "--reps", "10"]) == 0
    out = capsys.readouterr().out
    md = _read(root, "report", "report.md")
    assert "## Marked runs" in out  # printed at the terminal too
    # the diverged run's training is drawn (red X at the NaN), and so is the eval-off run's
    plots_md = md.split("## Plots")[1]
    for name in ("critic_ifql.png", "critic_fql.png", "success.png"):
        assert f"](plots/{name})" in plots_md and os.path.isfile(f"{root}/report/plots/{name}")

    written = build.write_report([root], str(tmp_path / "out"), reps=10, plots=False)
    marks = {os.path.relpath(m.path, root): m for m in written.marks}
    assert {k: m.status for k, m in marks.items()} == {
        "bc-a": runs.BC_ONLY,
        "fql-a": runs.EVAL_OFF,
        "ifql-a": runs.DIVERGED,
        "cgql-a": runs.NO_EVAL,
        "dsrl-a": runs.NOT_STARTED,
    }
    assert "diverged at step 100 (offline: critic_loss non-finite)" in marks["ifql-a"].reason
    assert marks["ifql-a"].shown == runs.SHOWN_CURVES
    assert "last logged step 50 of 150" in marks["cgql-a"].reason
    for rel, m in marks.items():
        assert f"| `{m.path}` | {m.status} | {m.reason} | {m.shown} |" in md, rel
    # the finished runs, both parts of the split one included, are the table
    assert [os.path.relpath(p, root) for p in written.tabulated] == [
        "qam-a",
        "trqam-a/part0",
        "trqam-a/part1",
    ]
    table = _read(tmp_path, "out", "table.md")
    trqam = next(ln for ln in table.splitlines() if ln.startswith("| trqam"))
    # seeds 0.2 and 0.6 from the two parts; partial (†): one task of five
    assert "| 40.0 ± 20.0 † |" in trqam
    assert not any(ln.startswith(("| ifql", "| fql", "| cgql")) for ln in table.splitlines())
    assert written.files[0] == os.path.join(tmp_path, "out", "report.md")


def test_plan_with_nothing_started_is_marked_not_refused(tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(root)
    plan = dict(sweep=dict(root=root), programs=[dict(run_dirs=[os.path.join(root, "qam-a")])])
    run_dir.write_json(os.path.join(root, runs.PLAN_FILE), plan)
    assert report.main([root, "--no-plots"]) == 0
    md = _read(root, "report", "report.md")
    assert "No run has fine-tuning evaluations" in md and "| not started |" in md


def _boundary_lines(ax):
    return {
        line.get_label(): line.get_xdata()[0]
        for line in ax.get_lines()
        if line.get_label().startswith("offline → online")
    }


def test_boundary_only_on_runs_with_an_online_stage(tmp_path):
    on = write_run(
        str(tmp_path), "on", "trqam", env(A, 1), _evals((0,)), train=_train((0,), budget=1.0)
    )
    off_a = write_run(
        str(tmp_path),
        "off-a",
        "qam",
        env(A, 1),
        _evals((0,), (50, 100)),
        online_steps=0,
        train=_train((0,), steps=(50, 100)),
    )
    off_b = write_run(
        str(tmp_path),
        "off-b",
        "trqam",
        env(B, 1),
        _evals((0,), (50, 100)),
        online_steps=0,
        train=_train((0,), budget=1.0, steps=(50, 100)),
    )
    loaded = run_dir.load_runs([on, off_a, off_b])
    fig = plots.success_figure(records.eval_records(loaded), reps=10)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    # qam shares the cube-double panel but has no online stage: the line names its row
    assert _boundary_lines(panels[A]) == {"offline → online (trqam)": 100}
    assert _boundary_lines(panels[B]) == {}  # only an offline-only run here
    plt.close(fig)
    figures = plots.critic_figures(loaded)
    for label, fig in figures.items():
        lines = {ax.get_title(): _boundary_lines(ax) for ax in fig.axes}
        want = {A: {"offline → online": 100}, B: {}} if label == "trqam" else {A: {}}
        assert lines == want, label
        plt.close(fig)


def _texts(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def test_kl_panels_budget_wording_seeds_and_lambda_ticks(tmp_path):
    steps = (10, 20, 30, 40, 50, 60)
    qam = write_run(
        str(tmp_path),
        "qam",
        "qam",
        env(A, 1),
        [],
        seeds=2,
        train=_train((0, 1), steps, lam=lambda st: 1.0 + st / 200),
    )
    wide = _train((0, 1), steps, budget=1.0, lam=lambda st: 10.0 ** (st / 15 - 2))  # 4 decades
    trqam = write_run(str(tmp_path), "trqam", "trqam", env(A, 1), [], seeds=2, train=wide)
    figures = plots.kl_figures(run_dir.load_runs([qam, trqam]))
    qam_text = " ".join(_texts(figures["qam"])).lower()
    for word in ("budget", "trust region", "ε", "dual"):
        assert word not in qam_text, word
    assert "budget ε=1" in _texts(figures["trqam"])
    for label, fig in figures.items():
        fig.canvas.draw()
        kl_ax, lam_ax = fig.axes
        # seeds of one task: one colour, told apart by line style and named in the legend
        data = [ln for ln in kl_ax.get_lines() if len(ln.get_xdata()) == len(steps)]
        assert len({ln.get_color() for ln in data}) == 1
        assert len({ln.get_linestyle() for ln in data}) == 2
        legend = [t.get_text() for t in kl_ax.get_legend().get_texts()]
        assert "seed 0" in legend and "seed 1" in legend
        # λ: a handful of distinct labels, none on minor ticks
        lo, hi = lam_ax.get_ylim()
        labels = [
            t.get_text()
            for t, v in zip(lam_ax.get_yticklabels(), lam_ax.get_yticks(), strict=True)
            if lo <= v <= hi and t.get_text()
        ]
        assert 2 <= len(labels) <= 6 and len(set(labels)) == len(labels), (label, labels)
        assert not any(t.get_text() for t in lam_ax.get_yticklabels(minor=True)), label
        assert lam_ax.get_yscale() == ("log" if label == "trqam" else "linear")
        plt.close(fig)


def test_offline_only_runs_beside_published_final_numbers_say_so(tmp_path):
    final = [dict(step=150, seed=0, success=0.5, stage="online")]
    online = write_run(str(tmp_path), "online", "qam", env(A, 1), final)
    offline = write_run(
        str(tmp_path),
        "offline",
        "trqam",
        env(A, 1),
        [dict(step=100, seed=0, success=0.3)],
        online_steps=0,
    )
    out = tmp_path / "mixed"
    argv = ["--at", "final", "--reps", "5", "--no-plots", "--out"]
    assert report.main([online, offline, *argv, str(out)]) == 0
    table = (out / "table.md").read_text()
    lines = {ln.split(" |")[0]: ln for ln in table.splitlines() if ln.startswith("| ")}
    assert "99.73 ± 0.34" in table  # the QAM release's final (offline-to-online) c2 number
    assert "this repo, offline only" in lines[f"| trqam {tables.OFFLINE_MARK}"]
    assert "| qam | this repo |" in table
    assert f"{tables.OFFLINE_MARK} offline only: these runs have no online stage" in table
    with open(out / "table.csv") as f:
        local = [r for r in csv.DictReader(f) if r["source"] == "this repo"]
    assert {(r["method"], r["offline_only"]) for r in local} == {
        ("trqam", "True"),
        ("qam", "False"),
    }
    # offline-only runs alone at `final`: their final step is the offline end, and the offline
    # numbers are the ones beside them
    out = tmp_path / "alone"
    assert report.main([offline, *argv, str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "Published rows (offline_end)" in table and "99.73" not in table
    assert tables.OFFLINE_MARK not in table


def test_a_summary_older_than_the_config_is_not_finished(tmp_path):
    # A rerun that extends a finished run (online_steps 50 -> 80) keeps the old summary.json
    # until it finishes: the run is still in the table, marked as stopped at its step.
    p = write_run(
        str(tmp_path), "r", "qam", env(A, 1), _evals((0,)), online_steps=80, summary=SUMMARY
    )
    mark = runs.mark(run_dir.load_run(p))
    assert mark.status == runs.STOPPED and mark.shown == runs.SHOWN_TABLE
    assert "last logged step 150 of 180" in mark.reason
