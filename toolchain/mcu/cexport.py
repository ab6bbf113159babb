"""`toolchain export c`: the head + exit as packed C arrays for microcontrollers.

OUT/ receives model_data.h and model_data.c (compile them with the kernels in
firmware_templates/kernels/), model.json (shapes, quantization, exit rule, predicted memory) and
reference.npz (what `HeadReference.from_export` needs), plus head_exit.tflite for int8 (the
flatbuffer the int8 arrays were read from, for TFLite Micro parity checks).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bundle import Bundle
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_directory
from toolchain.progress import log, table
from toolchain.quantize import HeadReference, build_reference, check_dtype
from toolchain.quantize.tflite import as_bundle
from toolchain.targets import FIRMWARE_DIR

KERNEL_DIR = FIRMWARE_DIR / "kernels"
KERNEL_SOURCES = {
    "int8": ("tc_head.c", "tc_kernels_s8.c"),
    "float32": ("tc_head.c", "tc_kernels_f32.c"),
}
EXPORT_FILES = ("model_data.h", "model_data.c", "model.json", "reference.npz", "head_exit.tflite")


@dataclass
class CModel:
    dir: Path
    dtype: str
    model_hash: str
    kernel_sources: list[Path]  # in firmware_templates/kernels/
    include_dirs: list[Path]  # the export dir (model_data.h) and the kernel dir
    memory: dict[str, Any]  # predicted (toolchain.mcu.memory.predict_memory)
    reference: HeadReference = field(repr=False)

    @property
    def sources(self) -> list[Path]:
        """Every C file to compile: model_data.c and the kernels for this dtype."""
        return [self.dir / "model_data.c", *self.kernel_sources]


def _cmodel(out: Path, ref: HeadReference) -> CModel:
    from toolchain.mcu.memory import predict_memory

    cm = CModel(
        dir=out,
        dtype=ref.dtype,
        model_hash=ref.model_hash,
        kernel_sources=[KERNEL_DIR / f for f in KERNEL_SOURCES[ref.dtype]],
        include_dirs=[out, KERNEL_DIR],
        memory={},
        reference=ref,
    )
    cm.memory = predict_memory(cm)
    return cm


def load_cmodel(export_dir: str | Path) -> CModel:
    """The CModel of an existing export directory (checks its hash)."""
    out = Path(export_dir)
    return _cmodel(out, HeadReference.from_export(out))


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
    bundle: Bundle | str | Path, out: str | Path, dtype: str = "int8", data_dir: str | Path | None = None
) -> CModel:
    """Quantize (int8) or take the float weights, calibrate the exit rule, write OUT/ atomically."""
    from toolchain.mcu.cgen import header_text, source_text

    check_dtype(dtype)
    bundle = as_bundle(bundle)
    out = Path(out)
    _check_out(out)
    ref, tflite = build_reference(bundle, dtype, data_dir)
    title = f"bundle {bundle.config.name!r} ({bundle.path.name})"
    try:
        header, source = header_text(ref, title), source_text(ref, title)
    except ValueError as exc:
        raise ToolchainError(f"cannot export this model to C: {exc}") from None
    cm = _cmodel(out, ref)
    extra = {
        "bundle": {"path": str(bundle.path), "name": bundle.config.name, "meta": bundle.meta},
        "kernel_sources": [os.path.relpath(p, KERNEL_DIR) for p in cm.kernel_sources],
        "memory": cm.memory,
    }
    files = {"model_data.h": header.encode(), "model_data.c": source.encode(), **ref.files(extra)}
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


def export_cli(args: argparse.Namespace) -> int:
    dtype = check_dtype(args.dtype)
    quiet = getattr(args, "quiet", False)
    log(f"exporting {args.bundle} to C ({dtype})", quiet)
    cm = export_c(args.bundle, args.out, dtype, getattr(args, "data_dir", None))
    rule = cm.reference.exit_rule
    log(memory_table(cm), quiet)
    print(
        json.dumps(
            {
                "out": str(cm.dir),
                "dtype": cm.dtype,
                "model_hash": cm.model_hash,
                "exit_threshold": cm.reference.exit_threshold,
                "exit_rule": {k: rule[k] for k in ("score", "rule", "target", "validation", "test")},
                "model_data_bytes": cm.memory["flash"]["model_data"],
                "static_ram_bytes": cm.memory["ram"]["static"],
            },
            indent=2,
        )
    )
    return 0
