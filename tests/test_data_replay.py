"""On-device replay: shared offline part + per-row online ring buffers, inserts, wrap-around."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.chunks import hand_built_data, reference_chunk
from trqam_jax.data import replay
from trqam_jax.data.sampler import sample_chunks


def transition(i, terminal=0.0, mask=1.0):
    """A single-step transition whose values encode its insertion index i."""
    i = np.float32(i)
    return {
        "observations": np.array([i, -i], np.float32),
        "actions": np.array([i / 100, i / 50, -i / 100], np.float32),
        "rewards": np.float32(-1.0 + 0.01 * i),
        "terminals": np.float32(terminal),
        "masks": np.float32(mask),
        "next_observations": np.array([i + 0.5, -i - 0.5], np.float32),
    }


def _fill(state, steps):
    """Insert the transitions `steps` in order, in one jitted scan."""
    stacked = {k: np.stack([s[k] for s in steps]) for k in replay.FIELDS}

    @jax.jit
    def fill(state, stacked):
        return jax.lax.scan(lambda st, tr: (replay.insert(st, tr), None), state, stacked)[0]

    return fill(state, stacked), stacked


def _online_steps(first, count):
    """`count` transitions numbered from `first`: episodes end every 6, a success at the 10th."""
    return [
        transition(first + t, terminal=float(t % 6 == 5), mask=0.0 if t == 9 else 1.0)
        for t in range(count)
    ]


def test_an_empty_online_part_samples_like_the_dataset():
    data = hand_built_data()
    state = replay.init_replay(data, capacity=7)
    assert int(state.size) == 0 and int(state.pointer) == 0
    key = jax.random.PRNGKey(1)
    got = replay.sample(key, state, 32, 3, 0.9, offline=jax.device_put(data))
    want = sample_chunks(key, jax.device_put(data), 32, 3, 0.9)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_shared_offline_plus_online_equals_one_buffer_holding_both():
    """The batches of a buffer that stores the dataset followed by the online steps (what each
    row held before the offline part was shared), on the same keys, chunks across the seam too."""
    data = hand_built_data()
    n, online, horizon = len(data["rewards"]), 13, 4
    state, stacked = _fill(replay.init_replay(data, capacity=20), _online_steps(n, online))
    whole = {k: np.concatenate([data[k], stacked[k]]) for k in replay.FIELDS}
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        got = replay.sample(key, state, 256, horizon, 0.95, offline=jax.device_put(data))
        want = sample_chunks(key, jax.device_put(whole), 256, horizon, 0.95)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    ids = np.round(np.asarray(got["actions"][..., 0]) * 100).astype(int)
    assert ((ids[:, 0] < n) & (ids[:, -1] >= n)).any()  # the seam is exercised


def test_offline_labels_are_read_from_the_rows_task_column():
    data = hand_built_data()
    n = len(data["rewards"])
    tasks = dict(data, rewards=np.stack([data["rewards"], -2.0 * data["rewards"]], axis=1),
                 masks=np.stack([data["masks"], 1.0 - data["masks"]], axis=1))  # fmt: skip
    state, _ = _fill(replay.init_replay(tasks, capacity=8), _online_steps(n, 5))
    assert state.data["rewards"].shape == (8,)  # a row stores its own task's labels only
    key = jax.random.PRNGKey(2)
    for task in (0, 1):
        single = dict(data, rewards=tasks["rewards"][:, task], masks=tasks["masks"][:, task])
        want = replay.sample(key, state, 64, 3, 0.9, offline=jax.device_put(single))
        got = jax.jit(lambda t, s: replay.sample(key, s, 64, 3, 0.9, jax.device_put(tasks), t))(
            task, state
        )
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k}, task {task}")


def test_capacity_below_one_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        replay.init_replay(hand_built_data(), capacity=0)


def test_wrap_around_never_crosses_the_write_pointer():
    capacity, online, horizon = 24, 31, 4
    no_rows = {k: np.asarray(v)[None][:0] for k, v in transition(0).items()}
    state, stacked = _fill(replay.init_replay(no_rows, capacity), _online_steps(0, online))
    assert int(state.size) == capacity
    assert int(state.pointer) == online % capacity

    # The logical history is the last `capacity` transitions in insertion order.
    history = {k: v[online - capacity :] for k, v in stacked.items()}
    batch = jax.device_get(
        jax.jit(lambda key, s: replay.sample(key, s, 512, horizon, 0.95))(
            jax.random.PRNGKey(4), state
        )
    )
    ids = batch["actions"][..., 0] * 100  # (B, H) insertion ids of each chunk position
    ids = np.round(ids).astype(int)
    # Consecutive in insertion order, all still stored, none past the newest transition.
    np.testing.assert_array_equal(np.diff(ids, axis=1), np.ones((512, horizon - 1)))
    assert ids.min() >= online - capacity and ids.max() <= online - 1
    # Chunks that straddle the physical end of storage exist (the wrap is exercised).
    physical = ids % capacity
    assert (physical[:, 0] > physical[:, -1]).any()
    # Every logical start appears, and each batch element equals the numpy reference.
    starts = ids[:, 0] - (online - capacity)
    np.testing.assert_array_equal(np.unique(starts), np.arange(capacity - horizon + 1))
    for b in range(0, 512, 7):
        want = reference_chunk(history, starts[b], horizon, 0.95)
        for k, v in want.items():
            np.testing.assert_array_equal(batch[k][b], v, err_msg=f"{k}, element {b}")


def test_empty_buffer_insert_then_sample():
    no_rows = {k: np.asarray(v)[None][:0] for k, v in transition(0).items()}
    state = replay.init_replay(no_rows, capacity=8)
    for i in range(5):
        state = replay.insert(state, transition(i, terminal=float(i == 2)))
    assert int(state.size) == 5 and int(state.pointer) == 5
    batch = replay.sample(jax.random.PRNGKey(0), state, 64, 2, 0.9)
    starts = np.asarray(batch["observations"][:, 0]).astype(int)
    assert set(starts.tolist()) == {0, 1, 2, 3}
    # A chunk starting at the episode end (row 2) has its second position invalid.
    np.testing.assert_array_equal(
        np.asarray(batch["valid"])[starts == 2], [[1.0, 0.0]] * int((starts == 2).sum())
    )
    assert jnp.all(batch["next_observations"][starts == 2][:, 0] == 2.5)


def test_insert_rejects_a_transition_of_another_shape():
    state = replay.init_replay(hand_built_data(), capacity=64)
    wrong = dict(transition(0), observations=np.zeros(3, np.float32))  # the buffer's D is 2
    with pytest.raises(AssertionError, match="replay.insert: observations"):
        replay.insert(state, wrong)
    with pytest.raises(AssertionError, match="replay.insert: rewards"):
        replay.insert(state, dict(transition(0), rewards=np.zeros(1, np.float32)))


def test_vmapped_per_seed_buffers_insert_independently():
    data = hand_built_data()
    states = jax.vmap(lambda _: replay.init_replay(data, 4))(jnp.arange(2))
    per_seed = {k: np.stack([transition(100)[k], transition(200)[k]]) for k in replay.FIELDS}
    states = jax.jit(jax.vmap(replay.insert))(states, per_seed)
    np.testing.assert_array_equal(states.size, [1, 1])
    np.testing.assert_array_equal(states.data["observations"][:, 0, 0], [100.0, 200.0])
    np.testing.assert_array_equal(states.data["observations"][:, 1], 0.0)
