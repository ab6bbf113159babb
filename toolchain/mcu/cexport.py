"""`toolchain export c`: the head + exit as packed C arrays for microcontrollers.

OUT/ receives model_data.h and model_data.c (compile them with the kernels in
firmware_templates/kernels/), model.json + reference.npz (the HeadIR, `toolchain.ir.io`, with the
predicted memory), plus head_exit.tflite for int8 (the flatbuffer the int8 arrays were read from, for
TFLite Micro parity checks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bundle import Bundle, as_bundle
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_directory
from toolchain.ir.head import HeadIR
from toolchain.ir.io import FILES as IR_FILES
from toolchain.ir.io import ir_files, load_ir
from toolchain.mcu.cgen import header_text, source_text
from toolchain.mcu.memory import predict_memory
from toolchain.paths import KERNEL_DIR
from toolchain.progress import table
from toolchain.quantize import build_ir

KERNEL_SOURCES = {
    DType.INT8: ("tc_head.c", "tc_permute.c", "tc_kernels_s8.c"),
    DType.FLOAT32: ("tc_head.c", "tc_permute.c", "tc_kernels_f32.c"),
}
EXPORT_FILES = ("model_data.h", "model_data.c", *IR_FILES, "head_exit.tflite")


@dataclass(frozen=True)
class CModel:
    """An export directory: the IR it was generated from and what compiling it needs."""

    dir: Path
    ir: HeadIR = field(repr=False)
    memory: dict[str, Any] = field(repr=False)  # predicted (toolchain.mcu.memory.predict_memory)

    @classmethod
    def of(cls, export_dir: Path, ir: HeadIR) -> CModel:
        return cls(Path(export_dir), ir, predict_memory(ir.shape))

    @property
    def dtype(self) -> DType:
        return self.ir.dtype

    @property
    def model_hash(self) -> str:
        return self.ir.model_hash

    @property
    def kernel_sources(self) -> list[Path]:
        return [KERNEL_DIR / f for f in KERNEL_SOURCES[self.ir.dtype]]

    @property
    def include_dirs(self) -> list[Path]:
        """The export dir (model_data.h) and the kernel dir."""
        return [self.dir, KERNEL_DIR]

    @property
    def sources(self) -> list[Path]:
        """Every C file to compile: model_data.c and the kernels for this dtype."""
        return [self.dir / "model_data.c", *self.kernel_sources]


def load_cmodel(export_dir: str | Path) -> CModel:
    """The CModel of an existing export directory (checks its hash)."""
    return CModel.of(Path(export_dir), load_ir(export_dir))


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ToolchainError(f"{out} exists and is not a directory", hint="choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES)
        if foreign:
            raise ToolchainError(
                f"{out} already holds other files ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); the export replaces the whole directory",
                hint="choose a new or empty directory for --out (e.g. build/model)",
            )


def export_c(
    bundle: Bundle | str | Path,
    out: str | Path,
    dtype: DType | str = DType.INT8,
    data_dir: str | Path | None = None,
) -> CModel:
    """Quantize (int8) or take the float weights, calibrate the exit rule, write OUT/ atomically."""
    dtype = DType.parse(dtype)
    bundle = as_bundle(bundle)
    out = Path(out)
    _check_out(out)
    ir, tflite = build_ir(bundle, dtype, data_dir)
    title = f"bundle {bundle.config.name!r} ({bundle.path.name})"
    try:
        header, source = header_text(ir, title), source_text(ir, title)
    except ValueError as exc:
        raise ToolchainError(f"cannot export this model to C: {exc}") from None
    cm = CModel.of(out, ir)
    extra = {
        "bundle": {"path": str(bundle.path), "name": bundle.config.name, "meta": bundle.meta},
        "kernel_sources": [os.path.relpath(p, KERNEL_DIR) for p in cm.kernel_sources],
        "memory": cm.memory,
    }
    files = {"model_data.h": header.encode(), "model_data.c": source.encode(), **ir_files(ir, extra)}
    if tflite is not None:
        files["head_exit.tflite"] = tflite
    with atomic_directory(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return cm


def memory_table(cm: CModel) -> str:
    mem = cm.memory
    rows: list[tuple[str, str, int]] = [
        (name, "flash", size) for name, size in mem["flash"]["arrays"].items()
    ]
    rows.append(("tc_layers (descriptors)", "flash", mem["flash"]["tc_layers"]))
    rows += [(name, "ram", size) for name, size in mem["ram"]["buffers"].items()]
    rows.append(("stack (estimate)", "ram", mem["ram"]["stack_estimate"]))
    rows += [(f"{k} (caller)", "ram", v) for k, v in mem["ram"]["caller_buffers"].items()]
    return table(["item", "memory", "bytes"], rows)
