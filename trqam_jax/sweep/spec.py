"""What a sweep is: agents, domains, tasks, seeds, the swept values, the root and the overrides,
and each agent's config with the overrides applied (ml_collections' own dotted keys)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

import ml_collections

from trqam_jax import experiment
from trqam_jax.agents import AGENTS
from trqam_jax.data import names
from trqam_jax.data.datasets import parse_env_name

ConfigError = experiment.ConfigError
# The TRQAM paper's table: its 7 methods as config names (those this checkout has take part).
PAPER_AGENTS = ("trqam", "qam", "qam_e", "fql_chunked", "dsrl", "ifql", "cgql")
# Run fields the sweep sets itself (each has its own flag or follows from the plan).
SWEEP_FIELDS = frozenset(("domain", "task", "tasks", "seeds", "kl_budgets", "run_dir"))
SWEEP_FIELDS |= {"init_from", "rows_part", "rows_parts"}
# The hparam `--kl_budgets` gives values of (a shorthand of --swept=kl_budget=...).
KL_BUDGET = "kl_budget"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """agents: config names (configs/<name>.py); domains; tasks; seeds; swept: (hparam, values)
    pairs, the rows of every agent whose swept hparam (`experiment.swept_hparam`) is that one
    (an agent not named: its own value); root: the directory of every run; overrides: (dotted
    config key, value) pairs applied to every config that has the key (one per key)."""

    agents: tuple[str, ...]
    domains: tuple[str, ...]
    tasks: tuple[int, ...]
    seeds: int
    swept: tuple[tuple[str, tuple[float, ...]], ...]
    root: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def values_of(self, config) -> tuple[float, ...]:
        """The values `config`'s agent sweeps in this sweep (() = its own single value)."""
        return dict(self.swept).get(experiment.swept_hparam(config), ())


@functools.cache
def agent_configs() -> tuple[str, ...]:
    """Every agent config of configs/: a module `<agent>[_<preset>].py` with `get_config` whose
    agent is one of `trqam_jax.agents.AGENTS`, in the order of AGENTS (new agents join here)."""
    import configs

    found = []
    for module in pkgutil.iter_modules(configs.__path__):
        get = getattr(importlib.import_module(f"configs.{module.name}"), "get_config", None)
        if get is None or module.name == "resolved":
            continue
        agent = get().agent.agent_name
        if agent in AGENTS and (module.name == agent or module.name.startswith(agent + "_")):
            found.append((AGENTS.index(agent), module.name))
    return tuple(name for _, name in sorted(found))


def parse_agents(text: str) -> tuple[str, ...]:
    """`paper` (the TRQAM table's methods present here), `all`, or comma-separated config names."""
    known = agent_configs()
    if text == "paper":
        chosen = tuple(name for name in PAPER_AGENTS if name in known)
    elif text == "all":
        chosen = known
    else:
        chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise ConfigError(
            f"--agents={text!r}: unknown {', '.join(unknown) or 'empty list'}; use paper, all or "
            f"some of {', '.join(known)}"
        )
    agent_of = {name: base_config_of(name).agent.agent_name for name in chosen}
    for agent in set(agent_of.values()):
        twins = [name for name in chosen if agent_of[name] == agent]
        if len(twins) > 1:
            raise ConfigError(
                f"--agents: {' and '.join(twins)} both run agent {agent!r}, which the report "
                "cannot tell apart; sweep them under different --root directories"
            )
    return chosen


def parse_domains(text: str) -> tuple[str, ...]:
    """`paper` (the 10 domains of the TRQAM table) or comma-separated domain names."""
    if text == "paper":
        return names.PAPER_DOMAINS
    domains = tuple(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not domains:
        raise ConfigError("--domains is empty; use paper or e.g. cube-double-play,scene-play")
    return domains


def parse_numbers(flag: str, text: str, example: str) -> tuple[float, ...]:
    """Comma-separated numbers ("" = none)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"{flag}={text!r}: expected comma-separated numbers, e.g. {flag}={example}"
        ) from None


def parse_swept(kl_budgets: str, swept: Sequence[str]) -> tuple[tuple[str, tuple], ...]:
    """`--kl_budgets=V,...` and `--swept=HPARAM=V,...` flags -> (hparam, values) pairs; the last
    flag of an hparam wins."""
    pairs = {KL_BUDGET: parse_numbers("--kl_budgets", kl_budgets, "0.5,1.0")}
    for text in swept:
        name, sep, values = text.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--swept={text!r}: expected HPARAM=V1,V2,..., e.g. inv_temp=1,3,10")
        pairs[name.strip()] = parse_numbers(f"--swept={name.strip()}", values, "1,3,10")
    return tuple((name, values) for name, values in pairs.items() if values)


def parse_overrides(texts: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """`key=value` texts -> (key, value) pairs, a key given twice keeping its last value; the
    value is a Python literal ((16,16), 3, 0.5, True) or else a string."""
    pairs = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {text!r}: expected key=value, e.g. agent.num_qs=2")
        if key.split(".")[0] in SWEEP_FIELDS:
            raise ConfigError(
                f"--set {key}: the sweep sets config.{key.split('.')[0]} itself; use the sweep's "
                "flags (--domains, --tasks, --seeds, --kl_budgets, --swept, --root)"
            )
        try:
            pairs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pairs[key] = value
    return tuple(pairs.items())


def make_sweep(
    agents: str,
    domains: str,
    tasks: str,
    seeds: int,
    kl_budgets: str,
    root: str,
    overrides: Sequence[str] = (),
    swept: Sequence[str] = (),
) -> Sweep:
    """A checked `Sweep` from the CLI's values: comma-separated agents, domains, tasks and budgets
    ("" = each agent's own), `key=value` overrides, `HPARAM=V1,V2` swept values.

    Raises ConfigError or DataError (an unknown domain or task) naming the value and the fix.
    """
    try:
        task_ids = tuple(int(t) for t in tasks.split(","))
    except ValueError:
        raise ConfigError(
            f"--tasks={tasks!r}: expected comma-separated numbers, e.g. --tasks=1,2,3"
        ) from None
    sweep = Sweep(
        agents=parse_agents(agents),
        domains=parse_domains(domains),
        tasks=task_ids,
        seeds=int(seeds),
        swept=parse_swept(kl_budgets, swept),
        root=root,
        overrides=parse_overrides(overrides),
    )
    if not sweep.tasks or sweep.seeds < 1:
        raise ConfigError(
            f"a sweep needs tasks and seeds >= 1 (got tasks {sweep.tasks}, seeds {sweep.seeds})"
        )
    for domain in sweep.domains:
        for task in sweep.tasks:
            parse_env_name(names.env_name(domain, task))  # unknown names: the fix, close matches
    bases = [base_config_of(name) for name in sweep.agents]
    for key, _ in sweep.overrides:
        if not any(has_field(config, key) for config in bases):
            raise ConfigError(
                f"--set {key}: no config of the sweep ({', '.join(sweep.agents)}) has this field; "
                "see --print_config of experiments.run for the fields"
            )
    hparams = {experiment.swept_hparam(config) for config in bases}
    for name, _ in sweep.swept:
        if name not in hparams and name != KL_BUDGET:  # --kl_budgets stays valid for any agents
            raise ConfigError(
                f"--swept={name}: no agent of the sweep sweeps {name} (they sweep "
                f"{', '.join(sorted(filter(None, hparams))) or 'nothing'})"
            )
    return sweep


def base_config_of(config_name: str, domain: str | None = None) -> ml_collections.ConfigDict:
    """configs/<config_name>.py's config on `domain` (None: its default)."""
    return importlib.import_module(f"configs.{config_name}").get_config(domain)


def has_field(config, key: str) -> bool:
    """Whether `config` has the dotted field `key`."""
    node = config
    for name in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            return False
        node = node[name]
    return True


def agent_config(sweep: Sweep, config_name: str, domain: str) -> ml_collections.ConfigDict:
    """configs/<config_name>.py on `domain` with the sweep's overrides (those it has)."""
    config = base_config_of(config_name, domain)
    for key, value in sweep.overrides:
        if not has_field(config, key):
            continue  # e.g. agent.kl_budget only for TRQAM
        try:
            config.update_from_flattened_dict({key: value})
        except TypeError as err:  # ml_collections names both types
            raise ConfigError(f"--set {key}={value!r}: {err}") from None
    return config
