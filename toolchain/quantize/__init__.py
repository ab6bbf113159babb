"""int8 post-training quantization of head + exit and the NumPy reference of what a device computes.

- `calibration_inputs(bundle, data_dir=None, n=1000)`: fixed subset of the training split.
- `head_exit_tflite(bundle, dtype="int8", per_channel=True, data_dir=None) -> bytes`: the masked
  (dense FULLY_CONNECTED) head + exit converted by the TFLite converter, static batch 1.
- `HeadReference`: bit-exact NumPy model of the device (int8: TFLite Micro arithmetic; float32: the
  C kernels' summation order), with the integer exit rule; `build_reference()` makes one from a bundle,
  `HeadReference.from_export(dir)` reads what `toolchain export c` wrote.
"""

from toolchain.quantize.build import build_reference, calibrate_exit
from toolchain.ir.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
from toolchain.ir.layers import Layer
from toolchain.ir.head import HeadReference, exit_margin
from toolchain.quantize.tflite import DTYPES, calibration_inputs, check_dtype, head_exit_tflite

__all__ = [
    "DTYPES",
    "HeadReference",
    "Layer",
    "build_reference",
    "calibrate_exit",
    "calibration_inputs",
    "check_dtype",
    "exit_margin",
    "head_exit_tflite",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
]
