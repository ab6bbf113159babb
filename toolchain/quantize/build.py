"""Building the HeadIR of a bundle (float32, or int8 through the one TFLite conversion), and
calibrating its exit rule on the validation split.

The device's exit score is the top-1 minus top-2 margin of the exit logits it computed (int8
integers, or float32). The threshold is chosen by the project's rule (max_accuracy_drop or
target_exit_rate) with `toolchain.calibrate.calibrate`, the same code path as the float max-softmax
rule of training, on the validation split: exit correctness from the device-equivalent logits, final
correctness from the float tail run on the *decoded* split activation (what the server receives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle import Bundle, as_bundle, load_bundle_splits
from toolchain.calibrate import apply_threshold, calibrate, exit_margin
from toolchain.data import Splits
from toolchain.dtypes import DType
from toolchain.ir.head import HeadIR, SplitQuant
from toolchain.ir.layers import float_layers
from toolchain.quantize.tflite import calibration_inputs, head_exit_tflite, int8_layers, split_quant_of


@dataclass(frozen=True)
class Int8Conversion:
    """The int8 head + exit flatbuffer every int8 artifact shares, and its split quantization."""

    tflite: bytes
    split_quant: SplitQuant


def int8_conversion(
    bundle: Bundle | str | Path,
    data_dir: str | Path | None = None,
    per_channel: bool = True,
    splits: Splits | None = None,
) -> Int8Conversion:
    """The recipe int8 head -> split quantization -> int8 tail, written once: convert the head with the
    fixed calibration subset, then read the split tensor's quantization back from that flatbuffer."""
    bundle = as_bundle(bundle)
    cal = calibration_inputs(bundle, data_dir, splits=splits)
    tflite = head_exit_tflite(bundle, DType.INT8, per_channel, calibration=cal)
    return Int8Conversion(tflite, split_quant_of(tflite))


def _tail_predictions(tail, split_float: np.ndarray) -> np.ndarray:
    # A direct call, not predict(): no tf.function retracing for each new model.
    return np.asarray(tail(split_float, training=False)).argmax(axis=1)


def _int_threshold(threshold: float) -> int:
    # Integer scores: score >= t  <=>  score >= ceil(t); calibrate's "never" is max score + epsilon.
    return math.ceil(threshold)


def _float32_threshold(threshold: float) -> float:
    """Smallest float32 >= threshold: the same decisions on float32 scores as the float64 threshold."""
    t = np.float32(threshold)
    if float(t) < threshold:
        t = np.nextafter(t, np.float32(np.inf))
    return float(t)


def _evaluate(ref: HeadIR, tail, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    split, logits = ref.forward(ref.encode_input(x))
    exit_pred = logits.argmax(axis=1)
    final_pred = _tail_predictions(tail, ref.decode_split(split))
    scores = exit_margin(logits)
    return {"scores": scores, "exit_pred": exit_pred, "final_pred": final_pred, "y": y}


def _summary(ev: dict[str, Any], threshold: float | int) -> dict[str, float]:
    system, exited = apply_threshold(ev["scores"], ev["exit_pred"], ev["final_pred"], threshold)
    return {
        "exit_rate": float(np.mean(exited)),
        "accuracy_at_threshold": float(np.mean(system == ev["y"])),
        "exit_accuracy": float(np.mean(ev["exit_pred"] == ev["y"])),
        "final_accuracy": float(np.mean(ev["final_pred"] == ev["y"])),
    }


def calibrate_exit(ref: HeadIR, bundle: Bundle, splits: Splits) -> None:
    """Set ref.exit_threshold (and ref.exit_rule) by the project's rule on the validation split."""
    cfg = bundle.config.exit
    target = cfg.max_accuracy_drop if cfg.rule == "max_accuracy_drop" else cfg.target_exit_rate
    tail = bundle.split_model().tail
    val = _evaluate(ref, tail, splits.x_val, splits.y_val)
    cal = calibrate(
        val["scores"], val["exit_pred"] == val["y"], val["final_pred"] == val["y"], cfg.rule, target
    )
    if ref.dtype.quantized:
        ref.exit_threshold = _int_threshold(cal.threshold)
    else:
        ref.exit_threshold = _float32_threshold(cal.threshold)
    test = _evaluate(ref, tail, splits.x_test, splits.y_test)
    ref.exit_rule = {
        "score": f"margin_{ref.dtype}",
        "description": "exit when top-1 minus top-2 of the exit logits >= threshold",
        "rule": cal.rule,
        "target": cal.target,
        "threshold": ref.exit_threshold,
        "validation": _summary(val, ref.exit_threshold),
        "test": _summary(test, ref.exit_threshold),
    }


def build_ir(
    bundle: Bundle | str | Path,
    dtype: DType | str = DType.INT8,
    data_dir: str | Path | None = None,
    per_channel: bool = True,
    splits: Splits | None = None,
    tflite: bytes | None = None,
) -> tuple[HeadIR, bytes | None]:
    """HeadIR with a calibrated exit rule and its hash; for int8 also the TFLite flatbuffer it came from
    (`tflite`: reuse an int8 conversion made earlier instead of converting again)."""
    dtype = DType.parse(dtype)
    bundle = as_bundle(bundle)
    splits = splits or load_bundle_splits(bundle, data_dir)
    n_head = bundle.config.network.split_after
    if not dtype.quantized:
        ir = HeadIR(dtype, float_layers(bundle), n_head, {})
    else:
        if tflite is None:
            tflite = int8_conversion(bundle, per_channel=per_channel, splits=splits).tflite
        layers, io_quant = int8_layers(tflite, bundle)
        quant = {
            k: {"scale": float(q.scale[0]), "zero_point": int(q.zero_point[0])} for k, q in io_quant.items()
        }
        ir = HeadIR(dtype, layers, n_head, quant)
    calibrate_exit(ir, bundle, splits)
    ir.model_hash = ir.compute_hash()
    return ir, tflite if dtype.quantized else None
