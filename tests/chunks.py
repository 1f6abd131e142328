"""A hand-built flat dataset and a loop-by-loop reference of chunk sampling, shared by the sampler
and replay tests."""

import numpy as np

# Episode lengths and, per episode, the offsets of success (mask 0) transitions.
EPISODES = [(4, []), (2, [1]), (6, [2, 3]), (1, []), (5, [4])]


def hand_built_data():
    """Flat transitions whose values encode the row index, with boundaries and successes."""
    terminals, masks = [], []
    for length, successes in EPISODES:
        terminals += [0.0] * (length - 1) + [1.0]
        masks += [0.0 if t in successes else 1.0 for t in range(length)]
    n = len(terminals)
    rows = np.arange(n, dtype=np.float32)
    return {
        "observations": np.stack([rows, -rows], axis=1),
        "actions": np.stack([rows / 100, rows / 50, -rows / 100], axis=1).astype(np.float32),
        "rewards": np.linspace(-1.0, 0.7, n).astype(np.float32) ** 3,
        "terminals": np.asarray(terminals, np.float32),
        "masks": np.asarray(masks, np.float32),
        "next_observations": np.stack([rows + 0.5, -rows - 0.5], axis=1),
    }


def reference_chunk(data, start, horizon, discount):
    """Loop-by-loop transcription of the QAM reference `sample_sequence` for one start index."""
    gamma = np.float32(discount)
    reward = mask = terminal = None
    valid = np.ones(horizon, np.float32)
    next_obs = None
    power = np.float32(1.0)
    for j in range(horizon):
        row = start + j
        if j == 0:
            reward = data["rewards"][row]
            mask = data["masks"][row]
            terminal = data["terminals"][row]
        else:
            valid[j] = np.float32(1.0) - terminal
            reward = reward + valid[j] * (data["rewards"][row] * power)
            if valid[j] > 0:
                mask = min(mask, data["masks"][row])
            terminal = max(terminal, data["terminals"][row])
        if valid[j] > 0:
            next_obs = data["next_observations"][row]
        power = np.float32(power * gamma)
    return {
        "observations": data["observations"][start],
        "actions": data["actions"][start : start + horizon],
        "rewards": np.float32(reward),
        "masks": np.float32(mask),
        "valid": valid,
        "next_observations": next_obs,
    }
