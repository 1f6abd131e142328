"""The report: run directories aggregated the way the papers do, beside published numbers.

Entry point: `write_report(paths, out, plots=True, ...) -> Written` (module `build`), which takes
run directories and sweep roots; `experiments.report` is its command line and the sweep calls it.
Everything else is a pure function of plain Python containers and numpy arrays; the run
directories are read by `trqam_jax.run_dir.load_run` (docs/run_directory.md). No JAX import:
the report must run on a laptop without the training stack.

Vocabulary used throughout:
  record   one line of eval.jsonl joined with its run's identity (a flat dict, see
           `records.eval_records`).
  label    a table row: the agent name, plus `[eps=X]` / `[inv_temp=X]` when that agent's runs
           sweep several values of its swept hparam (`records.swept_hparam`).
  scores   nested dict `{label: {domain: {task: {seed: success}}}}`, success in 0..1, at one
           evaluation step per (label, domain, task, seed) chosen by `records.select_scores`.
  mark     a run the report cannot show in full, with its status and reason (`runs.Mark`).

Modules, in the order the report uses them:
  build       write_report: every file of the report
  runs        the runs of the given paths (sweep roots expanded), their status and marks
  records     records, swept hparams and labels, expected seeds, the evaluation step
  tables      the papers' table: DomainScore / RowSummary, its rows for table.md and table.csv
  aggregates  IQM, mean and optimality gap with stratified bootstrap CIs (rliable)
  curves      success over steps with a bootstrap band; train_metrics series and collapses
  published   the published numbers shipped in trqam_jax/published/
  sections    the sections of report.md; render: their markdown
  plots       the figures (matplotlib, imported only when figures are wanted)
"""

from trqam_jax.report.build import USER_ERRORS, Written, write_report

__all__ = ["USER_ERRORS", "Written", "write_report"]
