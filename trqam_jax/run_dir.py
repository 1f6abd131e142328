"""The run directory (docs/run_directory.md): its file names, writing it and reading it back.

The launcher (`experiments.run`) writes with `write_json`, `append_jsonl` and `append_rows`; the
report (`trqam_jax.report`) reads with `load_runs`. Reading imports no JAX, so the report runs on a
machine without the training stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import socket
from collections.abc import Sequence

from trqam_jax.data.names import domain_and_task

# The files of a run directory.
CONFIG_FILE = "config.json"  # the resolved config, written before any work
PROVENANCE_FILE = "provenance.json"  # data and software provenance, written before any work
TRAIN_METRICS_FILE = "train_metrics.jsonl"  # one line per (logged step, seed)
EVAL_FILE = "eval.jsonl"  # one line per (evaluation step, seed)
SUMMARY_FILE = "summary.json"  # written at the end of a run
CONFIG_CHANGES_FILE = "config_changes.jsonl"  # result fields changed on resume, when allowed
LOCK_FILE = ".lock"  # held by the launcher running in the directory
# Written only with `config.log_to` (trqam_jax/loggers.py).
TENSORBOARD_DIR = "tensorboard"  # event files, one subdirectory per row
WANDB_IDS_FILE = "wandb_ids.json"  # each row's W&B run id, so a resumed run continues it

# ----------------------------------------------------------------------------------------------
# Writing


def strict(value):
    """`value` with every non-finite float (NaN, inf) replaced by None, recursively.

    JSON has no NaN or Infinity; Python writes them as bare tokens other parsers refuse, so the
    run directory's files hold null instead (a metric with no value, or a diverged one).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def _line(row: dict) -> str:
    return json.dumps(strict(row), sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str, payload: dict) -> None:
    """Write atomically (a crash never leaves a half-written file behind), as strict JSON."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(strict(payload), f, indent=2, sort_keys=True, default=str, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def append_jsonl(path: str, rows: list[dict]) -> None:
    """Append one strict JSON object per line (`strict`) and flush it to disk."""
    with open(path, "a") as f:
        for row in rows:
            f.write(_line(row))
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: str, keep) -> None:
    """Keep only the rows for which `keep(row)` is true (used when resuming from a checkpoint).

    Rows written after the checkpoint a run resumes from would otherwise appear twice; an
    unterminated last line (a crash mid-write) is dropped, any other broken line is an error
    naming the file and line (`read_jsonl`).
    """
    if not os.path.exists(path):
        return
    rows = read_jsonl(path, required=False, drop_partial=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for row in rows:
            if keep(row):
                f.write(_line(row))
    os.replace(tmp, path)


@contextlib.contextmanager
def made(directory: str):
    """Create `directory` (and its missing parents) for the block; if the block fails while the
    directory holds nothing but the lock file, remove what was created, so that a run that failed
    before any work leaves nothing behind. A directory that existed is left as it was."""
    created, path = [], os.path.abspath(directory)
    while not os.path.exists(path):
        created.append(path)  # innermost first
        path = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    try:
        yield
    except BaseException:
        if created and set(os.listdir(created[0])) <= {LOCK_FILE}:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(created[0], LOCK_FILE))
            with contextlib.suppress(OSError):  # a directory someone else filled meanwhile stays
                for path in created:
                    os.rmdir(path)
        raise


@contextlib.contextmanager
def locked(directory: str):
    """Hold the run directory's lock while the block runs; a second holder is refused.

    The lock is an OS file lock (released by the kernel if the process dies, kill -9 included);
    the file names the holder (pid@host) for the error message.
    """
    path = os.path.join(directory, LOCK_FILE)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirError(
                f"{directory} is in use by {holder} (lock {path}); wait for that run to finish "
                "or stop it, or pass another --config.run_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_rows(path: str, values: dict, base: dict, columns: dict) -> list[dict]:
    """Append one record per row: `base` + the row's identity columns + its metric values.

    Args:
      values: metric name -> (R,) per-row values.
      columns: what identifies each row (`train.Rows.columns()`: seed, and swept values such as
        kl_budget), name -> (R,).
    Returns:
      The records appended, in row order (what the loggers of `config.log_to` receive).
    """
    rows = len(next(iter(columns.values())))
    records = []
    for row in range(rows):
        record = dict(base)
        record.update({name: v[row].item() for name, v in columns.items()})  # numpy -> JSON
        record.update({name: float(v[row]) for name, v in values.items()})
        records.append(record)
    append_jsonl(path, records)
    return records


# ----------------------------------------------------------------------------------------------
# Reading


class RunDirError(ValueError):
    """A path that is not a readable run directory; the message names the path and the fix."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory, parsed.

    path: the directory. config / provenance: the json files as dicts. summary: summary.json as a
    dict, None while the run has not finished. evals / train: the jsonl files as lists of dicts
    (one per line, in file order).
    """

    path: str
    config: dict
    provenance: dict
    evals: list[dict]
    train: list[dict]
    summary: dict | None = None

    @property
    def agent(self) -> str:
        # The launcher writes the whole agent config; its agent_name names the agent.
        agent = self.config["agent"]
        return str(agent["agent_name"] if isinstance(agent, dict) else agent)

    @property
    def env_name(self) -> str:
        return str(self.config["env_name"])

    @property
    def generated(self) -> bool:
        return self.provenance.get("data_source") == "generated"

    @property
    def offline_end(self) -> int:
        return int(self.config.get("offline_steps", 0))

    @property
    def final_step(self) -> int:
        return int(self.config.get("offline_steps", 0)) + int(self.config.get("online_steps", 0))


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def expand_run_dirs(paths: Sequence[str]) -> list[str]:
    """Run directories named by `paths`; a directory of run directories (a sweep) is expanded,
    and so are its directories of part runs (`<program>/part<i>`, docs/sweep.md).

    Raises RunDirError naming the path when it is neither.
    """
    out = []
    for p in paths:
        if not os.path.isdir(p):
            raise RunDirError(
                f"{p}: not a directory. Pass run directories written by `python -m experiments.run`"
                f" (each holds {CONFIG_FILE}, {PROVENANCE_FILE}, {EVAL_FILE}) or a sweep root."
            )
        if is_run_dir(p):
            out.append(p)
            continue
        children = _run_dirs_below(p, depth=2)
        if not children:
            raise RunDirError(
                f"{p}: not a run directory (no {CONFIG_FILE}) and holds no run directories. Pass"
                f" the directory that contains {CONFIG_FILE}, {PROVENANCE_FILE} and {EVAL_FILE},"
                " or its parent sweep directory."
            )
        out.extend(children)
    return out


def _run_dirs_below(path: str, depth: int) -> list[str]:
    """Run directories under `path` down to `depth` levels, not looking inside run directories."""
    out = []
    for child in sorted(os.path.join(path, c) for c in os.listdir(path)):
        if is_run_dir(child):
            out.append(child)
        elif depth > 1 and os.path.isdir(child):
            out.extend(_run_dirs_below(child, depth - 1))
    return out


def read_json(path: str) -> dict:
    """A json file of a run directory; RunDirError when it is missing or broken."""
    if not os.path.isfile(path):
        raise RunDirError(
            f"{path}: missing. A run directory written by `python -m experiments.run` has it from"
            " the start; pass a complete run directory."
        )
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e}); fix or regenerate the file.") from e


def read_jsonl(path: str, required: bool, drop_partial: bool = False) -> list[dict]:
    """The lines of a jsonl file as dicts; [] for a missing file unless `required`.

    RunDirError names the line of a broken file, and a required file that is missing or empty.
    `drop_partial` drops an unterminated last line that does not parse (a crash mid-write).
    """
    if not os.path.isfile(path):
        if required:
            raise RunDirError(
                f"{path}: missing. The run has not evaluated yet: wait for the first evaluation or"
                " leave this run out."
            )
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    # A run killed mid-write leaves an unterminated last line; resuming drops it.
    partial = lines.pop() if drop_partial else ""
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunDirError(
                f"{path}:{i}: not valid JSON ({e}). Delete the broken line and rerun."
            ) from e
    if partial.strip():
        with contextlib.suppress(json.JSONDecodeError):  # complete but for its newline
            rows.append(json.loads(partial))
    if required and not rows:
        raise RunDirError(
            f"{path}: empty. The run has not evaluated yet: wait for its first evaluation or leave"
            " this run directory out of the report."
        )
    return rows


def load_run(path: str) -> Run:
    """Parse one run directory. Raises RunDirError naming the bad file."""
    if not is_run_dir(path):
        raise RunDirError(
            f"{path}: not a run directory (no {CONFIG_FILE}). Pass the directory written by"
            " `python -m experiments.run`."
        )
    config_path = os.path.join(path, CONFIG_FILE)
    config = read_json(config_path)
    for key in ("agent", "env_name"):
        if key not in config:
            raise RunDirError(f"{config_path}: has no {key!r} field.")
    try:
        domain_and_task(config["env_name"])  # every reader of the run relies on the name
    except ValueError as e:
        raise RunDirError(f"{config_path}: {e}") from e
    provenance = read_json(os.path.join(path, PROVENANCE_FILE))
    eval_path = os.path.join(path, EVAL_FILE)
    # A run may have no evaluation (BC only, evaluation off, not evaluated yet): the report
    # marks such runs instead of refusing them.
    evals = read_jsonl(eval_path, required=False)
    for i, r in enumerate(evals, start=1):
        missing = [k for k in ("step", "seed", "success") if k not in r]
        if missing:
            raise RunDirError(f"{eval_path}:{i}: lacks fields {missing}.")
    train = read_jsonl(os.path.join(path, TRAIN_METRICS_FILE), required=False)
    summary_path = os.path.join(path, SUMMARY_FILE)
    summary = read_json(summary_path) if os.path.isfile(summary_path) else None
    return Run(path, config, provenance, evals, train, summary)


def load_runs(paths: Sequence[str]) -> list[Run]:
    """`expand_run_dirs` then `load_run` on each."""
    return [load_run(p) for p in expand_run_dirs(paths)]
