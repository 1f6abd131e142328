"""Report tool: aggregates on synthetic run directories checked against hand computations."""

import csv
import json
import math
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

from experiments import report
from trqam_jax import run_dir
from trqam_jax.data.names import PAPER_DOMAINS
from trqam_jax.report import aggregates, curves, published, records, tables

SQ23 = math.sqrt(2.0 / 3.0)  # std (ddof=0) of three equally spaced values is spacing * sqrt(2/3)


def write_run(
    root,
    name,
    agent,
    env,
    evals,
    data_source="official",
    seeds=None,
    offline_steps=100,
    online_steps=50,
    train=(),
    kl_budgets=None,
    summary=None,
    **config,
):
    """A run directory written with the launcher's own writers (trqam_jax/run_dir.py).

    evals: eval.jsonl dicts (none: no eval.jsonl); summary: summary.json (None: none written);
    config: further config.json fields.
    """
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "checkpoints"))
    cfg = dict(
        agent=agent,
        env_name=env,
        seeds=seeds if seeds is not None else len({e["seed"] for e in evals}),
        bc_steps=10,
        offline_steps=offline_steps,
        online_steps=online_steps,
        **config,
    )
    if kl_budgets is not None:
        cfg["kl_budgets"] = kl_budgets
    run_dir.write_json(os.path.join(d, run_dir.CONFIG_FILE), cfg)
    provenance = dict(data_source=data_source, dataset_dir="/x", versions={}, devices=[])
    run_dir.write_json(os.path.join(d, run_dir.PROVENANCE_FILE), provenance)
    if evals:
        rows = [dict(dict(stage="offline", episodes=50), **e) for e in evals]
        run_dir.append_jsonl(os.path.join(d, run_dir.EVAL_FILE), rows)
    if train:
        run_dir.append_jsonl(os.path.join(d, run_dir.TRAIN_METRICS_FILE), list(train))
    if summary is not None:
        run_dir.write_json(os.path.join(d, run_dir.SUMMARY_FILE), summary)
    return d


def env(domain, task):
    return f"{domain}-singletask-task{task}-v0"


A, B = "cube-double-play", "scene-play"


def val_a(task, seed):
    return 0.1 * task + 0.05 * seed  # per-seed mean over tasks 1..5: 0.30 + 0.05 seed


def val_b(task, seed):
    return 0.2 + 0.1 * seed + 0.02 * (task - 3)  # per-seed mean: 0.2 + 0.1 seed


def build_sweep(root, agent="qam", seeds=(0, 1, 2), skip=(), data_source=None, step=100):
    """Two domains x 5 tasks; `skip` holds (domain, task) or (domain, task, seed) to leave out."""
    paths = []
    for domain, fn in ((A, val_a), (B, val_b)):
        for task in range(1, 6):
            if (domain, task) in skip:
                continue
            ev = [
                dict(step=step, seed=s, success=fn(task, s))
                for s in seeds
                if (domain, task, s) not in skip
            ]
            src = (data_source or {}).get(domain, "official")
            paths.append(
                write_run(
                    root, f"{agent}-{domain}-{task}", agent, env(domain, task), ev, src, len(seeds)
                )
            )
    return paths


def table_for(paths, **kw):
    runs = run_dir.load_runs(paths)
    recs = records.eval_records(runs)
    scores, chosen, missing = records.select_scores(recs, **kw)
    rows = tables.summarize(
        scores, records.expected_seeds(runs, recs), records.generated_domains(recs)
    )
    return {r.label: r for r in rows}, chosen, missing, recs, scores


def test_domain_means_std_and_all_match_hand_computation(tmp_path):
    rows, *_ = table_for(build_sweep(str(tmp_path)))
    row = rows["qam"]
    a, b = row.domains[A], row.domains[B]
    # A: per-seed means 0.30, 0.35, 0.40; B: 0.2, 0.3, 0.4.
    assert a.per_seed == pytest.approx({0: 0.30, 1: 0.35, 2: 0.40})
    assert a.mean == pytest.approx(0.35) and a.std == pytest.approx(0.05 * SQ23)
    assert b.mean == pytest.approx(0.30) and b.std == pytest.approx(0.10 * SQ23)
    assert row.all_mean == pytest.approx(0.325)
    # per-seed mean over domains: 0.25, 0.325, 0.40
    assert row.all_std == pytest.approx(0.075 * SQ23)
    assert not a.partial and not b.partial
    # ddof=1 is the sample std
    rows1 = tables.summarize_row("qam", {A: {1: {0: 0.2, 1: 0.4}}}, ddof=1)
    assert rows1.domains[A].std == pytest.approx(math.sqrt(0.02))


def test_step_selection(tmp_path):
    evs = [
        dict(step=50, seed=0, success=0.1),
        dict(step=100, seed=0, success=0.2, stage="offline"),
        dict(step=100, seed=0, success=0.25, stage="online"),
        dict(step=150, seed=0, success=0.3, stage="online"),
        # BC steps are counted separately and must not shadow fine-tuning step 50
        dict(step=50, seed=0, success=0.9, stage="bc"),
    ]
    p = write_run(str(tmp_path), "r", "fql", env(A, 1), evs)
    for kw, want in [
        (dict(at="last"), 0.3),
        (dict(at="offline_end"), 0.2),
        (dict(at="final"), 0.3),
        (dict(step=50), 0.1),
    ]:
        rows, chosen, missing, *_ = table_for([p], **kw)
        assert rows["fql"].domains[A].per_seed == {0: pytest.approx(want)}, kw
        assert not missing
    rows, chosen, missing, *_ = table_for([p], step=75)
    assert rows == {} and "no evaluation at step 75" in missing[0]


def test_iqm_and_optimality_gap_against_numpy(tmp_path):
    rng = np.random.default_rng(3)
    mat = rng.uniform(0, 1.2, size=(4, 10))  # 40 entries: the IQM is the mean of sorted[10:30]
    direct_iqm = np.sort(mat.ravel())[10:30].mean()
    direct_gap = np.mean(1.0 - np.minimum(mat, 1.0))
    out, note = aggregates.robust_aggregates({"x": mat}, reps=50, seed=0)
    iqm, lo, hi = out["x"]["IQM"]
    assert iqm == pytest.approx(direct_iqm)
    assert lo <= iqm <= hi and hi - lo > 0
    gap = out["x"]["optimality gap"]
    assert gap[0] == pytest.approx(direct_gap) and gap[1] <= gap[0] <= gap[2]
    assert out["x"]["mean"][0] == pytest.approx(mat.mean())
    assert "bootstrap" in note or "rliable" in note
    # reproducible for a fixed seed; the numpy fallback resamples runs within each task
    again, _ = aggregates.robust_aggregates({"x": mat}, reps=50, seed=0)
    assert again == out
    lohi = aggregates._numpy_stratified_bootstrap(mat, lambda s: np.array([s.mean()]), 200, 0.95, 0)
    assert lohi[0, 0] < mat.mean() < lohi[1, 0]
    # a constant task stays constant under within-task resampling
    const = np.tile(np.arange(5.0), (3, 1))
    lohi = aggregates._numpy_stratified_bootstrap(const, lambda s: s.mean(0), 20, 0.95, 0)
    assert np.allclose(lohi, np.arange(5.0))


def test_score_matrix_layout_from_runs(tmp_path):
    paths = build_sweep(str(tmp_path), seeds=(0, 1, 2, 3), skip={(A, 2, 3)})
    _, _, _, _, scores = table_for(paths)
    mat, kept, tasks, dropped = aggregates.score_matrix(scores["qam"])
    assert mat.shape == (3, 10) and kept == [0, 1, 2] and dropped == [3]
    # columns follow the paper's domain order: scene-play before cube-double-play
    assert tasks[0] == f"{B}/task1" and tasks[5] == f"{A}/task1"
    assert mat[2, 6] == pytest.approx(val_a(2, 2)) and mat[1, 0] == pytest.approx(val_b(1, 1))


def test_partial_sweep_is_reported_not_averaged(tmp_path):
    # B lacks task5 entirely; A task3 lacks seed 2; seed 3 is configured but never evaluated.
    paths = build_sweep(str(tmp_path), seeds=(0, 1, 2), skip={(B, 5), (A, 3, 2)})
    # config says 4 seeds for one run: seed 3 crashed before evaluating
    with open(os.path.join(paths[0], "config.json")) as f:
        cfg = json.load(f)
    cfg["seeds"] = 4
    with open(os.path.join(paths[0], "config.json"), "w") as f:
        json.dump(cfg, f)
    rows, *_ = table_for(paths)
    a, b = rows["qam"].domains[A], rows["qam"].domains[B]
    # A: seed 2 dropped (lacks task3): mean of 0.30 and 0.35
    assert sorted(a.per_seed) == [0, 1] and a.seeds_dropped == {2: [3]}
    assert a.seeds_missing == (3,)
    assert a.mean == pytest.approx(0.325) and a.std == pytest.approx(0.025)
    # B: mean over tasks 1..4 per seed: 0.2 + 0.1 s + 0.02 * mean(-2,-1,0,1) = 0.19 + 0.1 s
    assert b.tasks_missing == (5,) and b.partial
    assert b.mean == pytest.approx(0.29)
    assert rows["qam"].all_std is None  # the domains kept different seeds
    lines = tables.partial_report(list(rows.values()), [A, B])
    text = "\n".join(lines)
    assert f"qam / {B}: tasks [5] have no evaluation" in text
    assert f"qam / {A}: seed 2 dropped" in text and "tasks [3]" in text
    assert f"qam / {A}: seeds [3] have no evaluation" in text

    out = tmp_path / "out"
    assert report.main([*paths, "--out", str(out), "--reps", "20", "--no-plots"]) == 0
    md = (out / "report.md").read_text()
    assert "tasks [5] have no evaluation" in md and tables.PARTIAL_MARK in md
    assert "Nothing missing" not in md


def test_generated_data_is_marked(tmp_path):
    paths = build_sweep(str(tmp_path), data_source={B: "generated"})
    rows, *_ = table_for(paths)
    assert rows["qam"].generated_domains == (B,)
    out = tmp_path / "out"
    assert report.main([*paths, "--out", str(out), "--reps", "10", "--no-plots"]) == 0
    table = (out / "table.md").read_text()
    qam_line = next(ln for ln in table.splitlines() if ln.startswith("| qam"))
    assert f"qam {tables.GEN_MARK}" in qam_line and "generated data" in qam_line
    assert "locally generated datasets" in table
    with open(out / "table.csv") as f:
        recs = [r for r in csv.DictReader(f) if r["source"] == "this repo"]
    gen = {r["domain"]: r["generated"] for r in recs}
    assert gen == {A: "False", B: "True", "all": "True"}


def test_official_data_is_not_marked(tmp_path):
    out = tmp_path / "out"
    paths = build_sweep(str(tmp_path))
    assert report.main([*paths, "--out", str(out), "--reps", "10", "--no-plots"]) == 0
    assert "generated" not in (out / "table.md").read_text()


def test_kl_budget_sweep_gives_separate_rows(tmp_path):
    evs = []
    for s in range(2):
        evs.append(dict(step=100, seed=s, kl_budget=0.5, success=0.2 + 0.1 * s))
        evs.append(dict(step=100, seed=s, kl_budget=1.0, success=0.6 + 0.1 * s))
    p = write_run(str(tmp_path), "sweep", "trqam", env(A, 1), evs, kl_budgets=[0.5, 1.0])
    q = write_run(str(tmp_path), "other", "fql", env(A, 1), [dict(step=100, seed=0, success=0.4)])
    rows, *_ = table_for([p, q])
    assert set(rows) == {"trqam[eps=0.5]", "trqam[eps=1.0]", "fql"}
    assert rows["trqam[eps=0.5]"].domains[A].mean == pytest.approx(0.25)
    assert rows["trqam[eps=1.0]"].domains[A].mean == pytest.approx(0.65)
    assert rows["trqam[eps=1.0]"].domains[A].std == pytest.approx(0.05)


def test_per_domain_budget_is_one_row(tmp_path):
    # The paper's per-domain epsilon (0.5 on cube-triple, 1.0 elsewhere) is not a sweep.
    p = write_run(
        str(tmp_path), "a", "trqam", env(A, 1), [dict(step=1, seed=0, kl_budget=1.0, success=1)]
    )
    q = write_run(
        str(tmp_path),
        "b",
        "trqam",
        env("cube-triple-play", 1),
        [dict(step=1, seed=0, kl_budget=0.5, success=0)],
    )
    rows, *_ = table_for([p, q])
    assert set(rows) == {"trqam"}


def test_published_rows_and_sources(tmp_path, capsys):
    paths = build_sweep(str(tmp_path), step=100)  # offline_steps=100: this is the offline end
    out = tmp_path / "out"
    assert report.main([*paths, "--out", str(out), "--reps", "10", "--no-plots"]) == 0
    table = (out / "table.md").read_text()
    assert "arXiv 2605.27079" in table and "arXiv 2601.14234" in table
    trqam = next(ln for ln in table.splitlines() if ln.startswith("| TRQAM |"))
    assert "| 81 ± 3 | 68 |" in trqam  # c2 = 81±3, all = 68 in the paper
    with open(out / "table.csv") as f:
        pub = [r for r in csv.DictReader(f) if r["source"].startswith("published")]
    qam_c2 = [
        r for r in pub if r["method"] == "QAM" and r["domain"] == A and "2601.14234" in r["source"]
    ]
    assert float(qam_c2[0]["mean_pct"]) == pytest.approx(64.2)
    # these runs never reached their final step (150): refused, naming every hole
    out2 = tmp_path / "out2"
    argv = [*paths, "--out", str(out2), "--at", "final", "--no-plots"]
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert "no evaluation at the final step (150) (last evaluated step 100)" in err
    # at the final step the QAM release's final numbers are used and the offline table is not
    out3 = tmp_path / "out3"
    evs = [dict(step=150, seed=0, success=0.5)]
    p = write_run(str(tmp_path), "fin", "qam", env(A, 1), evs)
    assert report.main([p, "--out", str(out3), "--at", "final", "--reps", "5", "--no-plots"]) == 0
    t3 = (out3 / "table.md").read_text()
    assert "99.73 ± 0.34" in t3 and "2605.27079" not in t3  # QAM c2 final in the release


def test_published_csvs_parse():
    pub = published.load_published()
    tr = [p for p in pub if p["source"] == published.TRQAM_SOURCE]
    assert len(tr) == 7 * 11
    assert {p["domain"] for p in tr} == set(PAPER_DOMAINS) | {"all"}
    qam = [p for p in pub if p["source"] != published.TRQAM_SOURCE]
    # 17 methods x 11 domains x 2 phases, less RLPD's offline end (online-only method)
    assert len(qam) == 17 * 11 * 2 - 11
    assert all(np.isfinite(p["mean_pct"]) for p in pub)


def test_bad_input_is_one_line_naming_the_path(tmp_path, capsys):
    def error(*argv):
        assert report.main([*argv, "--out", str(tmp_path / "o"), "--no-plots"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        return err

    assert f"{tmp_path / 'nope'}: not a directory" in error(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: not a run directory" in error(str(empty))
    p = write_run(str(tmp_path), "r", "qam", env(A, 1), [dict(step=1, seed=0, success=0.5)])
    with open(os.path.join(p, "eval.jsonl"), "a") as f:
        f.write('{"step": 2, "se\n')
    assert f"{p}/eval.jsonl:2: not valid JSON" in error(p)
    os.remove(os.path.join(p, "provenance.json"))
    assert f"{p}/provenance.json: missing" in error(p)
    # --out is only implied for a single sweep root
    q = write_run(str(tmp_path), "q", "qam", env(A, 1), [dict(step=1, seed=0, success=0.5)])
    assert report.main([q, "--no-plots"]) == 2
    assert "--out is needed" in capsys.readouterr().err


def test_duplicate_seeds_across_runs_are_refused(tmp_path):
    ev = [dict(step=1, seed=0, success=0.5)]
    p = write_run(str(tmp_path), "a", "qam", env(A, 1), ev)
    q = write_run(str(tmp_path), "b", "qam", env(A, 1), ev)
    with pytest.raises(records.ReportError, match="pass only one of them"):
        records.check_duplicates(records.eval_records(run_dir.load_runs([p, q])))


def test_sweep_directory_is_expanded_with_its_parts(tmp_path):
    build_sweep(str(tmp_path))
    parts = [
        write_run(str(tmp_path / "qam-split"), f"part{i}", "qam", env(A, 1), []) for i in range(2)
    ]
    found = run_dir.expand_run_dirs([str(tmp_path)])
    assert len(found) == 12 and set(parts) <= set(found)


def _train(seeds, steps, budget, collapse_seed=None):
    out = []
    for s in seeds:
        for st in steps:
            q = -10.0 - st / 10
            loss = 0.1 + 0.01 * s
            if s == collapse_seed and st >= steps[-2]:
                q, loss = 1e6 * st, "NaN"
            out.append(
                dict(
                    step=st,
                    stage="offline" if st <= 100 else "online",
                    seed=s,
                    kl_budget=budget,
                    critic_loss=loss,
                    q_mean=q,
                    kl=budget * 1.3,
                    kl_ema=budget * (1 - math.exp(-st / 40)),
                    **{"lambda": 1.0 + st / 100},
                )
            )
    return out


def test_plots_are_written_and_not_blank(tmp_path):
    steps = [25, 50, 75, 100, 125, 150]
    paths = []
    for domain in (A, B):
        for task in (1, 2):
            evs = [
                dict(
                    step=st,
                    seed=s,
                    kl_budget=1.0,
                    success=min(1.0, st / 150 * (0.5 + 0.2 * s)),
                    stage="offline" if st <= 100 else "online",
                )
                for s in range(3)
                for st in steps
            ]
            tr = _train(range(3), steps, 1.0, collapse_seed=2 if domain == B else None)
            paths.append(
                write_run(
                    str(tmp_path), f"t-{domain}-{task}", "trqam", env(domain, task), evs, train=tr
                )
            )
    out = tmp_path / "out"
    assert report.main([*paths, "--out", str(out), "--reps", "20"]) == 0
    pngs = sorted(os.listdir(out / "plots"))
    assert pngs == ["critic_trqam.png", "kl_trqam.png", "success.png"]
    for name in pngs:
        img = mpimg.imread(out / "plots" / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 200
        assert float(np.var(img[..., :3])) > 1e-3, name
    md = (out / "report.md").read_text()
    collapse = md.split("## Critic collapse")[1]
    assert f"trqam / {B} task1 seed 2: critic_loss is non-finite from step 125" in collapse
    assert "![success.png](plots/success.png)" in md


def test_success_curve_and_band():
    recs = [
        dict(label="x", domain=A, task=t, seed=s, step=st, success=0.1 * s + 0.01 * t)
        for t in (1, 2)
        for s in (0, 1)
        for st in (10, 20)
    ]
    recs = [r for r in recs if not (r["seed"] == 1 and r["task"] == 2 and r["step"] == 20)]
    steps, per_seed = curves.success_curve(recs, "x", A)
    assert list(steps) == [10, 20]
    assert per_seed[0] == pytest.approx([0.015, 0.015])
    assert per_seed[1, 0] == pytest.approx(0.115) and np.isnan(per_seed[1, 1])
    mean, lo, hi = curves.bootstrap_band(per_seed, reps=100)
    assert mean == pytest.approx([0.065, 0.015])
    assert lo[0] <= mean[0] <= hi[0] and lo[1] == hi[1] == pytest.approx(0.015)
