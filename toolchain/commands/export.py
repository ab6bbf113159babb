"""`toolchain export {c,tflite,onnx}`: write one deployable form of a trained bundle."""

from __future__ import annotations

import argparse
import importlib

from toolchain.commands.common import add_data_dir

# format -> (module with `export_cli(args)`, help, dtype choices or None)
FORMATS: dict[str, tuple[str, str, list[str] | None]] = {
    "c": ("toolchain.mcu.cexport", "head + exit as packed C arrays (model_data.h/.c)", ["int8", "float32"]),
    "tflite": ("toolchain.export.tflite", "head + exit as a TFLite flatbuffer", ["float32", "int8"]),
    "onnx": ("toolchain.export.onnx", "the tail (and the full network) as ONNX", None),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, (_, help_, dtypes) in FORMATS.items():
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


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(FORMATS[args.format][0])
    return int(module.export_cli(args) or 0)
