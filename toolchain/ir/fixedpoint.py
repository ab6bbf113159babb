"""TFLite / TFLite Micro fixed-point requantization, vectorised in NumPy int64.

TFLM's default build (no TFLITE_SINGLE_ROUNDING) requantizes an int32 accumulator with gemmlowp's
double rounding: `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, M), right)`, where
(M, shift) = QuantizeMultiplier(double(s_in) * double(s_w) / double(s_out)). These functions follow
the C++ definitions literally (truncating division included) so that the reference is bit-exact with
the `tflite-micro` interpreter; the C kernels use an equivalent shift form (see docs/c-export.md).
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def round_half_away(v: float) -> int:
    """std::round / TfLiteRound: halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplier: real ≈ M · 2^(shift − 31) with M in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:  # everything would be shifted out: TFLite flushes to zero
        return 0, 0
    return int(q_fixed), int(shift)


def effective_scales(s_in: np.float32, s_w: np.ndarray, s_out: np.float32) -> np.ndarray:
    """double(s_in)·double(s_w)/double(s_out) with float32 inputs, as TFLite's per-channel setup."""
    return float(s_in) * np.asarray(s_w, dtype=np.float32).astype(np.float64) / float(s_out)


def quantize_multipliers(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(real)]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    return mult, shift


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (what an int32 multiply does on every target we build for)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def _trunc_div(a: np.ndarray, d: int) -> np.ndarray:
    """C integer division (rounds toward zero) for int64 arrays."""
    q = np.abs(a) // d
    return np.where(a < 0, -q, q)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |a·b| <= 2^62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, out)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """tflite::MultiplyByQuantizedMultiplier (double rounding), elementwise with broadcasting."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, mult), right)


def requantize(
    acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, act_min: int, act_max: int = 127
) -> np.ndarray:
    """int32 accumulator -> int8 output: scale, add the output zero point, clamp."""
    out = multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(out, act_min, act_max).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE: round(x / scale) half away from zero, + zero point, saturate.

    Division in float32 by the float32 scale, as the converter's quantize op does on every runtime.
    """
    v = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return np.clip(r + int(zero_point), -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32 as DEQUANTIZE / ONNX DequantizeLinear: (q − zero_point) · scale in float32."""
    return (np.asarray(q).astype(np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(scale)
