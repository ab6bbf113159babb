"""TFLite conversion of the head + exit and reading the int8 tensors back from the flatbuffer.

The masked (dense FULLY_CONNECTED, zeros where edges are missing) Keras head is exported as a
SavedModel with a static [1, N] input and converted with builtin ops only. For int8 the converter
does full-integer post-training quantization calibrated on `calibration_inputs()`; the packed int8
weights are then gathered from its FC tensors (python-stack.md §5), so whatever the device computes
is what TFLite Micro computes on this very flatbuffer.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.bundle import Bundle, as_bundle, load_bundle_splits
from toolchain.data import Splits
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.ir.fixedpoint import effective_scales, quantize_multipliers
from toolchain.ir.head import SplitQuant
from toolchain.ir.layers import (
    Layer,
    LayerKind,
    classify,
    dense_idx,
    exit_layer_names,
    head_connectivity,
    pack_int8,
)
from toolchain.progress import native_stderr_captured

# The calibration subset of the training split is a fixed choice (independent of the training seed).
CALIBRATION_SEED = 20240913
FULLY_CONNECTED = 9  # tflite BuiltinOperator
ACT_NONE, ACT_RELU = 0, 1  # tflite ActivationFunctionType
TFLITE_INT8, TFLITE_INT32 = 9, 2  # tflite TensorType


def calibration_inputs(
    bundle: Bundle | str | Path,
    data_dir: str | Path | None = None,
    n: int = 1000,
    splits: Splits | None = None,
) -> np.ndarray:
    """float32 [n, input_size]: a fixed, seeded subset of the training split."""
    bundle = as_bundle(bundle)
    splits = splits or load_bundle_splits(bundle, data_dir)
    total = len(splits.x_train)
    if not 1 <= n <= total:
        raise ToolchainError(f"calibration needs 1 to {total} samples, got n = {n}")
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(total, size=n, replace=False))
    return np.ascontiguousarray(splits.x_train[pick], dtype=np.float32)


def head_exit_tflite(
    bundle: Bundle | str | Path,
    dtype: DType | str = DType.INT8,
    per_channel: bool = True,
    data_dir: str | Path | None = None,
    calibration: np.ndarray | None = None,
) -> bytes:
    """The masked head + exit as a TFLite flatbuffer (static batch 1, builtin ops only).

    int8: full-integer quantization (int8 input and outputs) calibrated on `calibration_inputs()`
    (or the given float32 calibration array); per_channel=False gives per-tensor FC weights.
    """
    dtype = DType.parse(dtype)
    bundle = as_bundle(bundle)
    import tensorflow as tf  # heavy: only here (the package sets TF's log level on import)

    n_in = bundle.config.network.neurons[0]
    if dtype.quantized and calibration is None:
        calibration = calibration_inputs(bundle, data_dir)
    model = bundle.split_model(form="masked").head_exit
    with tempfile.TemporaryDirectory(prefix="tc-head-") as tmp:
        sig = [tf.TensorSpec([1, n_in], tf.float32)]
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(tmp, format="tf_saved_model", input_signature=sig, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if not dtype.quantized:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            cal = np.asarray(calibration, dtype=np.float32)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([cal[i : i + 1]] for i in range(len(cal)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            if not per_channel:
                conv._experimental_disable_per_channel_quantization_for_dense_layers = True
        with native_stderr_captured():
            return bytes(conv.convert())


# ----------------------------------------------------------------------------------------------
# Reading the int8 model
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorQuant:
    scale: np.ndarray  # float32, one per tensor or one per channel
    zero_point: np.ndarray  # int64


@dataclass
class Int8Graph:
    """The FC chain of an int8 head + exit flatbuffer, in execution order."""

    weights: list[np.ndarray]  # int8 [n_out, n_in]
    biases: list[np.ndarray]  # int32 [n_out]
    weight_quant: list[TensorQuant]
    act_quant: list[TensorQuant]  # [input, output of op 0, output of op 1, ...]
    relu: list[bool]
    split_tensor: int  # position in act_quant of the split activation
    output_order: list[str]  # subgraph output k is "split" or "exit"


def _tensor_data(model, tensor, dtype) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    if data is None:
        raise ValueError(f"tensor {tensor.name!r} has no constant data")
    return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype).reshape(tensor.shape)


def _quant(tensor) -> TensorQuant:
    q = tensor.quantization
    if q is None or q.scale is None:
        raise ValueError(f"tensor {tensor.name!r} is not quantized")
    return TensorQuant(np.asarray(q.scale, dtype=np.float32), np.asarray(q.zeroPoint, dtype=np.int64))


def output_order(buf: bytes) -> list[str]:
    """Which of "split" / "exit" each subgraph output is, from the signature (Keras output order)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sig = {o.name.decode(): o.tensorIndex for o in model.signatureDefs[0].outputs}
    return ["split" if t == sig["output_0"] else "exit" for t in model.subgraphs[0].outputs]


def read_int8_graph(buf: bytes) -> Int8Graph:
    """Follow the FULLY_CONNECTED chain from the input; refuse anything else."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    if len(model.subgraphs) != 1:
        raise ValueError(f"expected 1 subgraph, found {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    tensors = sg.tensors
    by_input = {op.inputs[0]: op for op in sg.operators}
    cur = sg.inputs[0]
    if tensors[cur].type != TFLITE_INT8:
        raise ValueError("the model input is not int8 (full-integer quantization expected)")
    g = Int8Graph([], [], [], [_quant(tensors[cur])], [], -1, [])
    chain = [cur]
    while cur in by_input:
        op = by_input[cur]
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin != FULLY_CONNECTED:
            raise ValueError(f"unexpected operator {builtin} (only FULLY_CONNECTED is supported)")
        act = op.builtinOptions.fusedActivationFunction
        if act not in (ACT_NONE, ACT_RELU):
            raise ValueError(f"unsupported fused activation {act}")
        w_t, b_t = tensors[op.inputs[1]], tensors[op.inputs[2]]
        if w_t.type != TFLITE_INT8 or b_t.type != TFLITE_INT32:
            raise ValueError("FC weights must be int8 and biases int32")
        g.weights.append(_tensor_data(model, w_t, np.int8))
        g.biases.append(_tensor_data(model, b_t, np.int32))
        wq = _quant(w_t)
        if np.any(wq.zero_point != 0):
            raise ValueError("int8 weights must be symmetric (zero point 0)")
        g.weight_quant.append(wq)
        g.relu.append(act == ACT_RELU)
        cur = op.outputs[0]
        g.act_quant.append(_quant(tensors[cur]))
        chain.append(cur)
    outputs = list(sg.outputs)
    # The signature names outputs in Keras order (output_0 = split, output_1 = exit logits); the
    # subgraph's own output order is not guaranteed to follow it.
    sig = {o.name.decode(): o.tensorIndex for o in model.signatureDefs[0].outputs}
    split_t, exit_t = sig["output_0"], sig["output_1"]
    if exit_t != chain[-1] or split_t not in chain:
        raise ValueError("the exit logits must be the last FC output and the split an FC output")
    g.split_tensor = chain.index(split_t)
    g.output_order = ["split" if t == split_t else "exit" for t in outputs]
    return g


def int8_layers(buf: bytes, bundle: Bundle) -> tuple[list[Layer], dict[str, TensorQuant]]:
    """Packed int8 layers (+ requantization) and the input / split / exit quantization."""
    g = read_int8_graph(buf)
    conns = head_connectivity(bundle)
    names = [f"junction_{i + 1}" for i in range(len(conns))] + exit_layer_names(bundle)
    if len(g.weights) != len(names) or g.split_tensor != len(conns):
        raise ValueError(f"flatbuffer has {len(g.weights)} FC layers, the bundle's head + exit {len(names)}")
    layers = []
    for i, name in enumerate(names):
        w_dense = g.weights[i]
        n_out, n_in = w_dense.shape
        if i < len(conns):
            kind, params = classify(conns[i])
            idx = conns[i].idx.astype(np.int32)
        else:
            kind, params, idx = LayerKind.DENSE, {}, dense_idx(n_out, n_in)
        s_in, s_out = g.act_quant[i], g.act_quant[i + 1]
        s_w = np.broadcast_to(g.weight_quant[i].scale, (n_out,)).astype(np.float32)
        mult, shift = quantize_multipliers(effective_scales(s_in.scale[0], s_w, s_out.scale[0]))
        out_zp = int(s_out.zero_point[0])
        quant = {
            "in_scale": np.float32(s_in.scale[0]),
            "in_zp": int(s_in.zero_point[0]),
            "out_scale": np.float32(s_out.scale[0]),
            "out_zp": out_zp,
            "w_scale": s_w,
            "mult": mult.astype(np.int32),
            "shift": shift.astype(np.int32),
            # A fused ReLU clamps at the quantized zero (TFLite CalculateActivationRangeQuantized).
            "act_min": max(-128, out_zp) if g.relu[i] else -128,
            "act_max": 127,
        }
        layers.append(
            Layer(
                name,
                kind,
                n_in,
                idx,
                pack_int8(name, w_dense, idx),
                g.biases[i].copy(),
                g.relu[i],
                params,
                quant,
            )
        )
    io_quant = {"input": g.act_quant[0], "split": g.act_quant[g.split_tensor], "exit": g.act_quant[-1]}
    return layers, io_quant


def split_quant_of(buf: bytes) -> SplitQuant:
    """The split tensor's (scale, zero point) in an int8 head + exit flatbuffer: what the device
    quantizes the split activation with, so what the int8 tail must dequantize with."""
    g = read_int8_graph(buf)
    q = g.act_quant[g.split_tensor]
    return SplitQuant(float(q.scale[0]), int(q.zero_point[0]))
