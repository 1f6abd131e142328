"""The on-device chunk sampler against a plain-numpy, loop-by-loop reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.chunks import hand_built_data, reference_chunk
from trqam_jax.data.sampler import chunks_at, sample_chunks


@pytest.mark.parametrize("horizon", [1, 3, 5])
@pytest.mark.parametrize("discount", [0.9, 0.995])
def test_every_start_matches_reference_exactly(horizon, discount):
    data = hand_built_data()
    n = len(data["rewards"])
    starts = np.arange(n - horizon + 1)
    fn = jax.jit(chunks_at, static_argnums=(2,))
    got = jax.device_get(fn(jax.device_put(data), jnp.asarray(starts), horizon, discount))
    for b, start in enumerate(starts):
        want = reference_chunk(data, start, horizon, discount)
        for k, v in want.items():
            np.testing.assert_array_equal(got[k][b], v, err_msg=f"{k} at start {start}")


def test_reference_cases_are_meaningful():
    """The hand-built data must exercise boundaries and successes inside chunks."""
    data = hand_built_data()
    want = reference_chunk(data, 2, 5, 0.9)  # rows 2..6: episode ends at row 3, success at 5.
    np.testing.assert_array_equal(want["valid"], [1, 1, 0, 0, 0])
    assert want["masks"] == 1.0  # the success at row 5 is in the next episode.
    np.testing.assert_array_equal(want["next_observations"], data["next_observations"][3])
    want = reference_chunk(data, 7, 3, 0.9)  # rows 7..9 in the third episode, success at 8.
    np.testing.assert_array_equal(want["valid"], [1, 1, 1])
    assert want["masks"] == 0.0


def test_traced_discount_equals_static():
    data = jax.device_put(hand_built_data())
    starts = jnp.arange(8)
    static = chunks_at(data, starts, 4, 0.99)
    traced = jax.jit(lambda g: chunks_at(data, starts, 4, g))(jnp.float32(0.99))
    for k in static:
        np.testing.assert_array_equal(static[k], traced[k])


def test_sample_inside_scan_uses_only_rows_below_size():
    data = hand_built_data()
    n, size, horizon = len(data["rewards"]), 12, 3
    # Rows at or beyond `size` are poisoned: reading any of them would leak NaN into the batch.
    for k in data:
        data[k] = data[k].copy()
        data[k][size:] = np.nan
    data = jax.device_put(data)

    @jax.jit
    def many(key, size):
        def body(carry, k):
            batch = sample_chunks(k, data, 64, horizon, 0.99, size=size)
            return carry, batch

        return jax.lax.scan(body, 0, jax.random.split(key, 50))[1]

    batches = jax.device_get(many(jax.random.PRNGKey(0), jnp.int32(size)))
    assert n > size
    for k, v in batches.items():
        assert np.isfinite(v).all(), k
    starts = batches["observations"][..., 0].astype(int).ravel()
    # Uniform over all size - H + 1 valid starts: every one appears, none beyond.
    np.testing.assert_array_equal(np.unique(starts), np.arange(size - horizon + 1))
    counts = np.bincount(starts)
    assert counts.min() > 0.5 * counts.mean()
    assert batches["actions"].shape == (50, 64, horizon, 3)
    assert batches["valid"].shape == (50, 64, horizon)


def test_horizon_one_is_plain_transitions():
    data = hand_built_data()
    batch = jax.device_get(sample_chunks(jax.random.PRNGKey(3), jax.device_put(data), 32, 1, 0.9))
    rows = batch["observations"][:, 0].astype(int)
    np.testing.assert_array_equal(batch["rewards"], data["rewards"][rows])
    np.testing.assert_array_equal(batch["masks"], data["masks"][rows])
    np.testing.assert_array_equal(batch["next_observations"], data["next_observations"][rows])
    np.testing.assert_array_equal(batch["actions"][:, 0], data["actions"][rows])
    np.testing.assert_array_equal(batch["valid"], np.ones((32, 1), np.float32))


def test_vmap_over_seed_keys_shares_the_data():
    data = jax.device_put(hand_built_data())
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    batched = jax.jit(jax.vmap(lambda k: sample_chunks(k, data, 16, 3, 0.99)))(keys)
    assert batched["actions"].shape == (4, 16, 3, 3)
    for s in range(4):
        single = sample_chunks(keys[s], data, 16, 3, 0.99)
        for k in single:
            np.testing.assert_array_equal(batched[k][s], single[k])
