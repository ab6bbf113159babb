"""Comparison of device outputs with the host reference, and the summary figures verify reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.dtypes import DType


def error_metrics(device: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, max abs error, L2 relative error and cosine similarity over the elements the device
    sent as finite numbers; `non_finite` counts the others (NaN or infinity from a broken device), so the
    report stays valid JSON whatever the device sends."""
    with np.errstate(invalid="ignore"):  # a signalling NaN from the device warns when widened
        d = np.asarray(device, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    finite = np.isfinite(d)
    d, r = d[finite], r[finite]
    diff = d - r
    rn, dn = float(np.linalg.norm(r)), float(np.linalg.norm(d))
    if rn == 0.0 and dn == 0.0:
        cos = 1.0
    elif rn == 0.0 or dn == 0.0:
        cos = 0.0
    else:
        cos = float(np.clip(np.dot(d, r) / (dn * rn), -1.0, 1.0))
    return {
        "rmse": float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0,
        "mae": float(np.mean(np.abs(diff))) if diff.size else 0.0,
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "l2_relative": float(np.linalg.norm(diff) / rn) if rn > 0 else float(np.linalg.norm(diff) > 0),
        "cosine": cos,
        "non_finite": int(np.count_nonzero(~finite)),
    }


def tolerance_text(dtype: DType) -> str:
    s = DType(dtype).spec
    return "bit-exact" if DType(dtype).exact else f"|d-r| <= {s.atol:g} + {s.rtol:g}*|r|"


def elements_match(device: np.ndarray, reference: np.ndarray, dtype: DType | str) -> np.ndarray:
    """Per-sample bool: |device − reference| <= atol + rtol·|reference| for every element, with the
    dtype's tolerance (toolchain.dtypes: int8 bit-exact, float32 documented in docs/firmware.md)."""
    dtype = DType(dtype)
    if dtype.exact:
        return np.all(device == reference, axis=1)
    r = np.asarray(reference, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf from the device: no match
        d = np.asarray(device, dtype=np.float64)
        return np.all(np.abs(d - r) <= dtype.spec.atol + dtype.spec.rtol * np.abs(r), axis=1)


@dataclass(frozen=True)
class CounterUnit:
    name: str  # what the figure is
    scale: float  # multiply the raw counter delta by this


def counter_unit(kind: str, hz: int, emulator_counter: str | None) -> CounterUnit:
    if kind == "dwt_cycles":
        return CounterUnit("cycles (DWT CYCCNT)", 1.0)
    if kind == "systick":
        if emulator_counter == "icount":
            # -icount shift=0: one instruction per ns of virtual time; SysTick ticks at hz.
            return CounterUnit("instructions (QEMU icount)", 1e9 / hz if hz else 0.0)
        return CounterUnit("cycles (SysTick)", 1.0)
    if kind == "host_ns":
        return CounterUnit("ns (host CLOCK_MONOTONIC)", 1.0)
    if kind == "micros":
        return CounterUnit("µs (micros())", 1.0)
    return CounterUnit(f"counter {kind}", 1.0)


def counter_stats(counts: np.ndarray, unit: CounterUnit) -> dict[str, Any]:
    v = np.asarray(counts, dtype=np.float64) * unit.scale
    if v.size == 0:
        return {"unit": unit.name, "mean": 0.0, "min": 0.0, "max": 0.0}
    return {"unit": unit.name, "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def first_mismatches(indices: np.ndarray, ok: dict[str, np.ndarray], limit: int = 10) -> list[dict[str, Any]]:
    """The first `limit` failing samples and what failed for each."""
    bad = np.zeros(len(indices), dtype=bool)
    for v in ok.values():
        bad |= ~v
    out = []
    for i in np.flatnonzero(bad)[:limit]:
        out.append({"test_index": int(indices[i]), "failed": [k for k, v in ok.items() if not v[i]]})
    return out
