"""OGBench names: the one owner of the env-name format and of the paper's domain list.

A run trains on one single-task environment of a domain's dataset, named dataset-style:
`{domain}-singletask-task{task}-v0`, e.g. `cube-double-play-singletask-task2-v0`; its dataset
files are named `{domain}-v0` (`cube-double-play-v0`).
"""

import re

# The TRQAM paper's 10 OGBench domains, in the column order of its tables, with short codes.
PAPER_DOMAIN_CODES: tuple[tuple[str, str], ...] = (
    ("antmaze-large-navigate", "al"),
    ("antmaze-giant-navigate", "ag"),
    ("humanoidmaze-medium-navigate", "hm"),
    ("humanoidmaze-large-navigate", "hl"),
    ("scene-play", "scene"),
    ("puzzle-3x3-play", "p33"),
    ("puzzle-4x4-play", "p44"),
    ("cube-double-play", "c2"),
    ("cube-triple-play", "c3"),
    ("cube-quadruple-play", "c4"),
)
PAPER_DOMAINS: tuple[str, ...] = tuple(domain for domain, _ in PAPER_DOMAIN_CODES)
TASKS_PER_DOMAIN = 5
# The dataset fields OGBench's single-task relabelling writes: the only ones the tasks of a
# domain do not share.
LABEL_FIELDS = ("rewards", "masks")
# Domain families whose datasets come from expert policies (not generable with scripted oracles).
LOCOMOTION_PREFIXES = ("pointmaze", "antmaze", "humanoidmaze", "antsoccer")

_ENV_RE = re.compile(r"^(?P<domain>.+)-singletask-task(?P<task>\d+)-v\d+$")


def env_name(domain: str, task: int) -> str:
    """`("cube-double-play", 2)` -> `cube-double-play-singletask-task2-v0`."""
    return f"{domain}-singletask-task{task}-v0"


def domain_and_task(name: str) -> tuple[str, int]:
    """`cube-double-play-singletask-task2-v0` -> (`cube-double-play`, 2); ValueError otherwise."""
    match = _ENV_RE.match(name)
    if match is None:
        raise ValueError(f"env_name {name!r} is not of the form '<domain>-singletask-task<N>-v<K>'")
    return match["domain"], int(match["task"])


def dataset_name_of(name: str) -> str:
    """`cube-double-play-singletask-task2-v0` -> `cube-double-play-v0` (other names unchanged)."""
    parts = name.split("-")
    if "singletask" in parts:
        pos = parts.index("singletask")
        return "-".join(parts[:pos] + parts[-1:])
    return name
