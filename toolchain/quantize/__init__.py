"""Post-training quantization of the head + exit into the IR (toolchain.ir).

- `calibration_inputs(bundle)`: the fixed subset of the training split every int8 converter uses.
- `head_exit_tflite(bundle, dtype)`: the masked (dense FULLY_CONNECTED) head + exit through the TFLite
  converter, static batch 1 (int8: full-integer quantization).
- `int8_conversion(bundle)`: that int8 flatbuffer and its split quantization (what the int8 tail needs).
- `build_ir(bundle, dtype)`: the HeadIR (float32 from the bundle, int8 read back from the flatbuffer)
  with its exit rule calibrated on the validation split.
"""

from toolchain.quantize.build import Int8Conversion, build_ir, calibrate_exit, int8_conversion
from toolchain.quantize.tflite import calibration_inputs, head_exit_tflite, read_int8_graph, split_quant_of

__all__ = [
    "Int8Conversion",
    "build_ir",
    "calibrate_exit",
    "calibration_inputs",
    "head_exit_tflite",
    "int8_conversion",
    "read_int8_graph",
    "split_quant_of",
]
