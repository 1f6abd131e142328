"""The optional loggers of `config.log_to` (trqam_jax/loggers.py): TensorBoard and W&B mirror the
JSONL records exactly, and a failing logger costs one warning line, never the run."""

import contextlib
import errno
import io
import json
import os
import struct
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.runs import read_jsonl, short_episodes, tiny_run_config
from trqam_jax import experiment, loggers, run_dir


def row_of(record) -> str:
    return f"task{record['task']}-seed{record['seed']}-kl_budget{record['kl_budget']:g}"


def jsonl_records(out) -> dict:
    """row -> [(stage, step, {logger key: value})] of every record of the run directory's JSONL
    files: train metrics keyed `<stage>/<metric>`, evaluations `eval/<metric>`."""
    identity = {"step", "stage", "task", "seed", "kl_budget"}
    rows = {}
    for name, prefix in ((run_dir.TRAIN_METRICS_FILE, None), (run_dir.EVAL_FILE, "eval")):
        for record in read_jsonl(out / name):
            values = {
                f"{prefix or record['stage']}/{metric}": value
                for metric, value in record.items()
                if metric not in identity
            }
            rows.setdefault(row_of(record), []).append((record["stage"], record["step"], values))
    return rows


def wandb_history(path) -> list[dict]:
    """The logged rows of an offline W&B run file (`run-<id>.wandb`), W&B's own keys left out.

    The file is W&B's record log: a 7-byte header, then 32 KiB blocks of chunks (4-byte
    checksum, 2-byte length, 1-byte type: 1 whole, 2 first, 3 middle, 4 last) that together
    hold serialised `Record` protos.
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pieces, history = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pieces = (b"" if kind in (1, 2) else pieces) + data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record.FromString(pieces)
            if record.WhichOneof("record_type") == "history":
                # An item names its key in `key` or, in this W&B version, in `nested_key`.
                items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                history.append({k: json.loads(v) for k, v in items.items() if k[0] != "_"})
    return history


def tensorboard_scalars(directory) -> dict:
    """{(tag, step): value} of every scalar in a TensorBoard run directory."""
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {
        (tag, event.step): event.value
        for tag in events.Tags()["scalars"]
        for event in events.Scalars(tag)
    }


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


# BC, fine-tuning and evaluations: every kind of record, on both step axes.
SETTINGS = dict(bc_steps=10, eval_episodes=1)
ROWS = ["task1-seed0-kl_budget1", "task1-seed1-kl_budget1"]


@pytest.fixture(scope="module")
def runs(tiny_dataset_dir, tmp_path_factory):
    """One tiny run without loggers and one with both (W&B offline): {"plain", "logged",
    "wandb_dir": W&B's files, "stderr": the logged run's}."""
    root = tmp_path_factory.mktemp("loggers")
    plain, logged, wandb_dir = root / "plain", root / "logged", root / "wandb_files"
    wandb_dir.mkdir()
    config = tiny_run_config(tiny_dataset_dir, logged, log_to="tensorboard,wandb", **SETTINGS)
    with short_episodes():  # the records are the point, not the policies: 20-step evaluations
        experiment.run(tiny_run_config(tiny_dataset_dir, plain, **SETTINGS))
        with pytest.MonkeyPatch.context() as env, contextlib.redirect_stderr(io.StringIO()) as err:
            env.setenv("WANDB_MODE", "offline")  # no network, no login
            env.setenv("WANDB_DIR", str(wandb_dir))
            env.setenv("WANDB_PROJECT", "trqam-jax-tests")
            summary = experiment.run(config)
    assert summary["rows"] == 2 and (logged / run_dir.SUMMARY_FILE).exists()
    return {"plain": plain, "logged": logged, "wandb_dir": wandb_dir, "stderr": err.getvalue()}


def test_loggers_leave_the_jsonl_as_it_is_and_warn_of_nothing(runs):
    for name in (run_dir.TRAIN_METRICS_FILE, run_dir.EVAL_FILE):
        assert read_jsonl(runs["logged"] / name) == read_jsonl(runs["plain"] / name) != []
    assert warnings_in(runs["stderr"]) == []


def test_tensorboard_holds_the_jsonl_values_per_row_and_step(runs):
    out = runs["logged"]
    rows = jsonl_records(out)
    assert sorted(rows) == sorted(os.listdir(out / run_dir.TENSORBOARD_DIR)) == ROWS
    for row, records in rows.items():
        expected = {
            (key, step): value for _, step, values in records for key, value in values.items()
        }
        written = tensorboard_scalars(out / run_dir.TENSORBOARD_DIR / row)
        assert sorted(written) == sorted(expected), row
        keys = sorted(expected)  # TensorBoard keeps float32 scalars
        np.testing.assert_allclose([written[k] for k in keys], [expected[k] for k in keys], 1e-6)
        # BC on its own steps, fine-tuning and evaluations on theirs.
        assert {step for key, step in expected if key == "bc/bc_loss"} == {10}
        assert {step for key, step in expected if key == "offline/critic_loss"} == {10, 20}
        assert {step for key, step in expected if key == "eval/success"} == {0, 20}


def test_wandb_offline_holds_one_run_per_row_with_the_jsonl_values(runs):
    rows = jsonl_records(runs["logged"])
    ids = json.loads((runs["logged"] / run_dir.WANDB_IDS_FILE).read_text())
    assert sorted(ids) == sorted(rows) == ROWS
    for row, run_id in ids.items():
        (history,) = (runs["wandb_dir"] / "wandb").glob(f"offline-run-*-{run_id}/*.wandb")
        # Every record once, at its step: BC on `bc/step`, the rest on `step`.
        expected = [
            {"bc/step" if stage == "bc" else "step": step, **values}
            for stage, step, values in rows[row]
        ]
        order = lambda entries: sorted(entries, key=lambda e: json.dumps(e, sort_keys=True))
        assert order(wandb_history(history)) == order(expected), row


def test_failing_loggers_warn_once_each_and_the_jsonl_is_complete(
    runs, tiny_dataset_dir, tmp_path, monkeypatch, capfd, short_episodes
):
    """W&B cannot start (not installed) and TensorBoard's disk fills at its first write: one
    warning line each, and the run's JSONL files equal those of a run without loggers."""
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ModuleNotFoundError

    def full_disk(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tensorboardX.event_file_writer.EventsWriter.write_event", full_disk)
    config = tiny_run_config(tiny_dataset_dir, tmp_path, log_to="wandb,tensorboard", **SETTINGS)
    experiment.run(config)
    warned = warnings_in(capfd.readouterr().err)
    assert len(warned) == 2, warned
    assert warned[0].startswith("warning: wandb logging is off (ModuleNotFoundError: ")
    assert warned[1].startswith("warning: tensorboard logging is off (OSError: ")
    assert "No space left on device" in warned[1]
    for name in (run_dir.TRAIN_METRICS_FILE, run_dir.EVAL_FILE):
        assert read_jsonl(tmp_path / name) == read_jsonl(runs["plain"] / name)


def test_a_logger_that_cannot_start_is_skipped_with_one_warning(tmp_path, capsys):
    (tmp_path / run_dir.TENSORBOARD_DIR).write_text("a file where the directory would go")
    columns = {"task": np.array([1]), "seed": np.array([0])}
    with loggers.Loggers("tensorboard", str(tmp_path), "x", columns, {}) as log:
        log.write(run_dir.TRAIN_METRICS_FILE, [{"step": 1, "stage": "bc", "task": 1, "seed": 0}])
    (warned,) = warnings_in(capsys.readouterr().err)
    assert warned.startswith("warning: tensorboard logging is off (")


def test_an_interrupted_run_keeps_every_record_it_logged(tmp_path):
    columns = {"task": np.array([1, 1]), "seed": np.array([0, 1])}
    records = lambda step: [
        {"step": step, "stage": "offline", "task": 1, "seed": s, "critic_loss": step + s}
        for s in (0, 1)
    ]
    opened = loggers.Loggers("tensorboard", str(tmp_path), "x", columns, {})
    with pytest.raises(KeyboardInterrupt), opened as log:
        for step in (10, 20):
            log.write(run_dir.TRAIN_METRICS_FILE, records(step))
        raise KeyboardInterrupt
    for seed in (0, 1):
        written = tensorboard_scalars(tmp_path / run_dir.TENSORBOARD_DIR / f"task1-seed{seed}")
        assert written == {("offline/critic_loss", s): s + seed for s in (10, 20)}


def test_wandb_run_ids_persist_with_the_run_directory(tmp_path):
    path = str(tmp_path / run_dir.WANDB_IDS_FILE)
    first = loggers.wandb_run_ids(path, ["a", "b"])
    again = loggers.wandb_run_ids(path, ["a", "b", "c"])
    assert {row: again[row] for row in first} == first  # a resumed run continues its W&B runs
    assert len(set(again.values())) == 3
    # A new directory (an experiment started anew) gets new ids.
    assert loggers.wandb_run_ids(str(tmp_path / "new.json"), ["a"])["a"] != first["a"]


def test_a_bad_log_to_is_refused_naming_the_field(tiny_dataset_dir, tmp_path):
    for bad, named in (("tensorbord", "'tensorbord'"), ("wandb, mlflow", "'mlflow'")):
        config = tiny_run_config(tiny_dataset_dir, tmp_path / "bad", log_to=bad)
        with pytest.raises(experiment.ConfigError) as err:
            experiment.run(config)
        message = str(err.value)
        assert message.startswith(f"config.log_to={bad!r}: must be a comma-separated subset of")
        assert "tensorboard, wandb" in message and named in message
    assert not (tmp_path / "bad").exists()
    assert loggers.parse_log_to(" tensorboard,,wandb,tensorboard ") == ("tensorboard", "wandb")
