"""The known-answer experiment (issue 17): TRQAM and QAM on a Gaussian base and a quadratic
critic, whose tilt, lambda* and the discretised scheme's fixed point are closed forms
(`trqam_jax.gaussian_tilt`); `python -m experiments.known_answer` is the CLI and
docs/known_answer.md the write-up.
  - `problem`: the committed problem, the settings, the fine field's network and optimizer.
  - `core`: parts 1-2, the core pieces with the exact base field and critic, at one K.
  - `agent`: part 3, the full agent (`agents.bc` then `agents.trqam`).
  - `records`: each run's numbers against the closed forms, the scheme's variants.
  - `experiment`: the whole run and its outputs (results.json, table.md, known_answer.png).
  - `tables`, `plots`: the presentation.
  - `stability_check`: the stability bandit's terminal-KL puzzle (part 4).
"""
