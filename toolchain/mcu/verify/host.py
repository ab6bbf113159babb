"""The host half of verify: test samples, the tail for samples that did not exit, the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.bundle import Bundle
from toolchain.data import load_raw, preprocess
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.ir.head import HeadIR
from toolchain.ir.layers import float_layers

# The default subset is the first N of one fixed permutation of the test set, so every run (and
# every N) sees the same samples and a larger N extends a smaller one.
SAMPLE_SEED = 20240801


def parse_samples(value: str | int) -> int | None:
    """--samples N or 'all' (None)."""
    if isinstance(value, int):
        n = value
    elif str(value).lower() == "all":
        return None
    else:
        try:
            n = int(value)
        except ValueError:
            raise ToolchainError(
                f"--samples {value!r} is not a number", hint="use a count or 'all'"
            ) from None
    if n < 1:
        raise ToolchainError(f"--samples must be at least 1, got {n}")
    return n


def select_samples(
    bundle: Bundle, n: int | None, data_dir: str | Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into the test set, float inputs [n, input_width], labels)."""
    cfg = bundle.config
    raw = load_raw(cfg.dataset, data_dir)
    total = len(raw.x_test)
    order = np.random.default_rng(SAMPLE_SEED).permutation(total)
    idx = order if n is None else order[: min(n, total)]
    x = preprocess(raw.x_test[idx], cfg.network.neurons[0])
    return idx, x, raw.y_test[idx].astype(np.int64)


class Tail:
    """The tail (split activation -> final logits) on the host: ONNX Runtime on the graph of
    toolchain.export.onnx when that exporter is available, else the bundle's Keras tail."""

    def __init__(self, bundle: Bundle, engine: str | None = None) -> None:
        """engine: "onnxruntime", "keras", or None for ONNX Runtime when available."""
        self.bundle = bundle
        self.engine = "keras"
        self._session = None
        if engine not in (None, "onnxruntime", "keras"):
            raise ToolchainError(f"unknown tail engine {engine!r}", hint="use onnxruntime or keras")
        if engine == "keras":
            return
        try:
            import onnxruntime as ort

            from toolchain.export import onnx as onnx_export
        except ImportError:
            if engine == "onnxruntime":
                raise ToolchainError(
                    "the ONNX tail needs onnxruntime and toolchain.export.onnx",
                    hint="pip install onnxruntime",
                ) from None
            return
        model = onnx_export.tail_model(self.bundle)
        self._session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self._input = onnx_export.INPUT_NAME["tail"]
        self.engine = "onnxruntime"

    def predict(self, split_float: np.ndarray) -> np.ndarray:
        """Final class per sample."""
        x = np.asarray(split_float, dtype=np.float32)
        if len(x) == 0:
            return np.zeros(0, dtype=np.int64)
        if self._session is not None:
            (logits,) = self._session.run(None, {self._input: x})[:1]
        else:
            logits = self.bundle.split_model().tail.predict(x, batch_size=4096, verbose=0)
        return np.asarray(logits).argmax(axis=1)


def float_head(bundle: Bundle, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split activation and exit logits of the unquantized float32 model (for quantization error)."""
    ref = HeadIR(DType.FLOAT32, float_layers(bundle), bundle.config.network.split_after, {})
    return ref.forward(np.asarray(x, dtype=np.float32))


def system_predictions(exit_taken: np.ndarray, exit_class: np.ndarray, tail_class: np.ndarray) -> np.ndarray:
    """The split system's answer: the exit's class where it exited, the tail's elsewhere."""
    return np.where(exit_taken, exit_class, tail_class)
