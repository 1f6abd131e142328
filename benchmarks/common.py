"""What every benchmark result records: the device, the software versions, the process's peak
memory, and where it goes."""

import json
import os
import platform
import tempfile
import time

import jax

from trqam_jax import checkpoint
from trqam_jax.memory import peak_memory
from trqam_jax.versions import versions

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_info() -> dict:
    """The JAX backend and its device, the host CPU and the load other processes put on it."""
    device = jax.devices()[0]
    info = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "num_devices": jax.device_count(),
        "host_cpu": platform.processor() or platform.machine(),
        "host_cpus_usable": len(os.sched_getaffinity(0)),
        # Other processes move CPU numbers a lot on a shared machine: record how busy it was.
        "load_average_1min": os.getloadavg()[0],
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["host_cpu"] = names[0]
    except OSError:
        pass
    return info


def device_label(info: dict) -> str:
    """A file-name label: "cpu", or the accelerator's kind ("nvidia_h100_80gb_hbm3")."""
    if info["platform"] == "cpu":
        return "cpu"
    return "".join(c if c.isalnum() else "_" for c in info["device_kind"].lower())


def write_result(name: str, record: dict, out: str | None = None) -> str:
    """Write `record` (plus device, versions, date and the process's peak memory so far,
    `memory.peak_memory`) to `out` or results/<name>_<device>.json.

    Returns the path written.
    """
    info = device_info()
    record = dict(
        record,
        device=info,
        versions=versions(),
        peak_memory=peak_memory(),
        date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    path = out or os.path.join(RESULTS_DIR, f"{name}_{device_label(info)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return path


def checkpoint_save_s(states, step: int) -> float:
    """Seconds of one `checkpoint.save` of `states` into a scratch directory: the save
    `loop.run_stage` makes at a stage's end, timed alone."""
    with tempfile.TemporaryDirectory() as scratch:
        manager = checkpoint.manager(scratch)
        jax.block_until_ready(states)
        start = time.perf_counter()
        checkpoint.save(manager, step, states)
        return time.perf_counter() - start
