"""ONNX export of the tail (split activation -> final logits) and of the full network.

The graphs are built with `onnx.helper` straight from the bundle's form-neutral weights: each sparse
junction becomes a dense MatMul whose kernel is zero outside the index table, which is exactly the
masked Keras layer. Building the graph ourselves (rather than tracing TensorFlow) gives stable
tensor names (`split` -> `logits`), a symbolic `batch` dimension for dynamic batching, and lets a
server load a tail without TensorFlow. Every file is checked with `onnx.checker` and, on export,
with onnxruntime against the Keras model (max abs diff <= 1e-5).

Three models:
- `tail`      : FP32 split [batch, W] -> logits [batch, C]
- `tail_int8` : INT8 split [batch, W] -> DequantizeLinear(scale, zero point of the int8 head's split
                tensor, `toolchain.quantize.int8_conversion`) -> the same tail. The device then sends
                1 byte per value instead of 4.
- `full`      : FP32 input [batch, N0] -> logits and exit_logits (the all-server baseline)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.bundle import Bundle, as_bundle, bundle_sha256
from toolchain.errors import MismatchError
from toolchain.export.samples import check_samples, keras_reference
from toolchain.fsutil import atomic_write_bytes, atomic_write_json
from toolchain.ir.fixedpoint import dequantize, quantize
from toolchain.ir.head import SplitQuant
from toolchain.progress import log

OPSET = 17
IR_VERSION = 8  # readable by onnxruntime >= 1.10 and Triton's ONNX Runtime backend
TOLERANCE = 1e-5
INPUT_NAME = {"tail": "split", "tail_int8": "split", "full": "input"}
OUTPUT_NAME = "logits"
EXIT_OUTPUT_NAME = "exit_logits"


@dataclass
class OnnxExport:
    out: Path
    files: dict[str, Path]  # model name -> file
    max_abs_diff: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Graph construction
# ----------------------------------------------------------------------------------------------
def dense_kernels(bundle: Bundle) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per junction: (kernel [N_left, N_right] zero outside the index table, bias [N_right])."""
    out = []
    for i, conn in enumerate(bundle.connectivity):
        w = bundle.weights[f"junction_{i + 1}/w"].astype(np.float32)
        b = bundle.weights[f"junction_{i + 1}/b"].astype(np.float32)
        k = np.zeros((conn.shape.n_left, conn.shape.n_right), dtype=np.float32)
        k[conn.idx, np.arange(conn.shape.n_right)[:, None]] = w
        out.append((k, b))
    return out


def exit_kernels(bundle: Bundle) -> list[tuple[np.ndarray, np.ndarray]]:
    names = [f"exit_{k + 1}" for k in range(len(bundle.config.exit.hidden))] + ["exit_logits"]
    return [
        (bundle.weights[f"{n}/kernel"].astype(np.float32), bundle.weights[f"{n}/bias"].astype(np.float32))
        for n in names
    ]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, value: np.ndarray):
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def dense_stack(self, x: str, layers, prefix: str, relu_last: bool) -> str:
        for j, (k, b) in enumerate(layers):
            kn = self.const(f"{prefix}{j + 1}/kernel", k)
            bn = self.const(f"{prefix}{j + 1}/bias", b)
            mm, add = f"{prefix}{j + 1}/matmul", f"{prefix}{j + 1}/add"
            self.nodes.append(helper.make_node("MatMul", [x, kn], [mm], name=mm))
            self.nodes.append(helper.make_node("Add", [mm, bn], [add], name=add))
            x = add
            if j < len(layers) - 1 or relu_last:
                relu = f"{prefix}{j + 1}/relu"
                self.nodes.append(helper.make_node("Relu", [x], [relu], name=relu))
                x = relu
        return x

    def identity(self, src: str, dst: str) -> None:
        self.nodes.append(helper.make_node("Identity", [src], [dst], name=dst))


def _model(graph, doc: str, meta: dict[str, str]):
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="toolchain", doc_string=doc
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, meta)
    return model


def _meta(bundle: Bundle, name: str) -> dict[str, str]:
    return {"toolchain.model": name, "toolchain.bundle_sha256": bundle_sha256(bundle.path)}


def tail_model(bundle: Bundle, split_quant: SplitQuant | None = None):
    """The tail as ONNX; with `split_quant`, the input is INT8 and a DequantizeLinear step comes first."""
    cfg = bundle.config
    after = cfg.network.split_after
    g = _GraphBuilder()
    x = INPUT_NAME["tail"]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", cfg.split_width])]
    meta = _meta(bundle, "tail")
    if split_quant is not None:
        inputs = [helper.make_tensor_value_info(x, TensorProto.INT8, ["batch", cfg.split_width])]
        s = g.const("split/scale", np.array(split_quant.scale, dtype=np.float32))
        z = g.const("split/zero_point", np.array(split_quant.zero_point, dtype=np.int8))
        g.nodes.append(helper.make_node("DequantizeLinear", [x, s, z], ["split/float"], name="dequantize"))
        x = "split/float"
        meta.update(
            {
                "toolchain.model": "tail_int8",
                "toolchain.split_scale": repr(float(split_quant.scale)),
                "toolchain.split_zero_point": str(int(split_quant.zero_point)),
            }
        )
    y = g.dense_stack(x, dense_kernels(bundle)[after:], "tail/junction_", relu_last=False)
    g.identity(y, OUTPUT_NAME)
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.n_classes])]
    graph = helper.make_graph(g.nodes, "tail", inputs, outputs, g.inits)
    return _model(graph, f"{cfg.name}: tail after hidden layer {after}", meta)


def full_model(bundle: Bundle):
    """Input -> final logits and exit logits: the whole network on a server (all-server baseline)."""
    cfg = bundle.config
    after = cfg.network.split_after
    junctions = dense_kernels(bundle)
    g = _GraphBuilder()
    x = INPUT_NAME["full"]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", cfg.network.neurons[0]])]
    split = g.dense_stack(x, junctions[:after], "head/junction_", relu_last=True)
    y = g.dense_stack(split, junctions[after:], "tail/junction_", relu_last=False)
    e = g.dense_stack(split, exit_kernels(bundle), "exit/dense_", relu_last=False)
    g.identity(y, OUTPUT_NAME)
    g.identity(e, EXIT_OUTPUT_NAME)
    outputs = [
        helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.n_classes]),
        helper.make_tensor_value_info(EXIT_OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.n_classes]),
    ]
    graph = helper.make_graph(g.nodes, "full", inputs, outputs, g.inits)
    return _model(graph, f"{cfg.name}: full network (all-server baseline)", _meta(bundle, "full"))


def check_structure(model) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug in this module, not a user error
        raise MismatchError(f"generated ONNX model failed onnx.checker: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Numerical check against Keras
# ----------------------------------------------------------------------------------------------


def run_onnx(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _require(name: str, diff: float) -> float:
    if not diff <= TOLERANCE:
        raise MismatchError(
            f"ONNX {name} differs from Keras by {diff:.3g} (allowed {TOLERANCE:g})",
            hint="this is a bug in the exporter; please report it with the bundle",
        )
    return diff


def verify_against_keras(
    models: dict[str, bytes], bundle: Bundle, q: SplitQuant | None, x: np.ndarray
) -> dict[str, float]:
    """Max abs diff of every exported model against the Keras model on the same inputs."""
    ref = keras_reference(bundle, x)
    diffs: dict[str, float] = {}
    if "tail" in models:
        (y,) = run_onnx(models["tail"], {"split": ref["split"]})
        diffs["tail"] = _require("tail", float(np.max(np.abs(y - ref["final"]))))
    if "full" in models:
        y, e = run_onnx(models["full"], {"input": x})
        d = max(float(np.max(np.abs(y - ref["final"]))), float(np.max(np.abs(e - ref["exit"]))))
        diffs["full"] = _require("full", d)
    if "tail_int8" in models and q is not None:
        sq = quantize(ref["split"], q.scale, q.zero_point)
        deq = dequantize(sq, q.scale, q.zero_point)
        want = np.asarray(ref["model"].tail.predict(deq, batch_size=1024, verbose=0))
        (y,) = run_onnx(models["tail_int8"], {"split": sq})
        diffs["tail_int8"] = _require("tail_int8", float(np.max(np.abs(y - want))))
    return diffs


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def export_onnx(
    bundle: Bundle | str | Path,
    out: str | Path,
    split_quant: SplitQuant | None = None,
    check: bool = True,
    data_dir: str | Path | None = None,
    quiet: bool = True,
) -> OnnxExport:
    """Write tail.onnx, full.onnx (and tail_int8.onnx with `split_quant`) and onnx_report.json."""
    bundle = as_bundle(bundle)
    out = Path(out)
    protos = {"tail": tail_model(bundle), "full": full_model(bundle)}
    if split_quant is not None:
        protos["tail_int8"] = tail_model(bundle, split_quant)
    blobs = {}
    for name, proto in protos.items():
        check_structure(proto)
        blobs[name] = proto.SerializeToString()
    diffs = {}
    if check:
        diffs = verify_against_keras(blobs, bundle, split_quant, check_samples(bundle, data_dir))
    files = {name: atomic_write_bytes(out / f"{name}.onnx", blob) for name, blob in blobs.items()}
    report = {
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "models": {
            name: {
                "file": f"{name}.onnx",
                "input": INPUT_NAME[name],
                "input_dtype": "INT8" if name == "tail_int8" else "FP32",
                "outputs": [OUTPUT_NAME, EXIT_OUTPUT_NAME] if name == "full" else [OUTPUT_NAME],
                "max_abs_diff_vs_keras": diffs.get(name),
            }
            for name in blobs
        },
        "split_quant": None
        if split_quant is None
        else {"scale": split_quant.scale, "zero_point": split_quant.zero_point},
        "tolerance": TOLERANCE,
    }
    atomic_write_json(out / "onnx_report.json", report)
    for name, d in diffs.items():
        log(f"{name}.onnx: onnx.checker ok, onnxruntime vs Keras max abs diff {d:.2e}", quiet)
    return OnnxExport(out, files, diffs)
