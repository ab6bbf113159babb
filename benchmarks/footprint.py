"""Flash and RAM of the exported head + exit of the default project, against the information floor,
the TFLite int8 flatbuffer of the equivalent dense head and that dense head as plain C arrays.

For every pattern (index table `random`, index-free `affine`, `cyclic`) and dtype (int8, float32):
- model data = every const array of model_data.c plus the layer descriptors, as predicted by
  toolchain.mcu.memory and as measured in the Cortex-M4 object (arm-none-eabi-nm symbol sizes);
- information floor = stored weights × bytes per weight + biases (4 B each) + int8 requantization
  (multiplier 4 B + shift 1 B per output channel): what any packed format must hold;
- kernel code = .text of tc_head.o + the dtype's kernel object (Cortex-M4F, -O2);
- RAM = static buffers + stack estimate (the caller's input/output buffers listed apart).

    python benchmarks/footprint.py --data-dir /work/shared/datasets
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from kernel_instructions import resolve_bundles  # the sibling benchmark (benchmarks/ is sys.path[0])

from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.mcu.runner import ARM_CC, compile_objects, core
from toolchain.progress import log, markdown_table

REPO = Path(__file__).resolve().parent.parent

RESULTS = REPO / "benchmarks" / "results"


def text_size(obj: Path) -> int:
    from toolchain.mcu.memory import measure_elf

    return sum(v for k, v in measure_elf(obj)["sections"].items() if k.startswith(".text"))


def information_floor(ref) -> dict[str, int]:
    bpw = 1 if ref.dtype == "int8" else 4
    edges = sum(ly.n_out * ly.d_in for ly in ref.layers)
    outs = sum(ly.n_out for ly in ref.layers)
    quant = 5 * outs if ref.dtype == "int8" else 0
    return {
        "weights": edges * bpw,
        "biases": 4 * outs,
        "quant": quant,
        "total": edges * bpw + 4 * outs + quant,
    }


def dense_c_arrays(ref) -> int:
    """The equivalent dense int8 head as plain C arrays: W [n_out][n_in], int32 bias, mult + shift."""
    return sum(ly.n_out * ly.n_in + 4 * ly.n_out + 5 * ly.n_out for ly in ref.layers)


def measure(bundles: dict[str, Path], data_dir, work: Path) -> dict:
    from toolchain.mcu.cexport import export_c
    from toolchain.mcu.memory import measure_elf
    from toolchain.quantize import head_exit_tflite

    rows = []
    tflite = {}
    for pattern, bundle in bundles.items():
        for dtype in ("int8", "float32"):
            cm = export_c(bundle, work / f"export_{pattern}_{dtype}", dtype, data_dir)
            ref = cm.ir
            obj_dir = work / f"obj_{pattern}_{dtype}"
            objs = compile_objects(cm.sources, cm.include_dirs, core("cortex-m4"), obj_dir)
            syms = measure_elf(objs["model_data"])["symbols"]
            predicted = cm.memory["flash"]
            measured = sum(syms.get(name, 0) for name in [*predicted["arrays"], "tc_layers"])
            kernel_text = sum(text_size(o) for name, o in objs.items() if name != "model_data")
            floor = information_floor(ref)
            index_bytes = sum(v for k, v in predicted["arrays"].items() if k.endswith("_idx"))
            model_data = predicted["model_data"] + predicted["tc_layers"]
            rows.append(
                {
                    "pattern": pattern,
                    "dtype": dtype,
                    "model_data_predicted": model_data,
                    "model_data_measured": measured,
                    "index_tables": index_bytes,
                    "descriptors": predicted["tc_layers"],
                    "floor": floor,
                    "over_floor": round(model_data / floor["total"], 3),
                    "kernel_text": kernel_text,
                    "ram_static": cm.memory["ram"]["static"],
                    "stack_estimate": cm.memory["ram"]["stack_estimate"],
                    "caller_buffers": sum(cm.memory["ram"]["caller_buffers"].values()),
                }
            )
            if dtype == "int8" and "dense_c_int8" not in tflite:
                tflite["dense_c_int8"] = dense_c_arrays(ref)
        if pattern == next(iter(bundles)):
            log("converting the equivalent dense head to TFLite")
            tflite["tflite_int8_per_channel"] = len(head_exit_tflite(bundle, "int8", True, data_dir))
            tflite["tflite_int8_per_tensor"] = len(head_exit_tflite(bundle, "int8", False, data_dir))
            tflite["tflite_float32"] = len(head_exit_tflite(bundle, "float32"))
    return {"rows": rows, "dense": tflite}


def markdown(result: dict) -> str:
    d = result["dense"]
    head = ["pattern", "dtype", "model data (predicted)", "measured (nm)", "of which index tables",
            "information floor", "× floor", "vs TFLite int8 (per-channel)", "vs dense int8 C arrays",
            "kernel .text (M4)", "static RAM", "stack (est.)"]  # fmt: skip
    rows = [
        [r["pattern"], r["dtype"], r["model_data_predicted"], r["model_data_measured"], r["index_tables"],
         r["floor"]["total"], r["over_floor"],
         f"{r['model_data_predicted'] / d['tflite_int8_per_channel']:.3f}",
         f"{r['model_data_predicted'] / d['dense_c_int8']:.3f}", r["kernel_text"], r["ram_static"],
         r["stack_estimate"]]
        for r in result["rows"]
    ]  # fmt: skip
    dense_rows = [
        ["TFLite int8 flatbuffer, per-channel FC weights (converter default)", d["tflite_int8_per_channel"]],
        ["TFLite int8 flatbuffer, per-tensor FC weights", d["tflite_int8_per_tensor"]],
        ["TFLite float32 flatbuffer", d["tflite_float32"]],
        ["dense int8 head as plain C arrays (W, int32 bias, multiplier + shift)", d["dense_c_int8"]],
    ]
    return (
        "# Footprint: head + exit of the default project ([800, 40, 40, 10], out-degrees [2, 9, 10], "
        "split after layer 1)\n\n"
        f"Command: `{result.get('command', 'python benchmarks/footprint.py')}`\n\n"
        "Bytes. Model data = const arrays of model_data.c + layer descriptors (Cortex-M4, 52 B each); "
        "measured = sizes of the same symbols in the arm-none-eabi-gcc object. Information floor = stored "
        "weights × bytes per weight + 4 B per bias + 5 B of int8 requantization per output channel. "
        "RAM excludes the caller's input and output buffers (800 + 40 + 10 B int8, 4× float32).\n\n"
        + markdown_table(head, rows)
        + "\n\nThe equivalent dense head (same weights, zeros where edges are missing):\n\n"
        + markdown_table(["form", "bytes"], dense_rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="directory holding mnist/ (default: $TOOLCHAIN_DATA_DIR or cache)")
    p.add_argument("--bundles", nargs="*", default=[], metavar="PATTERN=DIR", help="use these bundles")
    p.add_argument("--epochs", type=int, default=3, help="epochs when training the bundles (default 3)")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    args = p.parse_args(argv)
    if shutil.which(ARM_CC) is None:
        raise SystemExit(f"{ARM_CC} is required (Debian: gcc-arm-none-eabi)")
    work = Path(tempfile.mkdtemp(prefix="tc-footprint-"))
    try:
        bundles = resolve_bundles(args.bundles, args.epochs, args.data_dir, work)
        result = measure(bundles, args.data_dir, work)
        result["command"] = "python benchmarks/footprint.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        out = Path(args.out)
        atomic_write_json(out / "footprint.json", result)
        md = markdown(result)
        atomic_write_text(out / "footprint.md", md)
        print(md)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
