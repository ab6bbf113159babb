"""`edgetpu` targets (Coral): the rpi edge bundle with an int8, per-tensor, FULLY_CONNECTED-only head,
an Edge TPU compatibility report, and the `edgetpu_compiler` step when the compiler is installed.

The compiler is x86_64 Linux only and ships from Coral's own apt repository (not PyPI, not Debian), so
on most machines, CI included, it is absent: the build then says so, writes the exact command to run
where it exists, and never claims a compiled model. The int8 head is still checked on the host with
LiteRT against the integer IR (toolchain.ir.HeadIR), like every int8 head.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from toolchain.bundle import Bundle
from toolchain.deploy.edge_bundle import build_edge
from toolchain.dtypes import DType
from toolchain.edge.manifest import MANIFEST
from toolchain.errors import ToolchainError
from toolchain.export.tflite import describe
from toolchain.fsutil import atomic_write_json
from toolchain.progress import log, markdown_table
from toolchain.targets import BuildOptions, Target

# Operations the Edge TPU compiler can map (Coral documentation, "Supported operations"). Anything
# else stays on the CPU, and the first such op sends every later op to the CPU as well.
EDGETPU_OPS = frozenset(
    (
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    )
)
QUANTIZED = ("int8", "uint8")


def compatibility(description: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    """Every op with whether it maps to the Edge TPU, plus the model-level requirements."""
    tensors = description["tensors"]
    ops = []
    for op in description["ops"]:
        io = [tensors[i] for i in op["inputs"] + op["outputs"] if i >= 0]
        acts = [t for t in io if t["dtype"] != "int32"]  # int32 tensors are biases
        reasons = []
        if not op["builtin"]:
            reasons.append("custom op")
        if op["op"] not in EDGETPU_OPS:
            reasons.append("not an Edge TPU op")
        if op["op"] not in allowed:
            reasons.append(f"not allowed by the target ({', '.join(allowed)})")
        if any(t["dtype"] not in QUANTIZED for t in acts):
            reasons.append("not fully int8")
        if any(d < 0 for t in io for d in t["shape_signature"]):
            reasons.append("dynamic shape")
        ops.append(
            {
                "index": op["index"],
                "op": op["op"],
                "version": op["version"],
                "edgetpu": not reasons,
                "why": reasons,
            }
        )
    weights = [
        tensors[op["inputs"][1]]
        for op in description["ops"]
        if op["op"] == "FULLY_CONNECTED" and len(op["inputs"]) > 1
    ]
    checks = {
        "one_subgraph": description["subgraphs"] == 1,
        "static_shapes": all(d >= 0 for t in tensors for d in t["shape_signature"]),
        "int8_input_output": all(
            tensors[i]["dtype"] in QUANTIZED for i in description["inputs"] + description["outputs"]
        ),
        "only_allowed_ops": all(op["op"] in allowed for op in description["ops"]),
        "per_tensor_weights": all(w["n_scales"] == 1 for w in weights),
    }
    return {
        "ops": ops,
        "checks": checks,
        "mapped": sum(o["edgetpu"] for o in ops),
        "total": len(ops),
        "compatible": all(checks.values()) and all(o["edgetpu"] for o in ops),
    }


def compiler_command(compiler: str, args: list[str], model: Path, out_dir: Path) -> list[str]:
    return [compiler, *args, "-o", str(out_dir), str(model)]


_SUMMARY = re.compile(r"Number of operations that will run on (Edge TPU|CPU):\s*(\d+)")


def parse_compiler_output(text: str) -> dict[str, int]:
    """The mapping summary `edgetpu_compiler -s` prints."""
    found = {k: int(v) for k, v in _SUMMARY.findall(text)}
    return {"edgetpu_ops": found.get("Edge TPU", 0), "cpu_ops": found.get("CPU", 0)} if found else {}


def run_compiler(target: Target, model: Path, out_dir: Path) -> dict[str, Any]:
    sec = target.section("edgetpu")
    compiler = sec.get("compiler", "edgetpu_compiler")
    args = list(sec.get("compiler_args", ["-s"]))
    # Run in (and shown relative to) the build directory: the build is renamed when it succeeds.
    cmd = compiler_command(compiler, args, Path(model.name), Path("."))
    shown = " ".join(cmd)
    exe = shutil.which(compiler)
    if exe is None:
        return {
            "available": False,
            "compiled": False,
            "command": shown,
            "message": f"{compiler} is not installed here, so the Edge TPU compile step did not run. It "
            "exists only for x86_64 Debian/Ubuntu, from Coral's apt repository (package edgetpu-compiler). "
            f"Where it is installed, run in the build directory: {shown}",
        }
    proc = subprocess.run([exe, *cmd[1:]], cwd=out_dir, capture_output=True, text=True, timeout=300)
    (out_dir / "edgetpu_compiler.log").write_text(proc.stdout + proc.stderr)
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    return {
        "available": True,
        "compiled": proc.returncode == 0 and compiled.is_file(),
        "command": shown,
        "returncode": proc.returncode,
        "summary": parse_compiler_output(proc.stdout),
        "output": compiled.name if compiled.is_file() else None,
        "log": "edgetpu_compiler.log",
    }


def report_markdown(report: dict[str, Any], compiler: dict[str, Any]) -> str:
    rows = [
        [o["index"], o["op"], o["version"], "yes" if o["edgetpu"] else "no", "; ".join(o["why"])]
        for o in report["ops"]
    ]
    checks = [[k, "ok" if v else "FAILS"] for k, v in report["checks"].items()]
    lines = [
        "# Edge TPU compatibility report",
        "",
        f"{report['mapped']} of {report['total']} operations map to the Edge TPU; "
        f"compatible: {'yes' if report['compatible'] else 'no'}.",
        "",
        markdown_table(["#", "op", "version", "Edge TPU", "why not"], rows),
        "",
        markdown_table(["requirement", "result"], checks),
        "",
        "## edgetpu_compiler",
        "",
    ]
    if compiler["available"]:
        lines.append(f"`{compiler['command']}` returned {compiler['returncode']}: {compiler.get('summary')}")
    else:
        lines.append(compiler["message"])
    return "\n".join(lines) + "\n"


def build(target: Target, bundle: Bundle, out: Path, options: BuildOptions) -> None:
    out = Path(out)
    per_channel = bool(target.section("edgetpu").get("per_channel", False))
    manifest = build_edge(target, bundle, out, options, (DType.INT8,), per_channel=per_channel)
    desc = _head_description(out / manifest["head"]["files"]["int8"]["path"])
    allowed = list(target.section("edgetpu").get("allowed_ops", ["FULLY_CONNECTED"]))
    report = compatibility(desc, allowed)
    compiler = run_compiler(target, out / "head_int8.tflite", out)
    log(
        f"Edge TPU report: {report['mapped']}/{report['total']} ops map, "
        f"compatible: {'yes' if report['compatible'] else 'NO'}",
        options.quiet,
    )
    log(
        compiler["message"] if not compiler["available"] else f"edgetpu_compiler: {compiler['summary']}",
        options.quiet,
    )
    atomic_write_json(out / "edgetpu_report.json", {"report": report, "compiler": compiler})
    (out / "edgetpu_report.md").write_text(report_markdown(report, compiler))
    manifest["edgetpu"] = {
        "report": "edgetpu_report.md",
        "compatible": report["compatible"],
        "compiled": compiler["compiled"],
        "delegate": target.section("runtime").get("delegate", "libedgetpu.so.1"),
    }
    if compiler["compiled"]:
        manifest["head"]["files"]["int8"]["edgetpu_path"] = compiler["output"]
    atomic_write_json(out / MANIFEST, manifest)
    for path in (out / MANIFEST, out / "edgetpu_report.json"):
        path.chmod(0o644)
    if not report["compatible"]:
        failing = [k for k, v in report["checks"].items() if not v]
        raise ToolchainError(
            f"the int8 head is not Edge TPU compatible: {failing or 'unsupported ops'}",
            hint="see the report; Coral needs the masked (FULLY_CONNECTED) form with static shapes",
        )


def _head_description(path: Path) -> dict[str, Any]:
    return describe(path.read_bytes())
