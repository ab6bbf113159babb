"""Hand-derived expectations for the small numeric functions verify and the memory predictor rest on:
each value below was worked out on paper, so a changed comparison, constant or formula fails here
(and fast: these tests are what mutation testing runs against; see benchmarks/mutation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolchain.dtypes import DType
from toolchain.ir.head import HeadShape
from toolchain.ir.layers import LayerKind, LayerShape
from toolchain.mcu.memory import DESCRIPTOR_BYTES, STACK_ESTIMATE, predict_memory
from toolchain.mcu.verify.metrics import (
    counter_stats,
    counter_unit,
    elements_match,
    error_metrics,
    first_mismatches,
    tolerance_text,
)


# ----------------------------------------------------------------------------------------------
# verify's comparisons
# ----------------------------------------------------------------------------------------------
def test_int8_comparison_is_bit_exact_per_sample():
    ref = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int8)
    dev = np.array([[1, 2, 3], [4, 5, 7]], dtype=np.int8)
    assert elements_match(dev, ref, "int8").tolist() == [True, False]
    assert tolerance_text(DType.INT8) == "bit-exact"


def test_float32_comparison_boundary():
    """|d - r| <= 1e-5 + 1e-5·|r|: at r = 0 the bound is 1e-5 exactly; at r = 1000 it is 0.01001."""
    r = np.array([[0.0, 1000.0]])
    assert elements_match(np.array([[1e-5, 1000.0]]), r, "float32").tolist() == [True]
    assert elements_match(np.array([[-1e-5, 1000.0]]), r, "float32").tolist() == [True]
    assert elements_match(np.array([[1.1e-5, 1000.0]]), r, "float32").tolist() == [False]
    assert elements_match(np.array([[0.0, 1000.01]]), r, "float32").tolist() == [True]
    assert elements_match(np.array([[0.0, 1000.0101]]), r, "float32").tolist() == [False]
    assert elements_match(np.array([[np.nan, 1000.0]]), r, "float32").tolist() == [False]
    assert elements_match(np.array([[np.inf, 1000.0]]), r, "float32").tolist() == [False]
    assert tolerance_text(DType.FLOAT32) == "|d-r| <= 1e-05 + 1e-05*|r|"


def test_error_metrics_by_hand():
    # device [1, 2] vs reference [1, 4]: diff [0, -2].
    m = error_metrics(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(2.0))
    assert m["mae"] == pytest.approx(1.0)
    assert m["max_abs"] == pytest.approx(2.0)
    assert m["l2_relative"] == pytest.approx(2.0 / math.sqrt(17.0))
    assert m["cosine"] == pytest.approx(9.0 / (math.sqrt(5.0) * math.sqrt(17.0)))
    assert m["non_finite"] == 0


def test_error_metrics_skip_and_count_non_finite_device_values():
    m = error_metrics(np.array([np.nan, 2.0, np.inf]), np.array([1.0, 4.0, 1.0]))
    assert m["non_finite"] == 2
    assert (m["rmse"], m["mae"], m["max_abs"]) == (2.0, 2.0, 2.0)
    assert m["l2_relative"] == pytest.approx(0.5) and m["cosine"] == pytest.approx(1.0)


def test_error_metrics_edge_cases():
    zero, one = np.zeros(3), np.ones(3)
    assert error_metrics(zero, zero) == {
        "rmse": 0.0, "mae": 0.0, "max_abs": 0.0, "l2_relative": 0.0, "cosine": 1.0, "non_finite": 0,
    }  # fmt: skip
    assert error_metrics(one, zero)["cosine"] == 0.0 and error_metrics(one, zero)["l2_relative"] == 1.0
    assert error_metrics(zero, one)["cosine"] == 0.0 and error_metrics(zero, one)["l2_relative"] == 1.0
    assert error_metrics(-one, one)["cosine"] == pytest.approx(-1.0)
    empty = error_metrics(np.zeros(0), np.zeros(0))
    assert (empty["rmse"], empty["mae"], empty["max_abs"]) == (0.0, 0.0, 0.0)


def test_counter_units():
    icount = counter_unit("systick", 25_000_000, "icount")
    assert icount.name == "instructions (QEMU icount)" and icount.scale == 40.0  # 1e9 ns/s / 25 MHz
    assert counter_unit("systick", 25_000_000, None) == counter_unit("systick", 0, "pty")
    assert counter_unit("systick", 25_000_000, None).scale == 1.0
    assert counter_unit("dwt_cycles", 0, None).name == "cycles (DWT CYCCNT)"
    assert counter_unit("host_ns", 0, None).name.startswith("ns")
    assert counter_unit("micros", 0, None).name.startswith("µs")
    assert counter_unit("odd", 0, None).name == "counter odd"
    assert counter_unit("systick", 0, "icount").scale == 0.0  # unknown clock: no figure, not a crash
    s = counter_stats(np.array([1, 2, 6]), icount)
    assert s == {"unit": icount.name, "mean": 120.0, "min": 40.0, "max": 240.0}
    assert counter_stats(np.zeros(0), icount)["mean"] == 0.0


def test_first_mismatches_names_what_failed():
    idx = np.array([5, 6, 7, 8])
    ok = {"split": np.array([True, False, True, False]), "exit_logits": np.array([True, True, False, False])}
    assert first_mismatches(idx, ok) == [
        {"test_index": 6, "failed": ["split"]},
        {"test_index": 7, "failed": ["exit_logits"]},
        {"test_index": 8, "failed": ["split", "exit_logits"]},
    ]
    assert first_mismatches(idx, ok, limit=1) == [{"test_index": 6, "failed": ["split"]}]


# ----------------------------------------------------------------------------------------------
# The memory predictor on a hand-sized model
# ----------------------------------------------------------------------------------------------
def _shape(dtype: DType) -> HeadShape:
    """300 -> 4 with an index table (300 inputs: uint16 indices), in-degree 3; exit 4 -> 2 dense."""
    j1 = LayerShape("junction_1", LayerKind.TABLE, 300, 4, 3, True)
    ex = LayerShape("exit_logits", LayerKind.DENSE, 4, 2, 4, False)
    return HeadShape(dtype, 1, (j1, ex))


def test_predicted_memory_int8_by_hand():
    m = predict_memory(_shape(DType.INT8))
    arrays = m["flash"]["arrays"]
    assert arrays == {
        "tc_model_hash": 8,
        "tc_junction_1_w": 12,  # 4 x 3 int8
        "tc_junction_1_bias": 16,  # 4 int32
        "tc_junction_1_mult": 16,
        "tc_junction_1_shift": 4,  # 4 int8
        "tc_junction_1_idx": 24,  # 4 x 3 uint16
        "tc_exit_logits_w": 8,
        "tc_exit_logits_bias": 8,
        "tc_exit_logits_mult": 8,
        "tc_exit_logits_shift": 2,
    }
    assert m["flash"]["model_data"] == 106
    assert m["flash"]["tc_layers"] == 2 * DESCRIPTOR_BYTES[4] == 104
    # Every array starts 4-byte aligned: the shifts round up to 4.
    assert m["flash"]["model_data_aligned"] == 108 + 104
    # No intermediate hidden layer, no permutation buffer (a dense layer reads its input in place);
    # the int32 accumulators of the widest layer.
    assert m["ram"]["buffers"] == {"tc_acc": 16} and m["ram"]["static"] == 16
    assert m["ram"]["caller_buffers"] == {"input": 300, "split_out": 4, "exit_logits_out": 2}
    assert m["ram"]["stack_estimate"] == STACK_ESTIMATE[DType.INT8]


def test_predicted_memory_float32_by_hand():
    m = predict_memory(_shape(DType.FLOAT32))
    assert m["flash"]["arrays"] == {
        "tc_model_hash": 8,
        "tc_junction_1_w": 48,
        "tc_junction_1_bias": 16,
        "tc_junction_1_idx": 24,
        "tc_exit_logits_w": 32,
        "tc_exit_logits_bias": 8,
    }
    assert m["flash"]["model_data"] == 136 and m["flash"]["model_data_aligned"] == 136 + 104
    assert m["ram"]["buffers"] == {} and m["ram"]["static"] == 0
    assert m["ram"]["caller_buffers"] == {"input": 1200, "split_out": 16, "exit_logits_out": 8}


def test_predicted_memory_of_a_deep_index_free_head():
    """800 -> 40 affine (d_in 40), 40 -> 40 cyclic with in-degree 9, exit 40 -> 10: the ping-pong
    buffer holds the 40 hidden values, the permutation buffer the longest extended input."""
    j1 = LayerShape("junction_1", LayerKind.AFFINE, 800, 40, 40, True, (("a", 3), ("b", 5)))
    j2 = LayerShape("junction_2", LayerKind.AFFINE, 40, 40, 9, True, (("a", 1), ("b", 0)))
    ex = LayerShape("exit_logits", LayerKind.DENSE, 40, 10, 40, False)
    m = predict_memory(HeadShape(DType.INT8, 2, (j1, j2, ex)))
    # junction_1: starts r·40 mod 800 <= 760, extent 800 (permuted: a buffer of 800).
    # junction_2: starts r·9 mod 40 take every value 0..39 (gcd(9, 40) = 1): extent 39 + 9 = 48 > 40,
    # the window wraps, so it is buffered too; the buffer is the larger of the two.
    assert m["ram"]["buffers"] == {"tc_hidden": 2 * 40, "tc_xbuf": 800, "tc_acc": 4 * 40}
    assert "tc_junction_1_idx" not in m["flash"]["arrays"]  # index-free: two integers, no table
    assert j2.window_extent == 48 and j2.windows == (40, 1)
