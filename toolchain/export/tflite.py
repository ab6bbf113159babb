"""TFLite export of head + exit (static batch 1, builtin ops only), checked on the host with LiteRT.

The conversion itself is `toolchain.quantize.head_exit_tflite` (Keras masked head+exit ->
`model.export` + `from_saved_model`): one converter and one int8 calibration for every int8
artifact (C arrays, rpi, coral), so all of them quantize the split tensor identically. This module
inspects the flatbuffer (ops, shapes, quantization, which output is which) and checks it:
- float32: LiteRT against the Keras model, max abs diff <= 1e-5;
- int8: LiteRT against the integer IR of the same flatbuffer (ir.HeadIR), at most 1 LSB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle import Bundle, as_bundle
from toolchain.dtypes import DType
from toolchain.errors import MismatchError, ToolchainError
from toolchain.export.samples import check_samples, keras_reference
from toolchain.fsutil import atomic_write_bytes, atomic_write_json
from toolchain.ir.head import HeadIR
from toolchain.progress import log
from toolchain.quantize import build_ir, head_exit_tflite, read_int8_graph

FLOAT_TOLERANCE = 1e-5
INT8_TOLERANCE_LSB = 1


@dataclass
class HeadTflite:
    model: bytes
    dtype: DType
    per_channel: bool
    input_index: int
    split_index: int
    exit_index: int
    quant: dict[str, dict[str, float]]  # int8: input/split/exit -> {"scale", "zero_point"}
    description: dict[str, Any]
    check: dict[str, Any] = field(default_factory=dict)
    ir: HeadIR | None = None  # int8: the integer IR of this flatbuffer, built on demand

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "per_channel": self.per_channel,
            "tensors": {"input": self.input_index, "split": self.split_index, "exit": self.exit_index},
            "quant": self.quant,
            "ops": [op["op"] for op in self.description["ops"]],
            "check": self.check,
        }


# ----------------------------------------------------------------------------------------------
# Reading the flatbuffer
# ----------------------------------------------------------------------------------------------
def describe(model: bytes) -> dict[str, Any]:
    """Subgraphs, operators (builtin or custom) and tensors (dtype, shapes, quantization scale count)."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAsModel(model, 0)
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        codes.append(
            {
                "op": custom.decode() if custom else op_names.get(code, str(code)),
                "builtin": code != s.BuiltinOperator.CUSTOM,
                "version": oc.Version(),
            }
        )
    g = m.Subgraphs(0)
    tensors = []
    for t in range(g.TensorsLength()):
        tensor = g.Tensors(t)
        q = tensor.Quantization()
        shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
        sig = tensor.ShapeSignatureAsNumpy().tolist() if tensor.ShapeSignatureLength() else shape
        tensors.append(
            {
                "index": t,
                "name": tensor.Name().decode(),
                "dtype": type_names.get(tensor.Type(), str(tensor.Type())).lower(),
                "shape": shape,
                "shape_signature": sig,
                "n_scales": q.ScaleLength() if q is not None else 0,
            }
        )
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        ops.append(
            {
                **codes[op.OpcodeIndex()],
                "index": i,
                "inputs": op.InputsAsNumpy().tolist(),
                "outputs": op.OutputsAsNumpy().tolist(),
            }
        )
    return {
        "subgraphs": m.SubgraphsLength(),
        "ops": ops,
        "tensors": tensors,
        "inputs": g.InputsAsNumpy().tolist(),
        "outputs": g.OutputsAsNumpy().tolist(),
    }


def _int8_quant(model: bytes) -> dict[str, dict[str, float]]:
    """input / split / exit quantization, read from the flatbuffer (the same reader as the IR's)."""
    g = read_int8_graph(model)
    tensors = {"input": g.act_quant[0], "split": g.act_quant[g.split_tensor], "exit": g.act_quant[-1]}
    return {k: {"scale": float(q.scale[0]), "zero_point": int(q.zero_point[0])} for k, q in tensors.items()}


def inspect_head(model: bytes, dtype: DType | str, bundle: Bundle, per_channel: bool = True) -> HeadTflite:
    """Check the structure a device needs and find which output tensor is the split / the exit."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    dtype = DType.parse(dtype)
    desc = describe(model)
    cfg = bundle.config
    problems = []
    if desc["subgraphs"] != 1:
        problems.append(f"{desc['subgraphs']} subgraphs (expected 1)")
    custom = sorted({op["op"] for op in desc["ops"] if not op["builtin"]})
    if custom:
        problems.append(f"non-builtin ops {custom}")
    dynamic = [t["name"] for t in desc["tensors"] if any(d < 0 for d in t["shape_signature"])]
    if dynamic:
        problems.append(f"dynamic shapes in {dynamic[:3]}")
    # Quantization parameters are read before allocate_tensors(): XNNPACK rewrites them (§6).
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    (inp,) = it.get_input_details()
    shape = [int(d) for d in inp["shape"]]
    if shape != [1, cfg.network.neurons[0]]:
        problems.append(f"input shape {shape}, expected [1, {cfg.network.neurons[0]}]")
    want = dtype.numpy
    outs = {o["index"]: o for o in it.get_output_details()}
    if inp["dtype"] != want or any(o["dtype"] != want for o in outs.values()):
        problems.append(f"input/output dtypes are not all {dtype}")
    # Keras' head_exit outputs [split, exit logits] -> signature outputs output_0, output_1.
    sig = it._get_full_signature_list()
    sig_outs = next(iter(sig.values()))["outputs"] if sig else {}
    if set(sig_outs) != {"output_0", "output_1"}:
        problems.append(f"signature outputs {sorted(sig_outs)}, expected output_0 (split), output_1 (exit)")
    if problems:
        raise MismatchError(
            "the head TFLite model is not deployable: " + "; ".join(problems),
            hint="this is a conversion bug (toolchain.quantize.head_exit_tflite); please report it",
        )
    split_i, exit_i = int(sig_outs["output_0"]), int(sig_outs["output_1"])
    if list(outs[split_i]["shape"]) != [1, cfg.split_width] or list(outs[exit_i]["shape"]) != [
        1,
        cfg.n_classes,
    ]:
        raise MismatchError("head TFLite outputs do not have the split / exit shapes")
    quant = _int8_quant(model) if dtype.quantized else {}
    return HeadTflite(model, dtype, per_channel, int(inp["index"]), split_i, exit_i, quant, desc)


def convert_head(
    bundle: Bundle,
    dtype: DType | str = DType.INT8,
    per_channel: bool = True,
    data_dir: str | Path | None = None,
) -> HeadTflite:
    if dtype not in tuple(DType):
        raise ToolchainError(f"--dtype {dtype!r} is not valid for TFLite", hint="use float32 or int8")
    model = head_exit_tflite(bundle, dtype=dtype, per_channel=per_channel, data_dir=data_dir)
    return inspect_head(model, dtype, bundle, per_channel)


# ----------------------------------------------------------------------------------------------
# Numerical checks
# ----------------------------------------------------------------------------------------------
def litert_outputs(head: HeadTflite, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(split, exit logits) of the flatbuffer on LiteRT's builtin kernels, one sample at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=head.model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    split, logits = [], []
    for row in np.asarray(x_enc):
        it.set_tensor(head.input_index, row[None, :])
        it.invoke()
        split.append(it.get_tensor(head.split_index)[0].copy())
        logits.append(it.get_tensor(head.exit_index)[0].copy())
    return np.stack(split), np.stack(logits)


def check_float(head: HeadTflite, bundle: Bundle, x: np.ndarray) -> dict[str, Any]:
    ref = keras_reference(bundle, x)
    split, logits = litert_outputs(head, np.asarray(x, dtype=np.float32))
    diff = max(float(np.max(np.abs(split - ref["split"]))), float(np.max(np.abs(logits - ref["exit"]))))
    if not diff <= FLOAT_TOLERANCE:
        raise MismatchError(f"float32 TFLite head differs from Keras by {diff:.3g} (> {FLOAT_TOLERANCE:g})")
    return {"against": "keras", "samples": len(x), "max_abs_diff": diff}


def int8_ir(bundle: Bundle, head: HeadTflite, data_dir: str | Path | None) -> HeadIR:
    """The integer IR of *this* flatbuffer, with its calibrated integer exit rule (cached)."""
    if head.ir is None:
        head.ir, _ = build_ir(
            bundle, DType.INT8, data_dir=data_dir, per_channel=head.per_channel, tflite=head.model
        )
    return head.ir


def check_int8(
    head: HeadTflite, bundle: Bundle, x: np.ndarray, data_dir: str | Path | None
) -> dict[str, Any]:
    """LiteRT int8 against the integer reference: at most 1 LSB per element.

    Why not bit-exact: the reference (like TFLM and the MCU kernel) requantizes the int32
    accumulator with gemmlowp's double rounding (SaturatingRoundingDoublingHighMul, then
    RoundingDivideByPOT); LiteRT's FULLY_CONNECTED uses single rounding (TFLITE_SINGLE_ROUNDING) or
    XNNPACK's fp32 requantization. The two roundings of the same product differ by at most one
    in the last place, on 0.1-0.65 % of elements (measured: python-stack.md §5). A real error
    (wrong scale, weights, zero point) shows up as many LSB on many elements.
    """
    ref = int8_ir(bundle, head, data_dir)
    x_enc = ref.encode_input(x)
    split, logits = litert_outputs(head, x_enc)
    rs, rl, _ = ref.infer(x_enc)
    out = {"against": "ir.HeadIR", "samples": len(x)}
    for name, a, b in (("split", split, rs), ("exit", logits, rl)):
        d = np.abs(a.astype(np.int32) - np.asarray(b).astype(np.int32))
        out[name] = {"max_lsb": int(d.max()), "elements_off": int((d > 0).sum()), "elements": int(d.size)}
        if d.max() > INT8_TOLERANCE_LSB:
            raise MismatchError(
                f"int8 TFLite {name} differs from the integer reference by {int(d.max())} LSB "
                f"(allowed {INT8_TOLERANCE_LSB})"
            )
    return out


def check_head(
    head: HeadTflite, bundle: Bundle, x: np.ndarray, data_dir: str | Path | None = None
) -> dict[str, Any]:
    head.check = (
        check_int8(head, bundle, x, data_dir) if head.dtype.quantized else check_float(head, bundle, x)
    )
    return head.check


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def export_tflite(
    bundle: Bundle | str | Path,
    out: str | Path,
    dtype: DType | str = DType.FLOAT32,
    data_dir: str | Path | None = None,
    per_channel: bool = True,
    quiet: bool = True,
) -> HeadTflite:
    bundle = as_bundle(bundle)
    head = convert_head(bundle, dtype, per_channel, data_dir)
    check_head(head, bundle, check_samples(bundle, data_dir), data_dir)
    atomic_write_bytes(Path(out) / f"head_{dtype}.tflite", head.model)
    atomic_write_json(Path(out) / f"head_{dtype}.json", head.manifest_entry())
    log(
        f"head_{dtype}.tflite: {len(head.model):,} bytes, ops {sorted(set(head.manifest_entry()['ops']))}",
        quiet,
    )
    return head
