"""On-device replay buffer: initialisation from offline data, jitted inserts, wrap-around."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_data_sampler import hand_built_data, reference_chunk

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


def test_init_keeps_offline_rows_and_samples_like_the_dataset():
    data = hand_built_data()
    n = len(data["rewards"])
    state = replay.init_replay(data, capacity=n + 7)
    assert int(state.size) == n and int(state.pointer) == n
    for k in replay.FIELDS:
        np.testing.assert_array_equal(state.data[k][:n], data[k])
    key = jax.random.PRNGKey(1)
    got = replay.sample(key, state, 32, 3, 0.9)
    want = sample_chunks(key, jax.device_put(data), 32, 3, 0.9)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_capacity_smaller_than_data_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        replay.init_replay(hand_built_data(), capacity=5)


def test_wrap_around_never_crosses_the_write_pointer():
    data = hand_built_data()
    n, capacity, online, horizon = len(data["rewards"]), 24, 31, 4
    # Offline rows carry ids 0..n-1 (their row index); online transitions continue the count.
    # Episodes end every 6 online steps and a success happens at step n + 9.
    steps = [
        transition(n + t, terminal=float(t % 6 == 5), mask=0.0 if t == 9 else 1.0)
        for t in range(online)
    ]
    stacked = {k: np.stack([s[k] for s in steps]) for k in replay.FIELDS}

    @jax.jit
    def fill(state, stacked):
        def body(state, tr):
            return replay.insert(state, tr), None

        return jax.lax.scan(body, state, stacked)[0]

    state = fill(replay.init_replay(data, capacity), stacked)
    total = n + online
    assert int(state.size) == capacity
    assert int(state.pointer) == total % capacity

    # The logical history is the last `capacity` transitions in insertion order.
    history = {k: np.concatenate([data[k], stacked[k]])[total - capacity :] for k in replay.FIELDS}
    batch = jax.device_get(
        jax.jit(lambda key, s: replay.sample(key, s, 512, horizon, 0.95))(
            jax.random.PRNGKey(4), state
        )
    )
    ids = batch["actions"][..., 0] * 100  # (B, H) insertion ids of each chunk position
    ids = np.round(ids).astype(int)
    # Consecutive in insertion order, all still stored, none past the newest transition.
    np.testing.assert_array_equal(np.diff(ids, axis=1), np.ones((512, horizon - 1)))
    assert ids.min() >= total - capacity and ids.max() <= total - 1
    # Chunks that straddle the physical end of storage exist (the wrap is exercised).
    physical = ids % capacity
    assert (physical[:, 0] > physical[:, -1]).any()
    # Every logical start appears, and each batch element equals the numpy reference.
    starts = ids[:, 0] - (total - capacity)
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
    n = len(data["rewards"])
    states = jax.vmap(lambda _: replay.init_replay(data, n + 4))(jnp.arange(2))
    per_seed = {k: np.stack([transition(100)[k], transition(200)[k]]) for k in replay.FIELDS}
    states = jax.jit(jax.vmap(replay.insert))(states, per_seed)
    np.testing.assert_array_equal(states.size, [n + 1, n + 1])
    np.testing.assert_array_equal(states.data["observations"][:, n, 0], [100.0, 200.0])
    np.testing.assert_array_equal(states.data["observations"][:, n + 1], 0.0)
