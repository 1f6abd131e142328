"""Device memory of the online replay storage: per-row copies of the dataset vs a shared one.

    python -m benchmarks.replay_memory                       # cube-double shapes, 1M + 500K steps
    python -m benchmarks.replay_memory --rows=8 --offline=20000 --online=10000 --allocate

Before, every row's buffer held the whole offline dataset followed by its online steps (R copies
of N + online transitions); now the rows share one copy of the offline part (`replay.sample` reads
it next to each row's buffer) and each row stores only its online transitions. Sizes come from
the arrays' shapes (`jax.eval_shape`, nothing allocated); `--allocate` also builds the shared
layout on the device and checks that the bytes it holds equal the shape count.
Results go to benchmarks/results/replay_memory_<device>.json.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.common import write_result
from trqam_jax import online

flags.DEFINE_list("rows", ["8", "64"], "Numbers of rows R.")
flags.DEFINE_integer("offline", 1_000_000, "Offline transitions N (cube-double-play: 1M).")
flags.DEFINE_integer("online", 500_000, "Online steps per row (the paper's offline-to-online).")
flags.DEFINE_integer("obs_dim", 40, "Observation size (cube-double-play: 40).")
flags.DEFINE_integer("action_dim", 5, "Action size.")
flags.DEFINE_bool("allocate", False, "Also allocate the shared layout and count its bytes.")
flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/replay_memory_DEVICE).")
FLAGS = flags.FLAGS


def transitions(n: int, obs_dim: int, action_dim: int) -> dict:
    """Shape-only float32 transitions of the replay fields, leading dimension n."""
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    return {
        "observations": f32(n, obs_dim),
        "actions": f32(n, action_dim),
        "rewards": f32(n),
        "terminals": f32(n),
        "masks": f32(n),
        "next_observations": f32(n, obs_dim),
    }


def nbytes(tree) -> int:
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def layouts(rows: int, offline: int, steps: int, obs_dim: int, action_dim: int) -> dict:
    """Bytes of both layouts for R rows: per-row copies vs shared offline + per-row online."""
    data = transitions(offline, obs_dim, action_dim)
    stacked = lambda capacity: jax.eval_shape(
        lambda: online.stack_replays(
            {k: np.zeros(v.shape, v.dtype) for k, v in transitions(1, obs_dim, action_dim).items()},
            capacity,
            rows,
        )
    )
    per_row_copies = nbytes(stacked(offline + steps))  # the old buffers: dataset + online each
    shared = nbytes(data) + nbytes(stacked(steps))
    return {"rows": rows, "per_row_copies_gb": per_row_copies / 1e9, "shared_gb": shared / 1e9}


def allocated_bytes(rows: int, offline: int, steps: int, obs_dim: int, action_dim: int) -> int:
    """Bytes the device holds after building the shared layout (offline + R online buffers)."""
    before = sum(x.nbytes for x in jax.live_arrays())
    zeros = {
        k: np.zeros(v.shape, v.dtype) for k, v in transitions(offline, obs_dim, action_dim).items()
    }
    kept = (jax.device_put(zeros), online.stack_replays(zeros, steps, rows))
    jax.block_until_ready(kept)
    return sum(x.nbytes for x in jax.live_arrays()) - before


def main(_):
    shape = (FLAGS.offline, FLAGS.online, FLAGS.obs_dim, FLAGS.action_dim)
    results = [layouts(int(r), *shape) for r in FLAGS.rows]
    for row in results:
        if FLAGS.allocate:
            row["allocated_gb"] = allocated_bytes(row["rows"], *shape) / 1e9
        print(
            f"R={row['rows']:>3}: per-row copies {row['per_row_copies_gb']:.3f} GB, shared "
            f"{row['shared_gb']:.3f} GB"
            + (f" (allocated {row['allocated_gb']:.3f} GB)" if "allocated_gb" in row else "")
        )
    settings = dict(offline=FLAGS.offline, online=FLAGS.online, obs_dim=FLAGS.obs_dim,
                    action_dim=FLAGS.action_dim)  # fmt: skip
    record = {"settings": settings, "results": results, "command": " ".join(sys.argv)}
    print("wrote", write_result("replay_memory", record, FLAGS.out or None))


if __name__ == "__main__":
    app.run(main)
