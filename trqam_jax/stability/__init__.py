"""The stability experiment: TRQAM vs QAM on a contextual bandit with a known answer (issue 8).

The bandit itself is `trqam_jax.bandit`; `python -m experiments.stability` is the CLI.
  - `settings`: the compared agents and every number of a run (`Settings`, `QUICK`).
  - `experiment`: settings, BC pretraining, the vmapped fine-tuning programs with their in-program
    evaluation, the whole run and its outputs.
  - `tables`: settled values of the curves and the table of docs/stability.md.
  - `plots`: the figure.
"""
