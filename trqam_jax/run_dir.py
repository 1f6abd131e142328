"""Writing the run directory (docs/run_directory.md): config, provenance, metrics, summary."""

import json
import os
import platform

import jax


def versions() -> dict:
    """Versions of the software a result depends on."""
    import flax
    import mujoco
    import ogbench
    import optax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "ogbench": getattr(ogbench, "__version__", "unknown"),
        "mujoco": mujoco.__version__,
    }


def write_json(path: str, payload: dict) -> None:
    """Write atomically, so a crash never leaves a half-written file behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def append_jsonl(path: str, rows: list[dict]) -> None:
    """Append one JSON object per line and flush it to disk."""
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: str, keep) -> None:
    """Keep only the rows for which `keep(row)` is true (used when resuming from a checkpoint).

    Rows written after the checkpoint a run resumes from would otherwise appear twice.
    """
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        for row in rows:
            if keep(row):
                f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, path)


def append_rows(path: str, values: dict, base: dict, seeds, budgets) -> None:
    """Append one record per row: `base` + seed + kl_budget + that row's value of every metric.

    Args:
      values: metric name -> (R,) per-row values.
      seeds, budgets: (R,) seed index and kl_budget of every row.
    """
    records = []
    for row, (seed, budget) in enumerate(zip(seeds, budgets, strict=True)):
        record = dict(base, seed=int(seed), kl_budget=float(budget))
        record.update({name: float(v[row]) for name, v in values.items()})
        records.append(record)
    append_jsonl(path, records)
