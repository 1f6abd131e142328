"""Peak memory (trqam_jax/memory.py): one measurement for the launcher's summary and the
benchmarks' results (the summary's figure is checked in tests/test_launcher.py)."""

import json
import resource

import jax

from benchmarks import suite
from benchmarks.common import device_info, write_result
from trqam_jax import memory


def test_host_peak_is_getrusage_in_bytes():
    kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    before = kib() * 1024
    peak = memory.host_peak_rss_bytes()
    assert 0 < before <= peak <= kib() * 1024


def test_device_peaks_where_the_backend_counts_them():
    peak = memory.peak_memory()
    if jax.devices()[0].platform == "cpu":  # the CPU backend keeps no allocator statistics
        assert peak["device_peak_bytes"] is None and peak["device_peak_bytes_per_device"] is None
        assert memory.describe(peak) == (
            f"peak memory: host {peak['host_peak_rss_bytes'] / 1e9:.2f} GB (RSS)"
        )
    else:
        per_device = peak["device_peak_bytes_per_device"]
        assert len(per_device) == jax.local_device_count() and min(per_device) >= 0
        assert peak["device_peak_bytes"] == sum(per_device)
        assert ", devices " in memory.describe(peak)


def test_benchmark_results_record_the_peak(tmp_path):
    path = write_result("probe", {"benchmark": "probe"}, str(tmp_path / "probe.json"))
    with open(path) as f:
        record = json.load(f)
    assert record["peak_memory"]["host_peak_rss_bytes"] > 0
    # The suite's table prints it in its header.
    record.update(command="python -m benchmarks.suite", parts={}, device=device_info())
    assert f"- {memory.describe(record['peak_memory'])}," in suite.markdown(record)
