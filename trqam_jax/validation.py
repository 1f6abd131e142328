"""Checks of a run config before any work, and which of its fields determine the results.

Every error is a `ConfigError` naming the field, the bad value and the fix.
"""

import math
import os

from trqam_jax import loggers
from trqam_jax.agents import AGENTS


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the fix."""


# Run fields that only extend or observe a run: a resumed run may change them (they are recorded
# in config.json); every other field determines the results and must match to resume.
EXTENDING_FIELDS = frozenset(
    {
        "offline_steps",
        "online_steps",
        "log_interval",
        "eval_interval",
        "save_interval",
        "eval_envs",
        "run_dir",
        "dataset_dir",
        "generate_if_missing",
        "allow_config_change",
        "expect",
        "log_to",
    }
)

_POSITIVE_INTS = ("seeds", "steps_per_call", "log_interval", "eval_interval", "save_interval")
_NON_NEGATIVE_INTS = ("bc_steps", "offline_steps", "online_steps", "start_training")
_AGENT_RULES = {
    # name: (test, what it must be)
    "lr": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "horizon": (lambda v: v >= 1, ">= 1"),
    "num_qs": (lambda v: v >= 1, ">= 1"),
    "flow_steps": (lambda v: v >= 1, ">= 1"),
    "flow_unroll": (lambda v: v >= 1, ">= 1"),
    "discount": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "rho": (lambda v: v >= 0, ">= 0"),
    "tau": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "kl_budget": (lambda v: v > 0, "> 0"),
    "kl_budget_online": (lambda v: v is None or v > 0, "> 0 (or None: the offline budget)"),
    "inv_temp": (lambda v: v > 0, "> 0"),
    "eta_lambda": (lambda v: v > 0, "> 0"),
    "kl_ema_coef": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "kl_clip_coef": (lambda v: v > 0, "> 0"),
    "lambda_min": (lambda v: v > 0, "> 0"),
    "lam_scale": (lambda v: v > 0, "> 0"),
    "alpha": (lambda v: v >= 0, ">= 0"),
    "edit_scale": (lambda v: v >= 0, ">= 0"),
    "kappa": (lambda v: 0 < v < 1, "in (0, 1)"),
    "num_samples": (lambda v: v >= 1, ">= 1"),
    "noise_scale": (lambda v: v > 0, "> 0"),
    "guidance_coef": (lambda v: v >= 0, ">= 0"),
    "noisy_coef": (lambda v: v >= 0, ">= 0"),
}
_HIDDEN_DIMS = ("actor_hidden_dims", "critic_hidden_dims")
# At most this many layers: a longer tuple is almost always a typo (the paper's nets have 4).
MAX_LAYERS = 8


def _fail(field: str, value, need: str, fix: str = "") -> None:
    raise ConfigError(f"config.{field}={value!r}: must be {need}{'; ' + fix if fix else ''}")


def check_run_config(config) -> None:
    """Raise `ConfigError` for the first field of the run or agent config that cannot run."""
    agent = config.agent
    if agent.agent_name not in AGENTS:
        raise ConfigError(
            f"unknown agent {agent.agent_name!r} (config.agent.agent_name); expected one of "
            f"{', '.join(AGENTS)}"
        )
    for name in _POSITIVE_INTS + ("shard_interval", "utd"):
        if config[name] < 1:
            _fail(name, config[name], ">= 1")
    for name in _NON_NEGATIVE_INTS + ("eval_episodes",):
        if config[name] < 0:
            _fail(name, config[name], ">= 0")
    if config.eval_envs < 1:
        _fail("eval_envs", config.eval_envs, ">= 1", "it bounds the evaluation environments")
    for name in ("bc_steps", "offline_steps", "log_interval", "eval_interval", "save_interval"):
        if config[name] % config.steps_per_call:
            _fail(
                name,
                config[name],
                f"a multiple of config.steps_per_call={config.steps_per_call}",
                "the compiled loop runs whole calls",
            )
    tasks = tuple(config.tasks)
    if any(not isinstance(t, int) or t < 1 for t in tasks) or len(set(tasks)) < len(tasks):
        _fail("tasks", tasks, "distinct task numbers >= 1", "e.g. '(1,2,3,4,5)'; () = config.task")
    if config.task < 1:
        _fail("task", config.task, ">= 1")
    if not 0 < config.dataset_proportion <= 1:
        _fail("dataset_proportion", config.dataset_proportion, "in (0, 1]")
    for budget in config.kl_budgets:
        if not budget > 0:
            _fail("kl_budgets", tuple(config.kl_budgets), "positive budgets", "e.g. (0.5, 1.0)")
    if config.init_from and not os.path.exists(config.init_from):
        raise ConfigError(
            f"config.init_from={config.init_from!r} does not exist; pass the run directory of "
            "a run with bc_steps > 0, or a reference BC checkpoint params_<step>.pkl (or its "
            "directory)"
        )
    _check_log_to(config.log_to)
    for name, (test, need) in _AGENT_RULES.items():
        if name in agent and not (_finite(agent[name]) and test(agent[name])):
            _fail(f"agent.{name}", agent[name], need)
    if "lambda_max" in agent and not agent.lambda_min < agent.lambda_max:
        _fail("agent.lambda_max", agent.lambda_max, f"> agent.lambda_min={agent.lambda_min}")
    if "lam_init" in agent and not agent.lambda_min <= agent.lam_init <= agent.lambda_max:
        _fail("agent.lam_init", agent.lam_init, "within [agent.lambda_min, agent.lambda_max]")
    for name in _HIDDEN_DIMS:
        dims = tuple(agent[name])
        if not dims or len(dims) > MAX_LAYERS or min(dims) < 1:
            _fail(
                f"agent.{name}",
                dims,
                f"1 to {MAX_LAYERS} positive widths",
                "e.g. '(512,512,512,512)'",
            )


def _check_log_to(value) -> None:
    allowed = ", ".join(loggers.NAMES)
    need = f'a comma-separated subset of {allowed} ("" = none)'
    if not isinstance(value, str):
        _fail("log_to", value, need)
    unknown = [name for name in loggers.parse_log_to(value) if name not in loggers.NAMES]
    if unknown:
        _fail("log_to", value, need, f"unknown logger {', '.join(map(repr, unknown))}")


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def result_fields(config_dict: dict) -> dict:
    """The flattened fields of a config (as in config.json) that determine the results."""
    flat = {}

    def walk(prefix, node):
        for name, value in node.items():
            path = f"{prefix}{name}"
            if isinstance(value, dict):
                walk(f"{path}.", value)
            elif path not in EXTENDING_FIELDS:
                flat[path] = list(value) if isinstance(value, list | tuple) else value

    walk("", config_dict)
    flat.pop("env_name", None)  # derived from domain and task
    return flat


def config_differences(saved: dict, requested: dict) -> dict:
    """field -> (saved, requested) for the result-determining fields that differ.

    A field the saved config lacks was added by a later version of this code, whose default
    keeps the earlier behaviour (e.g. `tasks`), so it is not a difference.
    """
    old, new = result_fields(saved), result_fields(requested)
    return {
        name: (old.get(name), new.get(name)) for name in sorted(old) if old[name] != new.get(name)
    }
