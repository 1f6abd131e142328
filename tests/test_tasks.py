"""Tasks on the row axis: one program trains several tasks of a domain on one copy of the data.

The tasks of a domain share observations, actions, next observations and terminals; only the
rewards and masks differ (OGBench relabels them per task). A multi-task run must equal the
single-task runs it replaces, row for row.
"""

import jax
import numpy as np
import pytest

from tests.runs import final_params, read_jsonl, short_episodes, tiny_run_config
from trqam_jax import experiment as launcher
from trqam_jax.data.datasets import load_offline_data
from trqam_jax.data.names import LABEL_FIELDS, env_name
from trqam_jax.data.sampler import sample_chunks

DOMAIN = "cube-double-play"
# Task 4 is the one whose labels differ from task 1 on the tiny dataset (a cube starts in place).
TASKS = (1, 4)


def test_task_labels_are_each_tasks_own_relabelling(tiny_dataset_dir):
    multi = load_offline_data(env_name(DOMAIN, 1), tiny_dataset_dir, tasks=(1, 4, 5)).train
    n = len(multi["terminals"])
    singles = [load_offline_data(env_name(DOMAIN, t), tiny_dataset_dir).train for t in (1, 4, 5)]
    for column, single in enumerate(singles):
        for name, values in single.items():
            stored = multi[name][:, column] if name in LABEL_FIELDS else multi[name]
            np.testing.assert_array_equal(stored, values, err_msg=f"{name}, column {column}")
    assert multi["rewards"].shape == multi["masks"].shape == (n, 3)
    # The tasks' labels differ, so reading the wrong column would show.
    assert not np.array_equal(multi["rewards"][:, 0], multi["rewards"][:, 1])
    # Each task's batches are the batches of its own single-task data, on the same key.
    key, on_device = jax.random.PRNGKey(0), jax.device_put(multi)
    for column, single in enumerate(singles):
        got = jax.jit(lambda t: sample_chunks(key, on_device, 64, 5, 0.99, task=t))(column)
        want = sample_chunks(key, jax.device_put(single), 64, 5, 0.99)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _rows(path, stage):
    return {(r["step"], r["task"], r["seed"]): r for r in read_jsonl(path) if r["stage"] == stage}


@pytest.fixture(scope="module")
def task_runs(tiny_dataset_dir, tmp_path_factory):
    """The 2-task x 2-seed program, each task alone, and part 1 of the program split in two
    (offline only: its offline checkpoint is compared)."""
    root = tmp_path_factory.mktemp("tasks")
    common = dict(
        eval_episodes=1, eval_envs=4, online_steps=6, start_training=3, seeds=2, save_interval=20
    )
    run = lambda name, **kw: launcher.run(
        tiny_run_config(tiny_dataset_dir, root / name, **(common | kw))
    )
    with short_episodes():  # rows are compared, not policies: 20-step evaluation episodes
        summaries = {"multi": run("multi", tasks=TASKS)}
        for task in TASKS:
            summaries[task] = run(f"task{task}", task=task)
        summaries["part1"] = run(
            "part", tasks=TASKS, rows_parts=2, rows_part=1, online_steps=0, eval_episodes=0
        )
    return root, summaries


def test_two_tasks_in_one_program_equal_the_single_task_runs(task_runs):
    root, summaries = task_runs
    multi = summaries["multi"]
    assert multi["tasks"] == [1, 1, 4, 4] and multi["seeds"] == [0, 1, 0, 1]
    for stage in ("offline", "online"):
        params = final_params(root / "multi", stage)[1]
        for column, task in enumerate(TASKS):
            single = final_params(root / f"task{task}", stage)[1]
            rows = slice(2 * column, 2 * column + 2)
            jax.tree.map(
                lambda m, s, rows=rows: np.testing.assert_allclose(
                    m[rows], s, rtol=1e-5, atol=1e-6
                ),
                params,
                single,
            )
    for column, task in enumerate(TASKS):
        rows = slice(2 * column, 2 * column + 2)
        for name in ("final_success", "final_return", "start_success"):
            np.testing.assert_allclose(multi[name][rows], summaries[task][name], rtol=1e-6)
    # Every logged row carries its task; the single-task runs' rows are the program's.
    logged = _rows(root / "multi" / "train_metrics.jsonl", "offline")
    for task in TASKS:
        for key, row in _rows(root / f"task{task}" / "train_metrics.jsonl", "offline").items():
            np.testing.assert_allclose(logged[key]["critic_loss"], row["critic_loss"], rtol=1e-5)
    # The tasks trained on different rewards: their critics differ for the same seed.
    critic = jax.tree.leaves(final_params(root / "multi", "offline")[1]["critic"])[0]
    assert not np.allclose(critic[0], critic[2])


def test_a_split_of_the_task_rows_equals_its_rows_of_the_whole(task_runs):
    root, summaries = task_runs
    part = summaries["part1"]
    assert part["tasks"] == [4, 4]
    whole = final_params(root / "multi", "offline")[1]
    jax.tree.map(
        lambda w, p: np.testing.assert_allclose(w[2:], p, rtol=1e-5, atol=1e-6),
        whole,
        final_params(root / "part" / "part1", "offline")[1],
    )
