"""Shared helpers for the quantize / C export / kernel tests: exports and the TFLM oracle.

Compiling and running the generated C is the library's own runner (toolchain.mcu.runner). Exports and
oracle runs are memoised per process, so several test modules can ask for the same export without
paying for it twice (pytest instantiates imported fixtures per module).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import numpy as np

C_DIR = Path(__file__).resolve().parent / "c"  # test-only C: requantization unit test, fuzzer, baseline

_cache: dict = {}


def memo(key, make):
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def _deep(pattern: str, epochs: int):
    """[800, 40, 40, 10] split after the second hidden layer (40 -> 40 with in-degree 9, so an
    index-free window wraps around) and an exit branch with a hidden layer: every buffer is used."""
    from conftest import small_config

    from toolchain.config import validate

    cfg = small_config(epochs, pattern=pattern, split_after=2)
    cfg.exit.hidden = [16]
    return validate(cfg)


def deep_bundle(tmp_root: Path, splits, pattern: str) -> Path:
    def make():
        from toolchain.train import train

        out = tmp_root / f"deep_{pattern}"
        train(_deep(pattern, 1), out, data=splits, quiet=True)
        return out

    return memo(("deep_bundle", pattern), make)


def export(bundle: Path, dtype: str, data_root: Path, tmp_root: Path):
    """The CModel of an export into a fresh directory, memoised per bundle and dtype."""

    def make():
        from toolchain.mcu.cexport import export_c

        out = tmp_root / f"export_{Path(bundle).name}_{dtype}"
        cm = export_c(bundle, out, dtype, data_root)
        return cm

    return memo(("export", str(bundle), dtype), make)


def encoded_test_set(ref, splits) -> np.ndarray:
    return memo(("encoded", ref.model_hash), lambda: ref.encode_input(splits.x_test))


def reference_outputs(ref, splits):
    return memo(("refout", ref.model_hash), lambda: ref.infer(encoded_test_set(ref, splits)))


def tflm_outputs(tflite: bytes, x_enc: np.ndarray):
    """(split, exit logits) from the tflite-micro interpreter, sample by sample (int8 or float32)."""
    from tflite_micro import runtime

    from toolchain.quantize.tflite import output_order

    order = output_order(tflite)
    it = runtime.Interpreter.from_bytes(tflite)
    outs: dict[str, list[np.ndarray]] = {"split": [], "exit": []}
    for i in range(len(x_enc)):
        it.set_input(x_enc[i : i + 1], 0)
        it.invoke()
        for k, name in enumerate(order):
            outs[name].append(it.get_output(k)[0].copy())
    return np.stack(outs["split"]), np.stack(outs["exit"])


@functools.cache
def tool_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
