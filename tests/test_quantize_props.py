"""Property tests of the fixed-point arithmetic against exact integer / rational definitions."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.calibrate import exit_margin
from toolchain.ir.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

int32s = st.integers(-(2**31), 2**31 - 1)


def _round_half_up(q: Fraction) -> int:
    return math.floor(q + Fraction(1, 2))


def _round_half_away(q: Fraction) -> int:
    return int(math.copysign(math.floor(abs(q) + Fraction(1, 2)), q))


@given(int32s, st.integers(0, 2**31 - 1))
def test_srdhm_is_round_half_up_of_the_doubled_high_product(a, b):
    # gemmlowp's sign-dependent nudge + truncating division == round half up of a·b / 2^31; the C
    # kernel relies on this identity (it computes (a·b + 2^30) >> 31).
    got = int(saturating_rounding_doubling_high_mul(np.array([a]), np.array([b]))[0])
    assert got == _round_half_up(Fraction(a * b, 2**31))
    assert got == (a * b + 2**30) >> 31


def test_srdhm_saturates_only_on_int32_min_squared():
    m = -(2**31)
    assert int(saturating_rounding_doubling_high_mul(np.array([m]), np.array([m]))[0]) == 2**31 - 1


@given(int32s, st.integers(0, 31))
def test_rounding_divide_by_pot_rounds_half_away_from_zero(x, e):
    got = int(rounding_divide_by_pot(np.array([x]), np.array([e]))[0])
    assert got == _round_half_away(Fraction(x, 2**e))


@given(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_represents_the_real_multiplier(real):
    m, shift = quantize_multiplier(real)
    assert 2**30 <= m < 2**31
    approx = Fraction(m) * Fraction(2) ** (shift - 31)
    assert abs(approx - Fraction(real)) <= Fraction(real) * Fraction(1, 2**30)


def test_quantize_multiplier_edge_cases():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(0.5) == (2**30, 0)
    # Rounds up to 2^31: TFLite halves it and bumps the exponent.
    assert quantize_multiplier(1.0 - 2**-40) == (2**30, 1)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # flushed to zero below 2^-31
    # The last representable exponent, hand-derived: 1.5·2^-32 = 0.75·2^-31, so M = 0.75·2^31 and
    # shift = -31 (kept); one binade lower the shift would be -32 and TFLite flushes to zero.
    assert quantize_multiplier(1.5 * 2.0**-32) == (1610612736, -31)
    assert quantize_multiplier(1.5 * 2.0**-33) == (0, 0)


@settings(max_examples=300)
@given(st.integers(-(2**24), 2**24), st.floats(1e-6, 0.99))
def test_requantization_is_close_to_the_real_product(acc, real):
    m, shift = quantize_multiplier(real)
    got = int(multiply_by_quantized_multiplier(np.array([acc]), np.array([m]), np.array([shift]))[0])
    # Two roundings, each at most half a unit, plus the multiplier's representation error.
    assert abs(got - acc * real) <= 1.0 + abs(acc) * real * 2**-30


@given(st.integers(-(2**20), 2**20), st.integers(1, 4))
def test_left_shift_path(acc, left):
    m, _ = quantize_multiplier(0.75)
    got = int(multiply_by_quantized_multiplier(np.array([acc]), np.array([m]), np.array([left]))[0])
    assert got == _round_half_up(Fraction(acc * 2**left * m, 2**31))


@given(st.lists(st.integers(-128, 127), min_size=2, max_size=12))
def test_exit_margin_int8_is_top1_minus_top2(values):
    logits = np.array([values], dtype=np.int8)
    srt = sorted(values, reverse=True)
    assert int(exit_margin(logits)[0]) == srt[0] - srt[1]  # ties give margin 0


@given(st.lists(st.floats(-50, 50, width=32), min_size=2, max_size=12))
def test_exit_margin_float32_is_one_float32_subtraction(values):
    logits = np.array([values], dtype=np.float32)
    srt = sorted(np.float32(v) for v in values)[::-1]
    got = exit_margin(logits)[0]
    assert got.dtype == np.float32
    assert got == np.float32(srt[0] - srt[1])
