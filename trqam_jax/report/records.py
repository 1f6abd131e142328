"""Records: the evaluations of many runs as flat dicts, their row labels, and one step per seed.

A record is one line of eval.jsonl joined with its run's identity (see `eval_records`); a label
is a table row: the agent, plus `[name=X]` when its runs sweep several values of the agent's
swept hparam (`swept_hparam`: `trqam[eps=0.5]` for kl_budget, `qam[inv_temp=3.0]`);
`select_scores` picks one evaluation per (label, domain, task, seed) and nests them into scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from trqam_jax.data.names import PAPER_DOMAINS, domain_and_task
from trqam_jax.run_dir import Run

AT_CHOICES = ("last", "offline_end", "final")
ALL = "all"  # the column (and published domain) averaging over the domains


class ReportError(ValueError):
    """Input the report cannot tabulate; the message names the runs and the fix."""


# ----------------------------------------------------------------------------------------------
# Domain order, the swept hparam of a run and row labels


def _domain_order(domain: str) -> int:
    return PAPER_DOMAINS.index(domain) if domain in PAPER_DOMAINS else len(PAPER_DOMAINS)


def order_domains(domains: Iterable[str]) -> list[str]:
    """Paper column order first, then unknown domains alphabetically."""
    return sorted(set(domains), key=lambda d: (_domain_order(d), d))


# provenance.json `rows` (experiment._run) holds this bookkeeping, the values of the agent's swept
# hparam (its module's SWEPT) per row and, with an online stage, `<hparam>_online` per row.
_ROW_BOOKKEEPING = ("seeds", "row_ids", "tasks")
ONLINE_SUFFIX = "_online"
# Runs whose provenance.json lists no rows were written when the launcher swept kl_budget only.
LEGACY_SWEPT = "kl_budget"
# How a label names the swept hparam: the paper's epsilon for TRQAM's budget, else its own name.
LABEL_NAMES = {"kl_budget": "eps"}


def swept_hparam(run: Run) -> str | None:
    """The hparam `run`'s rows sweep, as its own files name it (no agent import: no JAX).

    The per-row column provenance.json `rows` lists beside seeds, row ids and tasks (`kl_budget`
    for TRQAM, `inv_temp` for QAM, also when only one value was run), None when there is none;
    for a run whose provenance.json lists no rows, LEGACY_SWEPT when its lines carry it.
    Raises ReportError for rows that name several.
    """
    rows = run.provenance.get("rows")
    if rows is None:
        carried = any(r.get(LEGACY_SWEPT) is not None for r in run.evals + run.train)
        return LEGACY_SWEPT if carried else None
    names = [k for k in rows if k not in _ROW_BOOKKEEPING and not k.endswith(ONLINE_SUFFIX)]
    if len(names) > 1:
        raise ReportError(
            f"{run.path}/provenance.json: its rows sweep {sorted(names)}; a run sweeps one hparam"
            " (pass run directories written by experiments.run)"
        )
    return names[0] if names else None


def format_value(value: float) -> str:
    """`value` as labels print it: str(float) keeps `1.0` recognisable as a swept number (format
    "g" would print `1`); a value that is a float32 (the launcher's rows are) prints its shortest
    float32 digits, `0.3` rather than `0.30000001192092896`."""
    single = np.float32(value)
    return str(single) if float(single) == float(value) else str(float(value))


def line_value(line: dict, hparam: str | None) -> float | None:
    """The value of `hparam` in an eval.jsonl / train_metrics.jsonl line, None without one."""
    return None if hparam is None or line.get(hparam) is None else float(line[hparam])


def swept_agents(runs: Iterable[Run]) -> set[str]:
    """Agents whose runs use more than one value of their swept hparam for the same task.

    Such agents get one table row per value (`trqam[eps=0.5]`, `qam[inv_temp=3.0]`). A value that
    only varies from domain to domain (the paper's per-domain epsilon) is a hyperparameter, not a
    sweep: one row.
    """
    values: dict[tuple[str, str], set] = {}
    for run in runs:
        hparam = swept_hparam(run)
        if hparam is None:
            continue
        seen = values.setdefault((run.agent, run.env_name), set())
        seen.update(v for v in (line_value(r, hparam) for r in run.evals) if v is not None)
        # config.json's kl_budgets holds the values of the agent's swept hparam, whatever its name.
        if len(run.config.get("kl_budgets") or []) > 1:
            seen.update(float(b) for b in run.config["kl_budgets"])
    return {agent for (agent, _), s in values.items() if len(s) > 1}


def row_label(agent: str, hparam: str | None, value: float | None, swept: bool) -> str:
    """`agent`, or `agent[name=value]` for an agent in `swept` (name: LABEL_NAMES or hparam)."""
    if swept and value is not None:
        return f"{agent}[{LABEL_NAMES.get(hparam, hparam)}={format_value(value)}]"
    return agent


def online_values(runs: Sequence[Run]) -> dict[str, set[tuple[str, float, float]]]:
    """{label: {(hparam, offline value, online value)}} where a row's online stage used another
    value of its swept hparam (`<hparam>_online` in its online train_metrics.jsonl lines, e.g.
    TRQAM's `kl_budget_online`) than the one its label and lines name."""
    swept = swept_agents(runs)
    out: dict[str, set] = {}
    for run in runs:
        hparam = swept_hparam(run)
        if hparam is None:
            continue
        for r in run.train:
            value, online = line_value(r, hparam), line_value(r, hparam + ONLINE_SUFFIX)
            if r.get("stage") == "online" and value is not None and online not in (None, value):
                label = row_label(run.agent, hparam, value, run.agent in swept)
                out.setdefault(label, set()).add((hparam, value, online))
    return out


# ----------------------------------------------------------------------------------------------
# Records


def eval_records(runs: Sequence[Run]) -> list[dict]:
    """Flatten the runs' eval.jsonl lines into records.

    Returns a list of dicts with keys: label, agent, swept (the run's swept hparam, str | None),
    value (its value on the line, float | None), domain, task (int), seed (int), step (int),
    stage (str), success (float in 0..1), generated (bool), path, offline_end (int),
    final_step (int).
    BC-stage evaluations are dropped: their steps are counted separately from the fine-tuning
    steps (docs/run_directory.md), so they would collide with offline steps of the same number.
    """
    swept = swept_agents(runs)
    out = []
    for run in runs:
        domain, task = domain_and_task(run.env_name)
        hparam = swept_hparam(run)
        for r in run.evals:
            if r.get("stage") == "bc":
                continue
            value = line_value(r, hparam)
            out.append(
                dict(
                    label=row_label(run.agent, hparam, value, run.agent in swept),
                    agent=run.agent,
                    swept=hparam,
                    value=value,
                    domain=domain,
                    task=int(r.get("task", task)),  # several tasks: one per row
                    seed=int(r["seed"]),
                    step=int(r["step"]),
                    stage=str(r.get("stage", "")),
                    success=float(r["success"]),
                    generated=run.generated,
                    path=run.path,
                    offline_end=run.offline_end,
                    final_step=run.final_step,
                )
            )
    return out


def check_duplicates(records: Sequence[dict]) -> None:
    """Two run directories must not both provide the same (row, task, seed): raise if they do."""
    owner: dict[tuple, str] = {}
    for r in records:
        key = (r["label"], r["domain"], r["task"], r["seed"])
        prev = owner.setdefault(key, r["path"])
        if prev != r["path"]:
            raise ReportError(
                f"{prev} and {r['path']} both hold {r['label']} {r['domain']} task{r['task']}"
                f" seed {r['seed']}: pass only one of them (reruns of the same seed are not"
                " averaged)."
            )


def expected_seeds(runs: Sequence[Run], records: Sequence[dict]) -> dict[str, set[int]]:
    """Seeds every row should have on every task: seeds seen anywhere in the row, plus
    range(config.seeds) of its runs whose agent sweeps no values (a seed that crashed before its
    first evaluation then still shows up as missing). Returns {label: set of seed ids}."""
    out: dict[str, set[int]] = {}
    for r in records:
        out.setdefault(r["label"], set()).add(r["seed"])
    swept = swept_agents(runs)
    by_path: dict[str, set[str]] = {}
    for r in records:
        by_path.setdefault(r["path"], set()).add(r["label"])
    for run in runs:
        if run.agent in swept or "seeds" not in run.config:
            continue  # seed ids of a sweep need not start at 0 for every value
        for label in by_path.get(run.path, ()):
            out[label].update(range(int(run.config["seeds"])))
    return out


def generated_domains(records: Sequence[dict]) -> dict[str, set[str]]:
    """{label: domains with at least one run on locally generated data}."""
    out: dict[str, set[str]] = {}
    for r in records:
        if r["generated"]:
            out.setdefault(r["label"], set()).add(r["domain"])
    return out


# ----------------------------------------------------------------------------------------------
# Choosing the evaluation step


def select_scores(
    records: Sequence[dict], at: str = "last", step: int | None = None
) -> tuple[dict, list[dict], list[str]]:
    """Pick one evaluation per (label, domain, task, seed).

    at: `last` (the seed's last evaluation), `offline_end` (step == config offline_steps),
      `final` (step == offline_steps + online_steps); ignored when `step` is given (exact match).
    Returns (scores, chosen, missing):
      scores  {label: {domain: {task: {seed: success}}}}
      chosen  the selected records (to report which steps were used)
      missing one message per (label, domain, task, seed) that has evaluations but none at the
              requested step.
    When two records share the step (the boundary evaluated as both `offline` and `online`),
    `offline_end` keeps the offline one and the other choices keep the later line.
    """
    if at not in AT_CHOICES:
        raise ReportError(f"--at must be one of {AT_CHOICES}, got {at!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], r["domain"], r["task"], r["seed"]), []).append(r)
    scores: dict = {}
    chosen, missing = [], []
    for key, rs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        if step is not None:
            target, what = int(step), f"step {step}"
        elif at == "offline_end":
            target, what = rs[0]["offline_end"], f"the offline end (step {rs[0]['offline_end']})"
        elif at == "final":
            target, what = rs[0]["final_step"], f"the final step ({rs[0]['final_step']})"
        else:
            target, what = max(r["step"] for r in rs), "last"
        hits = [r for r in rs if r["step"] == target]
        if not hits:
            label, domain, task, seed = key
            missing.append(
                f"{label} / {domain} task{task} seed {seed}: no evaluation at {what}"
                f" (last evaluated step {max(r['step'] for r in rs)})"
            )
            continue
        if at == "offline_end" and step is None:
            hits = [r for r in hits if r["stage"] == "offline"] or hits
        pick = hits[-1]
        chosen.append(pick)
        label, domain, task, seed = key
        scores.setdefault(label, {}).setdefault(domain, {}).setdefault(task, {})[seed] = pick[
            "success"
        ]
    return scores, chosen, missing


def offline_only_labels(chosen: Sequence[dict]) -> set[str]:
    """Labels whose every chosen evaluation is of a run without an online stage (its final step
    is its offline end): beside published offline-to-online numbers they must say so."""
    labels: dict[str, bool] = {}
    for r in chosen:
        offline = r["final_step"] == r["offline_end"]
        labels[r["label"]] = labels.get(r["label"], True) and offline
    return {label for label, offline in labels.items() if offline}


def _sort_key(key: tuple) -> tuple:
    label, domain, task, seed = key
    return (label, _domain_order(domain), domain, task, seed)
