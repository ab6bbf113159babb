"""Exporters: C arrays for microcontrollers (c), TFLite for edge boards (tflite), ONNX for servers (onnx)."""
