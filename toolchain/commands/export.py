"""`toolchain export {c,tflite,onnx}`: write one deployable form of a trained bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from toolchain.bundle import load_bundle
from toolchain.commands.common import add_data_dir
from toolchain.dtypes import DType
from toolchain.export.onnx import export_onnx
from toolchain.export.tflite import export_tflite
from toolchain.mcu.cexport import export_c, memory_table
from toolchain.progress import log
from toolchain.quantize import int8_conversion

# format -> (help, dtype choices or None)
FORMATS: dict[str, tuple[str, list[str] | None]] = {
    "c": ("head + exit as packed C arrays (model_data.h/.c)", ["int8", "float32"]),
    "tflite": ("head + exit as a TFLite flatbuffer", ["float32", "int8"]),
    "onnx": ("the tail (and the full network) as ONNX", None),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, (help_, dtypes) in FORMATS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--bundle", required=True, metavar="DIR", help="trained bundle directory")
        sp.add_argument("--out", required=True, metavar="OUT", help="output directory")
        if dtypes:
            # Not argparse choices: the exporter validates, so library callers get the same error.
            sp.add_argument(
                "--dtype", default=dtypes[0], help=f"one of {', '.join(dtypes)} (default {dtypes[0]})"
            )
        # int8 calibrates on training samples and the exit rule on the validation split.
        add_data_dir(sp)


def _export_c(args: argparse.Namespace) -> None:

    dtype = DType.parse(args.dtype)
    log(f"exporting {args.bundle} to C ({dtype})")
    cm = export_c(args.bundle, args.out, dtype, args.data_dir)
    rule = cm.ir.exit_rule
    log(memory_table(cm))
    summary = {
        "out": str(cm.dir),
        "dtype": cm.dtype,
        "model_hash": cm.model_hash,
        "exit_threshold": cm.ir.exit_threshold,
        "exit_rule": {k: rule[k] for k in ("score", "rule", "target", "validation", "test")},
        "model_data_bytes": cm.memory["flash"]["model_data"],
        "static_ram_bytes": cm.memory["ram"]["static"],
    }
    print(json.dumps(summary, indent=2))


def _export_tflite(args: argparse.Namespace) -> None:

    head = export_tflite(args.bundle, args.out, args.dtype, args.data_dir, quiet=False)
    print(
        json.dumps({"file": str(Path(args.out) / f"head_{head.dtype}.tflite"), "check": head.check}, indent=2)
    )


def _export_onnx(args: argparse.Namespace) -> None:

    bundle = load_bundle(args.bundle)
    # The int8 tail dequantizes with exactly the split quantization of the (single) int8 conversion.
    q = int8_conversion(bundle, args.data_dir).split_quant
    result = export_onnx(bundle, args.out, split_quant=q, data_dir=args.data_dir, quiet=False)
    print(json.dumps({k: str(v) for k, v in result.files.items()}, indent=2))


def run(args: argparse.Namespace) -> int:
    {"c": _export_c, "tflite": _export_tflite, "onnx": _export_onnx}[args.format](args)
    return 0
