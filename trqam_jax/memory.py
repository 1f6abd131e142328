"""Peak memory of this process, for the launcher's summary and the benchmarks' results.

Two figures, both since the process started: the host's peak resident set (`getrusage`'s
`ru_maxrss`, always available) and each local device's allocator peak (`peak_bytes_in_use` of
`Device.memory_stats()`, where the backend keeps one: GPUs and TPUs; the CPU backend does not,
and there the host figure holds the arrays too).
"""

import resource
import sys

import jax


def host_peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes (ru_maxrss is KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def device_peak_bytes() -> list[int] | None:
    """Each local device's peak bytes in use, or None where the backend keeps no such count."""
    peaks = []
    for device in jax.local_devices():
        stats = device.memory_stats()  # None on the CPU backend
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        peaks.append(int(stats["peak_bytes_in_use"]))
    return peaks


def peak_memory() -> dict:
    """{"host_peak_rss_bytes": int, "device_peak_bytes": the devices' sum or None,
    "device_peak_bytes_per_device": [int, ...] or None}: the record the summary and benchmarks
    keep."""
    devices = device_peak_bytes()
    return {
        "host_peak_rss_bytes": host_peak_rss_bytes(),
        "device_peak_bytes": None if devices is None else sum(devices),
        "device_peak_bytes_per_device": devices,
    }


def describe(peak: dict) -> str:
    """One line for people, e.g. "peak memory: host 4.52 GB (RSS), devices 12.3 GB (2 devices)"."""
    line = f"peak memory: host {peak['host_peak_rss_bytes'] / 1e9:.2f} GB (RSS)"
    per_device = peak["device_peak_bytes_per_device"]
    if per_device is not None:
        count = f"{len(per_device)} device{'s' * (len(per_device) > 1)}"
        line += f", devices {peak['device_peak_bytes'] / 1e9:.2f} GB ({count})"
    return line
