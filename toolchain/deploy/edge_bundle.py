"""The edge bundle every non-MCU target is built on (rpi, coral, server): heads, tails, manifest, runtime.

build/<target>/
  head_int8.tflite, head_float32.tflite   head + exit (static batch 1, builtin ops), checked on the host
  tail.onnx, tail_int8.onnx, full.onnx    the tail (FP32 / INT8 split input) and the full network
  manifest.json                           hashes, preprocessing, split tensor, exit rules, wire format
  device/                                 the edge runtime (toolchain.edge and its TF-free imports)
  README.txt                              how to install and run it on the board

The edge runtime needs only ai-edge-litert and numpy: `pip install 'toolchain[device]'` and
`toolchain run`, or, without installing the toolchain, `PYTHONPATH=device python3 -m toolchain.edge`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import toolchain
from toolchain import __version__
from toolchain.bundle import Bundle, bundle_sha256
from toolchain.dtypes import DType
from toolchain.edge.manifest import FORMAT, MANIFEST, VERSION
from toolchain.errors import ConfigError
from toolchain.export.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from toolchain.export.samples import check_samples
from toolchain.export.tflite import HeadTflite, check_head, convert_head, int8_ir
from toolchain.fsutil import atomic_write_json, file_sha256
from toolchain.ir.head import SplitQuant
from toolchain.progress import log
from toolchain.quantize import int8_conversion, split_quant_of
from toolchain.targets import BuildOptions, Target

PACKAGE_ROOT = Path(toolchain.__file__).resolve().parent.parent

# The device runtime and the modules it imports (standard library, numpy, ai_edge_litert only).
DEVICE_FILES = (
    "toolchain/__init__.py",
    "toolchain/calibrate.py",
    "toolchain/errors.py",
    "toolchain/fsutil.py",
    "toolchain/data.py",
    "toolchain/progress.py",
    "toolchain/edge/__init__.py",
    "toolchain/edge/__main__.py",
    "toolchain/edge/cli.py",
    "toolchain/edge/client.py",
    "toolchain/edge/head.py",
    "toolchain/edge/manifest.py",
    "toolchain/edge/runtime.py",
    "toolchain/ir/__init__.py",
    "toolchain/ir/fixedpoint.py",
)
DEVICE_REQUIREMENTS = "ai-edge-litert==2.3.0\nnumpy==2.4.6\n"


def _dtype(target: Target, options: BuildOptions) -> DType:
    dtype = options.dtype or target.section("runtime").get("default_dtype", "int8")
    if dtype not in tuple(DType):
        raise ConfigError(f"{target.path}: runtime.default_dtype = {dtype!r}", hint="use int8 or float32")
    return DType(dtype)


def build_heads(
    bundle: Bundle, out: Path, dtypes: tuple[DType, ...], per_channel: bool, data_dir, quiet: bool
) -> dict[str, HeadTflite]:
    x = check_samples(bundle, data_dir)
    heads = {}
    for dtype in dtypes:
        log(f"converting head + exit to TFLite {dtype} and checking it with LiteRT", quiet)
        head = convert_head(bundle, dtype, per_channel, data_dir)
        check_head(head, bundle, x, data_dir)
        (out / f"head_{dtype}.tflite").write_bytes(head.model)
        heads[dtype] = head
    return heads


def exit_rules(bundle: Bundle, heads: dict[str, HeadTflite], data_dir) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    if "float32" in heads:
        # Float path: max-softmax of the exit logits, the threshold calibrated at training time.
        rules["float32"] = {
            "rule": "max_softmax",
            "threshold": float(bundle.metrics["exit_threshold"]),
            "calibration": bundle.metrics.get("exit_rule"),
        }
    if "int8" in heads:
        ref = int8_ir(bundle, heads["int8"], data_dir)
        # Integer path: top-1 minus top-2 of the int8 exit logits (the IR's integer rule), so
        # the decision is the same integer comparison as on a microcontroller.
        rules["int8"] = {
            "rule": "int_margin",
            "threshold": int(ref.exit_threshold),
            "calibration": ref.exit_rule,
        }
    return rules


def wire_models(bundle: Bundle) -> dict[str, Any]:
    cfg = bundle.config
    w, n0 = cfg.split_width, cfg.network.neurons[0]
    return {
        "int8": {"name": "tail_int8", "input": INPUT_NAME["tail_int8"], "datatype": "INT8", "width": w},
        "fp32": {"name": "tail", "input": INPUT_NAME["tail"], "datatype": "FP32", "width": w},
        "full": {"name": "full", "input": INPUT_NAME["full"], "datatype": "FP32", "width": n0},
    }


def write_manifest(
    target: Target,
    bundle: Bundle,
    out: Path,
    heads: dict[str, HeadTflite],
    onnx_files: dict[str, Path],
    split_quant: SplitQuant,
    default_dtype: str,
    data_dir,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cfg = bundle.config
    bhash = bundle_sha256(bundle.path)
    wire = wire_models(bundle)
    for spec in wire.values():
        spec["output"] = OUTPUT_NAME
    int8_ref = heads["int8"].ir if "int8" in heads else None
    tail_models = {}
    for name, path in onnx_files.items():
        entry: dict[str, Any] = {
            "path": path.relative_to(out).as_posix(),
            "sha256": file_sha256(path),
            "bundle_sha256": bhash,
            "role": {"tail": "tail, FP32 split", "tail_int8": "tail, INT8 split", "full": "all-server"}[name],
        }
        if name == "tail_int8":
            entry["split_quant"] = split_quant.as_dict()
        tail_models[name] = entry
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "toolchain_version": __version__,
        "target": target.name,
        "kind": target.kind,
        "model": {
            "name": cfg.name,
            "dataset": cfg.dataset,
            "input_size": cfg.network.neurons[0],
            "split_width": cfg.split_width,
            "n_classes": cfg.n_classes,
            "bundle_sha256": bhash,
            "model_hash": int8_ref.model_hash if int8_ref is not None else None,
            "accuracy": {k: bundle.metrics.get(k) for k in ("final_accuracy", "exit_accuracy")},
        },
        "preprocessing": {
            "input": "uint8 image, flattened row-major",
            "scale": "1/255 (float32 in [0, 1])",
            "pad_to": cfg.network.neurons[0],
            "padding": "zeros after the last pixel",
        },
        "head": {
            "default": default_dtype,
            "files": {
                d: {"path": f"head_{d}.tflite", "sha256": file_sha256(out / f"head_{d}.tflite")}
                | h.manifest_entry()
                for d, h in heads.items()
            },
        },
        "split": {
            "shape": [1, cfg.split_width],
            "dtype": default_dtype,
            "scale": split_quant.scale,
            "zero_point": split_quant.zero_point,
            "dequantize": "real = (q - zero_point) * scale",
        },
        "exit": exit_rules(bundle, heads, data_dir),
        "wire": {
            "protocol": "KServe v2 REST (Open Inference Protocol)",
            "encoding": "binary tensor data extension (JSON header + little-endian tensor bytes)",
            "default": default_dtype.spec.wire_short,
            "models": wire,
        },
        "tail": {"models": tail_models},
    }
    manifest.update(extra or {})
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def copy_device_runtime(out: Path) -> None:
    dev = out / "device"
    for rel in DEVICE_FILES:
        dst = dev / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_ROOT / rel, dst)
    (dev / "requirements.txt").write_text(DEVICE_REQUIREMENTS)


def readme(target: Target, manifest: dict[str, Any]) -> str:
    m = manifest
    return f"""{target.name}: {target.description}

model {m["model"]["name"]} ({m["model"]["dataset"]}), bundle {m["model"]["bundle_sha256"][:16]}
head {m["head"]["default"]} (exit rule {m["exit"][m["head"]["default"]]["rule"]} >= \
{m["exit"][m["head"]["default"]]["threshold"]}), split {m["split"]["shape"]} sent as {m["wire"]["default"]}

On the server (this directory copied there, full toolchain installed):
  toolchain serve --bundle . --host 0.0.0.0 --port 8000

On the board (64-bit OS, Python 3.11, this directory copied there):
  python3 -m venv venv && venv/bin/pip install -r device/requirements.txt
  PYTHONPATH=device venv/bin/python -m toolchain.edge --bundle . --server http://SERVER:8000 \\
      --dataset mnist --samples 1000
or, with the toolchain installed as `pip install 'toolchain[device]'`:
  toolchain run --bundle . --server http://SERVER:8000 --input images.npy
"""


def build_edge(
    target: Target,
    bundle: Bundle,
    out: Path,
    options: BuildOptions,
    dtypes: tuple[DType, ...],
    per_channel: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    default = _dtype(target, options)
    if default not in dtypes:
        raise ConfigError(f"target {target.name} supports --dtype {' or '.join(dtypes)}, not {default}")
    heads = build_heads(bundle, out, dtypes, per_channel, options.data_dir, options.quiet)
    # The int8 tail dequantizes with the split quantization of the int8 head the device runs.
    if "int8" in heads:
        q = split_quant_of(heads["int8"].model)
    else:
        q = int8_conversion(bundle, options.data_dir).split_quant
    log("exporting the tail and the full network to ONNX and checking them with onnxruntime", options.quiet)
    onnx = export_onnx(bundle, out, split_quant=q, data_dir=options.data_dir)
    manifest = write_manifest(target, bundle, out, heads, onnx.files, q, default, options.data_dir, extra)
    copy_device_runtime(out)
    (out / "README.txt").write_text(readme(target, manifest))
    for path in out.rglob("*"):  # atomic writes create 0600 files; the build is copied to other hosts
        if path.is_file():
            path.chmod(0o644)
    return manifest
