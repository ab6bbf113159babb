"""The C requantization (portable shift form and the Cortex-M4 SMMULR form) against TFLite's
MultiplyByQuantizedMultiplier, over random and edge-case operands within the export's |acc| bound."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from helpers_c import C_DIR

from toolchain.ir.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from toolchain.mcu.cgen import ACC_LIMIT
from toolchain.mcu.runner import compile_host, compile_qemu, core, run_qemu
from toolchain.paths import KERNEL_DIR


def _operands(n: int, seed: int = 7) -> np.ndarray:
    """(acc, mult, shift) with |acc << max(shift, 0)| < 2^30, as the export guarantees."""
    rng = np.random.default_rng(seed)
    shift = rng.integers(-31, 8, n)
    shift[: n // 10] = 0  # no rounding shift at all
    shift[n // 10 : n // 5] = rng.integers(1, 8, n // 10)  # left shifts (rare in real models)
    real = np.exp(rng.uniform(np.log(1e-6), np.log(0.999), n))
    mult = np.array([quantize_multiplier(float(r))[0] for r in real], dtype=np.int64)
    mult[:5] = [0, 2**30, 2**31 - 1, 2**30 + 1, 1518500250]
    limit = (ACC_LIMIT - 1) >> np.maximum(shift, 0)
    acc = rng.integers(-limit, limit + 1)
    # Ties of both roundings and the extremes.
    acc[5:15] = [0, 1, -1, limit[5], -limit[6], 2**14, -(2**14), 3 << 10, -(3 << 10), 12345]
    acc = np.clip(acc, -limit, limit)
    return np.stack([acc, mult, shift], axis=1).astype(np.int32)


def _expected(ops: np.ndarray) -> np.ndarray:
    return multiply_by_quantized_multiplier(ops[:, 0], ops[:, 1], ops[:, 2]).astype(np.int32)


def test_host_requantization_matches_tflite(tmp_path):
    ops = _operands(200_000)
    srcs = [C_DIR / "requant_main.c", KERNEL_DIR / "tc_permute.c"]  # the kernel file calls the permutation
    exe = compile_host(srcs, [C_DIR / "requant", KERNEL_DIR], tmp_path / "requant")
    ops.tofile(tmp_path / "in.bin")
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.fromfile(tmp_path / "out.bin", dtype=np.int32)
    want = _expected(ops)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (
        f"{bad.size} differ, e.g. {ops[bad[:3]].tolist()} -> {got[bad[:3]]} != {want[bad[:3]]}"
    )


@pytest.mark.parametrize("name", ["cortex-m4", "cortex-m3"])  # SMMULR (DSP) form and the portable form
def test_cortex_m_requantization_matches_tflite(name, tmp_path):
    ops = _operands(3000, seed=11)
    body = ",\n".join(f"{{{a}, {m}, {s}}}" for a, m, s in ops.tolist())
    (tmp_path / "tc_requant_vectors.h").write_text(
        f"#define TC_RQ_N {len(ops)}\nstatic const int32_t tc_rq[TC_RQ_N][3] = {{\n{body}\n}};\n"
    )
    c = core(name)
    incs = [C_DIR / "requant", KERNEL_DIR, tmp_path]
    srcs = [C_DIR / "requant_main.c", KERNEL_DIR / "tc_permute.c"]
    elf = compile_qemu(srcs, incs, c, tmp_path, defines=["TC_SEMIHOST"], name="requant")
    if name == "cortex-m4":
        dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True).stdout
        assert "smmulr" in dis  # the DSP form is the one under test
    out = run_qemu(elf, c)
    # Only the harness's hex lines (QEMU itself may warn on stderr, e.g. lm3s6965evb's timer).
    hexes = "".join(line for line in out.splitlines() if re.fullmatch(r"[0-9a-f]+", line))
    got = np.array([int(hexes[i : i + 8], 16) for i in range(0, len(hexes), 8)], dtype=np.uint32)
    assert np.array_equal(got.view(np.int32), _expected(ops))
