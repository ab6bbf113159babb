"""A HeadIR on disk: `model.json` (structure, quantization, exit rule, hash) + `reference.npz` (arrays).

The C export writes these beside model_data.{h,c}, so that verify, plan and the runners rebuild the exact
IR the firmware was generated from, and check it against the hash compiled into the firmware.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import ToolchainError
from toolchain.ir.head import HeadIR
from toolchain.ir.layers import Layer, LayerKind

EXPORT_FORMAT = "toolchain-c-export"
EXPORT_VERSION = 1
FILES = ("model.json", "reference.npz")


def ir_files(ir: HeadIR, extra_meta: dict[str, Any] | None = None) -> dict[str, bytes]:
    """model.json + reference.npz contents (the caller writes them atomically)."""
    buf = io.BytesIO()
    np.savez(buf, **ir.arrays())
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model_hash": ir.model_hash}
    meta.update(ir.meta())
    meta["exit_rule"] = ir.exit_rule
    meta.update(extra_meta or {})
    return {"reference.npz": buf.getvalue(), "model.json": (json.dumps(meta, indent=2) + "\n").encode()}


def _layer(m: dict[str, Any], arrays: dict[str, np.ndarray]) -> Layer:
    name = m["name"]
    quant: dict[str, Any] = dict(m["quant"])
    for k in ("in_scale", "out_scale"):
        if k in quant:
            quant[k] = np.float32(quant[k])
    for k in ("w_scale", "mult", "shift"):
        if f"{name}/{k}" in arrays:
            quant[k] = arrays[f"{name}/{k}"]
    return Layer(
        name,
        LayerKind(m["kind"]),
        m["n_in"],
        arrays[f"{name}/idx"],
        arrays[f"{name}/w"],
        arrays[f"{name}/bias"],
        m["relu"],
        dict(m["params"]),
        quant,
    )


def load_ir(export_dir: str | Path) -> HeadIR:
    """The HeadIR of an export directory, checked against its recorded hash."""
    d = Path(export_dir)
    try:
        meta = json.loads((d / "model.json").read_text())
        with np.load(d / "reference.npz") as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise ToolchainError(
            f"{d} is not a C export: {Path(exc.filename).name} is missing",
            hint="run `toolchain export c --bundle DIR --out OUT` first",
        ) from None
    except (json.JSONDecodeError, ValueError, OSError) as exc:
        raise ToolchainError(f"{d}: corrupt C export ({exc})") from None
    if meta.get("format") != EXPORT_FORMAT or meta.get("version") != EXPORT_VERSION:
        raise ToolchainError(
            f"{d}: C export format {meta.get('format')!r} version {meta.get('version')!r} is not "
            f"supported (this toolchain reads {EXPORT_FORMAT} version {EXPORT_VERSION})",
            hint="re-run `toolchain export c` with this toolchain",
        )
    layers = [_layer(m, arrays) for m in meta["layers"]]
    ir = HeadIR(meta["dtype"], layers, meta["n_head"], meta["quant"], meta["exit_threshold"])
    ir.exit_rule = meta.get("exit_rule", {})
    ir.model_hash = ir.compute_hash()
    if ir.model_hash != meta["model_hash"]:
        raise ToolchainError(
            f"{d}: model hash {meta['model_hash']} does not match its arrays ({ir.model_hash})",
            hint="the export was modified; re-run `toolchain export c`",
        )
    return ir
