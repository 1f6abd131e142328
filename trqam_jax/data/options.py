"""The paper's dataset options (as in the reference QAM `main.py` / `envs/env_utils.py`), pure
numpy functions of a transition dict:
  - `sparse`: reward -1 until every subtask is solved, 0 at success: `r <- -(r != 0)`.
  - `action_clip_eps`: dataset actions clipped to [-1 + eps, 1 - eps] (default 1e-5; None = off).
  - `proportion`: keep the first int(N * p) training transitions (for a directory of shards: the
    first max(1, int(num_shards * p)) shards). The cut episode is marked ended (terminal 1) so no
    chunk runs past the cut (QAM leaves it open; with a replay buffer that would join it to the
    first online episode).
"""

import numpy as np

ACTION_CLIP_EPS = 1e-5
# The fields of a transition dict: what the loader returns and `postprocess` keeps.
FIELDS = ("observations", "actions", "rewards", "terminals", "masks", "next_observations")


def sparsify_rewards(rewards):
    """-1 until every subtask is solved, 0 at success (works on numpy and jax arrays)."""
    return -1.0 * (rewards != 0.0)


def clip_actions(actions: np.ndarray, eps: float | None) -> np.ndarray:
    """Clip to [-1 + eps, 1 - eps] (no-op for eps None)."""
    return actions if eps is None else np.clip(actions, -1.0 + eps, 1.0 - eps)


def take_proportion(data: dict, proportion: float) -> dict:
    """First int(N * proportion) transitions; the cut episode is marked ended."""
    if not 0.0 < proportion <= 1.0:
        raise ValueError(f"dataset proportion must be in (0, 1], got {proportion}")
    n = len(data["terminals"])
    keep = max(1, int(n * proportion))
    if keep == n:
        return data
    out = {k: v[:keep] for k, v in data.items()}
    out["terminals"] = out["terminals"].copy()
    out["terminals"][-1] = 1.0
    return out


def postprocess(
    data: dict, sparse: bool = False, action_clip_eps: float | None = ACTION_CLIP_EPS
) -> dict:
    """Keep the contract fields as float32 (observations keep uint8), apply sparse and clipping."""
    out = {k: np.asarray(data[k]) for k in FIELDS}
    for k in FIELDS:
        # Pixel observations stay uint8 (4x smaller on the device); everything else is float32.
        if out[k].dtype != np.uint8:
            out[k] = out[k].astype(np.float32, copy=False)
    if sparse:
        out["rewards"] = sparsify_rewards(out["rewards"]).astype(np.float32)
    out["actions"] = clip_actions(out["actions"], action_clip_eps).astype(np.float32)
    return out
