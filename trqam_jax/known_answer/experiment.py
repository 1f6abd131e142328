"""The whole known-answer experiment (parts 1-4) and its outputs: results.json, table.md and
known_answer.png (docs/known_answer.md)."""

import dataclasses
import json
import os
import time

import jax
import numpy as np

from trqam_jax import gaussian_tilt as gt
from trqam_jax.known_answer.agent import run_agent
from trqam_jax.known_answer.core import core_rows, run_core, warm_start
from trqam_jax.known_answer.plots import plot
from trqam_jax.known_answer.problem import PROBLEM, Settings, dual_config
from trqam_jax.known_answer.records import (
    agent_records,
    base_swap_records,
    core_records,
    field_jacobians,
    scheme_variants,
)
from trqam_jax.known_answer.tables import markdown_tables


def run(s: Settings):
    """The whole experiment -> (results dict for results.json, arrays for the figure)."""
    root = jax.random.PRNGKey(s.seed)
    warm_key, core_key, agent_key, swap_key = jax.random.split(root, 4)
    timings = {}
    start = time.perf_counter()
    fine0, warm_mse = warm_start(s, warm_key)
    timings["warm_start_s"] = time.perf_counter() - start
    core, arrays = [], {"core": {}}
    for num_steps in s.flow_steps:
        start = time.perf_counter()
        curves, laws, base_laws = run_core(
            num_steps, s, fine0, jax.random.fold_in(core_key, num_steps)
        )
        timings[f"core_K{num_steps}_s"] = time.perf_counter() - start
        core += core_records(s, num_steps, curves, laws, base_laws)
        arrays["core"][num_steps] = {"curves": curves, "ode": laws["ode"]}
    results = {"problem": {k: np.asarray(v).tolist() for k, v in PROBLEM._asdict().items()}}
    results["lam_scale"] = dual_config(s).lam_scale
    results["settings"] = dataclasses.asdict(s)
    results["warm_start_mse"] = warm_mse
    results["core"] = core
    start = time.perf_counter()
    results["scheme_variants"] = scheme_variants(s)
    base = {}
    for num_steps in s.flow_steps:
        exact_base = gt.chain_moments(PROBLEM, gt.zero_field(PROBLEM, num_steps))
        truth = gt.Moments(PROBLEM.mu0, PROBLEM.cov0)
        base[str(num_steps)] = {
            "ode_vs_base_kl": gt.gaussian_kl(exact_base.ode, truth),
            "sde_vs_base_kl": gt.gaussian_kl(exact_base.sde, truth),
        }
    results["exact_base_discretisation"] = base
    timings["closed_forms_s"] = time.perf_counter() - start
    if s.agent_steps:
        start = time.perf_counter()
        agent = run_agent(s, agent_key)
        timings["agent_s"] = time.perf_counter() - start
        results["agent"] = agent_records(s, agent)
        arrays["agent"] = agent
        start = time.perf_counter()
        swap_rows = core_rows(dataclasses.replace(s, budgets=s.agent_budgets, betas=()))
        swap = run_core(
            s.agent_flow_steps, s, agent["base"], swap_key, ref_params=agent["base"], rows=swap_rows
        )
        timings["bc_base_core_s"] = time.perf_counter() - start
        results["bc_base_core"] = base_swap_records(s, *swap)
        results["bc_base_jacobian"] = field_jacobians(s, agent["base"])
        arrays["bc_base_core"] = swap[0]
    results["timings"] = timings
    return results, arrays


def write_outputs(results, arrays, s: Settings, out: str) -> str:
    """results.json, table.md and known_answer.png in `out`; returns the tables."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    tables = markdown_tables(results)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(tables)
    plot(results, arrays, s, os.path.join(out, "known_answer.png"))
    return tables
