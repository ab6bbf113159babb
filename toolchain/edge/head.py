"""Head + exit on LiteRT, input encoding and the early-exit rules (device side: numpy + ai_edge_litert).

The exit rule comes from manifest.json:
- float32 head: max-softmax of the exit logits >= threshold (toolchain.calibrate, float path);
- int8 head: top-1 minus top-2 of the *int8* exit logits >= an integer threshold (the integer rule of
  toolchain.ir.head.HeadIR), so the decision needs no float math and matches the MCU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.calibrate import exit_margin, softmax_confidence
from toolchain.errors import ToolchainError
from toolchain.ir.fixedpoint import dequantize, quantize
from toolchain.progress import native_stderr_captured


@dataclass(frozen=True)
class ExitRule:
    kind: str  # "max_softmax" | "int_margin"
    threshold: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExitRule:
        kind = d.get("rule")
        if kind not in ("max_softmax", "int_margin"):
            raise ToolchainError(f"unknown exit rule {kind!r} in manifest.json", hint="rebuild the target")
        return cls(kind, float(d["threshold"]))

    def scores(self, exit_logits: np.ndarray) -> np.ndarray:
        z = np.asarray(exit_logits)
        if self.kind == "int_margin":
            return exit_margin(z.astype(np.int8)).astype(np.float64)
        # float32 arithmetic, as when the threshold was chosen: a float64 softmax can land on the
        # other side of it.
        return softmax_confidence(z.astype(np.float32))

    def exits(self, exit_logits: np.ndarray) -> np.ndarray:
        return self.scores(exit_logits) >= self.threshold


class LiteHead:
    """One LiteRT interpreter for the head+exit model (static batch 1)."""

    def __init__(
        self,
        model: str | Path | bytes,
        split_index: int,
        exit_index: int,
        quant: dict[str, dict[str, float]] | None = None,
        num_threads: int = 1,
        delegate: str | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        delegates = []
        if delegate:
            try:
                # Probe with ctypes first: LiteRT's own failure path also prints a spurious traceback.
                ctypes.CDLL(delegate)
                delegates = [load_delegate(delegate)]
            except (ValueError, OSError) as exc:
                raise ToolchainError(
                    f"cannot load the LiteRT delegate {delegate!r}: {exc}",
                    hint="install the Edge TPU runtime (libedgetpu1-std) or run without --delegate",
                ) from None
        kwargs: dict[str, Any] = {"num_threads": num_threads, "experimental_delegates": delegates or None}
        if isinstance(model, bytes | bytearray):
            kwargs["model_content"] = bytes(model)
        else:
            kwargs["model_path"] = str(model)
        try:
            with native_stderr_captured():  # LiteRT announces its XNNPACK delegate on stderr
                self.interp = Interpreter(**kwargs)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ToolchainError(f"LiteRT cannot load the head model: {exc}") from None
        (inp,) = self.interp.get_input_details()
        self.input_index = int(inp["index"])
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self.input_dtype = np.dtype(inp["dtype"])
        self.split_index, self.exit_index = split_index, exit_index
        self.quant = quant or {}
        if self.input_shape[0] != 1:
            raise ToolchainError(f"head model input shape {self.input_shape}: expected a static batch of 1")

    @property
    def int8(self) -> bool:
        return self.input_dtype == np.int8

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float32 inputs [N, input_size] -> what the model takes."""
        if self.int8:
            q = self.quant["input"]
            return quantize(x, q["scale"], q["zero_point"])
        return np.asarray(x, dtype=np.float32)

    def run_one(self, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One encoded sample [input_size] -> (split [W], exit logits [C]) in the model's dtypes."""
        self.interp.set_tensor(self.input_index, x_enc.reshape(self.input_shape))
        self.interp.invoke()
        return self.interp.get_tensor(self.split_index)[0], self.interp.get_tensor(self.exit_index)[0]

    def run(self, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [self.run_one(row) for row in x_enc]
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])

    def split_float(self, split: np.ndarray) -> np.ndarray:
        if self.int8:
            q = self.quant["split"]
            return dequantize(split, q["scale"], q["zero_point"])
        return np.asarray(split, dtype=np.float32)
