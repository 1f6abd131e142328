"""The update-speed benchmark runs end to end on a tiny setting and its numbers hang together."""

import pytest

from benchmarks import update_speed


def test_peak_table_tells_the_h100_variants_apart():
    sxm = update_speed.peak_tflops("NVIDIA H100 80GB HBM3")
    pcie = update_speed.peak_tflops("NVIDIA H100 PCIe")
    assert sxm["bf16"] > pcie["bf16"] and sxm == update_speed.peak_tflops("NVIDIA H200")
    assert update_speed.peak_tflops("NVIDIA A100-SXM4-80GB")["tf32"] == 156.0
    assert update_speed.peak_tflops("cpu") is None


def test_update_speed_row_is_consistent():
    row = update_speed.measure("small", num_seeds=2, steps=2, calls=1, compute_dtype="float32")
    assert row["gflop_per_update"] > 0 and row["compile_s"] > 0
    per_seed, aggregate = row["updates_per_s_per_seed"], row["updates_per_s_aggregate"]
    assert aggregate == pytest.approx(2 * per_seed, rel=1e-3)
    assert row["ms_per_update"] == pytest.approx(1e3 / per_seed, rel=1e-2)
    assert row["achieved_gflops"] == pytest.approx(row["gflop_per_update"] * aggregate, rel=1e-2)
    assert 0.0 <= row["outside_compiled_share"] < 1.0
    # The loop's own checkpoint save is part of its wall time, and is excluded from the share.
    assert row["loop_s"] > row["final_checkpoint_s"] > 0
