"""Optional experiment loggers that mirror the run directory's JSONL records: TensorBoard, W&B.

`config.log_to` names them: "" (none), "tensorboard", "wandb", or both, comma-separated. The host
loop (`loop.run_stage`) hands `Loggers.write` every record it appends to train_metrics.jsonl or
eval.jsonl, and nothing else, so a logger shows exactly what the run directory holds
(docs/logging.md):
- TensorBoard: event files in <run_dir>/tensorboard/<row>, one subdirectory per row
  (`row_name`), one scalar per metric tagged `<stage>/<metric>` for train records and
  `eval/<metric>` for evaluations, at the record's step.
- Weights & Biases: one W&B run per row, named as the row and grouped by the experiment (its
  run directory's name), with the same keys; BC steps on their own axis (`bc/step`), the
  fine-tuning stages and evaluations on `step`.
The JSONL files stay the run's record: a logger that fails, when it starts or at any write
(missing package, no network or login, a full disk, any exception), prints one warning line
naming it and the reason and is switched off; the run goes on.
"""

import contextlib
import os
import secrets
import sys
import time

from trqam_jax import run_dir

NAMES = ("tensorboard", "wandb")
BC_STAGE = "bc"  # counts its own steps; the fine-tuning stages and evaluations share one axis
WANDB_PROJECT = "trqam-jax"  # unless $WANDB_PROJECT names another


def parse_log_to(value: str) -> tuple[str, ...]:
    """The logger names in `value` ("" = none), in order, repeats dropped; not checked."""
    names = (name.strip() for name in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def row_name(record: dict, keys: tuple[str, ...]) -> str:
    """The name of a record's row from its identity columns `keys`, e.g. task1-seed0-kl_budget0.5.

    Args:
      record: a JSONL record, or a row's identity alone ({column: value}).
      keys: the identity columns, in `train.Rows.columns()` order.
    """
    return "-".join(f"{key}{record[key]:g}" for key in keys)


def scalars(file_name: str, record: dict, keys: tuple[str, ...]) -> dict[str, float]:
    """A record's metrics as the loggers key them: `<stage>/<metric>` for a train record,
    `eval/<metric>` for an evaluation (`file_name` is the JSONL file it went to)."""
    prefix = "eval" if file_name == run_dir.EVAL_FILE else record["stage"]
    skip = {"step", "stage", *keys}
    return {f"{prefix}/{name}": value for name, value in record.items() if name not in skip}


def count(number: int, noun: str) -> str:
    """`number` `noun`s, e.g. "1 row", "2 rows"."""
    return f"{number} {noun}{'s' * (number != 1)}"


def warn(name: str, err: BaseException) -> None:
    """The one line a failing logger prints."""
    lines = str(err).strip().splitlines()
    reason = type(err).__name__ + (f": {lines[0][:300]}" if lines else "")
    print(
        f"warning: {name} logging is off ({reason}); the run goes on and its JSONL files are "
        "complete",
        file=sys.stderr,
        flush=True,
    )


def wandb_run_ids(path: str, names: list[str]) -> dict[str, str]:
    """Each row's W&B run id, kept in `path` (the run directory's wandb_ids.json).

    A resumed run continues its rows' W&B runs; an experiment started anew in a deleted and
    recreated directory gets new ones, so it never appends to the old experiment's runs.
    """
    ids = run_dir.read_json(path) if os.path.exists(path) else {}
    new = {name: secrets.token_hex(8) for name in names if name not in ids}
    if new:
        ids.update(new)
        run_dir.write_json(path, ids)
    return ids


# One record as a logger takes it: (row name, stage, step, {key: value}) (`Loggers.write`).
Entry = tuple[str, str, int, dict[str, float]]


class TensorBoard:
    """Event files, one directory per row, written on the caller's thread.

    tensorboardX's `SummaryWriter` writes from a background thread: a full disk kills that thread
    (a traceback, no error to the caller) and the next writes then block the training loop for
    good once its queue fills. Its `EventsWriter` writes the same files synchronously, so every
    error reaches `Loggers`, and flushing after each write keeps what was logged if the run is
    killed.
    """

    name = "tensorboard"

    def __init__(self, out: str, _experiment: str, rows: dict[str, dict], _config: dict):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        self.event, self.scalar = Event, scalar
        self.writers = {}
        try:
            for name in rows:
                directory = os.path.join(out, run_dir.TENSORBOARD_DIR, name)
                os.makedirs(directory, exist_ok=True)
                # A file per launcher (a resumed run adds one); the pid keeps the names of two
                # launchers started in the same second apart (a name is otherwise the second).
                prefix = os.path.join(directory, "events")
                self.writers[name] = EventsWriter(prefix, filename_suffix=f".{os.getpid()}")
        except BaseException:
            self.close(True)
            raise
        where = os.path.join(out, run_dir.TENSORBOARD_DIR)
        print(f"[tensorboard] {count(len(rows), 'row')} -> {where}")

    def write(self, entries: list[Entry]) -> None:
        """One scalar per key at the entry's step in its row's file; then flush those files."""
        now = time.time()
        for row, _stage, step, values in entries:
            for tag, value in values.items():
                event = self.event(wall_time=now, step=step, summary=self.scalar(tag, value))
                self.writers[row].write_event(event)
        for row in dict.fromkeys(entry[0] for entry in entries):
            self.writers[row].flush()

    def close(self, _failed: bool) -> None:
        """Flush and close every row's file."""
        for writer in self.writers.values():
            writer.close()


class WandB:
    """One W&B run per row, grouped by the experiment; W&B's files go to the run directory
    unless $WANDB_DIR is set, and $WANDB_MODE=offline keeps them there for `wandb sync`."""

    name = "wandb"

    def __init__(self, out: str, experiment: str, rows: dict[str, dict], config: dict):
        import wandb

        ids = wandb_run_ids(os.path.join(out, run_dir.WANDB_IDS_FILE), list(rows))
        self.runs = {}
        self.defined = {name: set() for name in rows}  # per row: the axes and key families
        try:
            for index, (name, identity) in enumerate(rows.items()):
                self.runs[name] = wandb.init(
                    project=None if os.environ.get("WANDB_PROJECT") else WANDB_PROJECT,
                    group=experiment,
                    name=name,
                    id=ids[name],
                    resume="allow",
                    config=dict(config, row=identity),
                    dir=None if os.environ.get("WANDB_DIR") else out,
                    reinit="create_new",  # one process holds every row's run
                    # The console stays the launcher's; system metrics once, in the first run.
                    settings=wandb.Settings(console="off", silent=True, x_disable_stats=index > 0),
                )
        except BaseException:
            self.close(True)
            raise
        run = next(iter(self.runs.values()))
        # run.dir is <W&B dir>/wandb/<run>/files; `wandb sync` takes <W&B dir>/wandb/<run>.
        where = f"offline: wandb sync {os.path.dirname(os.path.dirname(run.dir))}/offline-run-*"
        where = where if run.offline else run.project_url
        runs = count(len(rows), "run")
        print(f"[wandb] {runs}, project {run.project}, group {experiment} ({where})")

    def write(self, entries: list[Entry]) -> None:
        """Log each entry's values and step to its row's run."""
        for row, stage, step, values in entries:
            run, axis = self.runs[row], "bc/step" if stage == BC_STAGE else "step"
            # W&B's own step only grows, and BC restarts the count: each key family (`bc/*`,
            # `offline/*`, `eval/*`, ...) is plotted against its axis, logged with the values.
            known = self.defined[row]
            for name in sorted({key.split("/")[0] + "/*" for key in values} - known):
                if axis not in known:
                    run.define_metric(axis)
                    known.add(axis)
                run.define_metric(name, step_metric=axis)
                known.add(name)
            run.log({axis: step, **values})

    def close(self, failed: bool) -> None:
        """Finish every row's run (exit code 1 when `failed`: W&B marks it failed)."""
        errors = []
        for run in self.runs.values():
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as err:  # the other rows' runs still finish
                errors.append(err)
        if errors:
            raise errors[0]


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB}


class Loggers:
    """The loggers `config.log_to` names; each is switched off at its first failure.

    A context manager: leaving it closes the loggers (flushing what they hold), also on an
    exception or Ctrl-C, when W&B marks the runs failed. A logger (`BACKENDS`) is made as
    `Logger(out, experiment, rows, config)` and has `write(entries)` and `close(failed)`.

    Args:
      log_to: `config.log_to`.
      out: the run directory.
      experiment: the experiment's name (W&B's group).
      columns: the rows' identity columns (`train.Rows.columns()`), name -> (R,) array.
      config: the resolved config (config.json's record), each W&B run's config.
    """

    def __init__(self, log_to: str, out: str, experiment: str, columns: dict, config: dict):
        self.keys = tuple(columns)
        size = len(next(iter(columns.values())))
        # .item() as run_dir.append_rows does, so the records name the same rows.
        identities = [{key: v[row].item() for key, v in columns.items()} for row in range(size)]
        rows = {row_name(identity, self.keys): identity for identity in identities}
        self.backends = []
        for name in parse_log_to(log_to):
            try:
                self.backends.append(BACKENDS[name](out, experiment, rows, config))
            except Exception as err:
                warn(name, err)

    def write(self, file_name: str, records: list[dict]) -> None:
        """Forward the records just appended to `file_name` (train_metrics.jsonl or eval.jsonl)."""
        entries = [
            (row_name(r, self.keys), r["stage"], r["step"], scalars(file_name, r, self.keys))
            for r in records
        ]
        for backend in list(self.backends):
            try:
                backend.write(entries)
            except Exception as err:
                warn(backend.name, err)
                self.backends.remove(backend)
                with contextlib.suppress(Exception):  # reported above; release what it holds
                    backend.close(True)

    def close(self, failed: bool = False) -> None:
        """Close every logger still on; `failed`: the run stopped on an exception."""
        for backend in self.backends:
            try:
                backend.close(failed)
            except Exception as err:
                warn(backend.name, err)
        self.backends = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, _exc, _tb) -> None:
        self.close(failed=exc_type is not None)
