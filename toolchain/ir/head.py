"""HeadIR: the deployed head + exit, the one representation every backend and the planner consume.

A HeadIR is layers in packed form (`ir.layers`), the position of the split, the int8 quantization of
the input / split / exit tensors, and the calibrated exit rule. It is also the bit-exact NumPy model of
what a device computes:

int8: TFLite Micro's FULLY_CONNECTED (`acc = bias + Σ (x − x_zp)·w`, double-rounding requantization,
output zero point, clamp) on the packed weights. float32: `acc = 0; acc += x·w` slot by slot in
float32, then `acc + bias`: the exact order of the C kernels (compiled with -ffp-contract=off), and of
TFLite's reference FULLY_CONNECTED whenever the slots are in ascending input order (index tables,
dense layers). The exit rule is the top-1 minus top-2 margin of the exit logits (int8 integers or
float32), compared with a threshold.

`HeadShape` is the structure alone (no values): what memory, buffers and C descriptors depend on.
`head_shape()` builds it from a project config for split points that were never trained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.calibrate import exit_margin
from toolchain.config import ProjectConfig
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.ir.fixedpoint import dequantize, quantize, requantize
from toolchain.ir.layers import Layer, LayerKind, LayerShape, classify
from toolchain.sparsity import Connectivity

HASH_LEN = 8  # leading bytes of the SHA-256 compiled into the firmware
_BATCH = 1024  # bounds the [batch, n_out, d_in] gather


@dataclass(frozen=True)
class SplitQuant:
    """Affine int8 quantization of a tensor (the split activation): real = (q − zero_point) · scale."""

    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ToolchainError(f"split scale {self.scale!r} must be a positive finite number")
        if not -128 <= int(self.zero_point) <= 127:
            raise ToolchainError(f"split zero point {self.zero_point} is outside the int8 range")

    def as_dict(self) -> dict[str, float | int]:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point)}


class _Sizes:
    """Tensor sizes of a head + exit, for anything with `layers` (n_in / n_out) and `n_head`."""

    layers: Sequence[LayerShape | Layer]
    n_head: int

    @property
    def input_size(self) -> int:
        return self.layers[0].n_in

    @property
    def split_size(self) -> int:
        return self.layers[self.n_head - 1].n_out

    @property
    def n_classes(self) -> int:
        return self.layers[-1].n_out


@dataclass(frozen=True)
class HeadShape(_Sizes):
    dtype: DType
    n_head: int  # the split activation is the output of layer n_head - 1
    layers: tuple[LayerShape, ...]


def head_shape(cfg: ProjectConfig, conns: list[Connectivity], split: int, dtype: DType) -> HeadShape:
    """The head (junctions 1..split) + exit branch of a project, as the C export would lay it out."""
    layers = []
    for i, conn in enumerate(conns[:split]):
        kind, params = classify(conn)
        s = conn.shape
        layers.append(
            LayerShape(
                f"junction_{i + 1}", kind, s.n_left, s.n_right, s.d_in, True, tuple(sorted(params.items()))
            )
        )
    sizes = [cfg.network.neurons[split], *cfg.exit.hidden, cfg.n_classes]
    names = [f"exit_{k + 1}" for k in range(len(cfg.exit.hidden))] + ["exit_logits"]
    for k, name in enumerate(names):
        relu = k < len(names) - 1
        layers.append(LayerShape(name, LayerKind.DENSE, sizes[k], sizes[k + 1], sizes[k], relu))
    return HeadShape(DType(dtype), split, tuple(layers))


def _forward_int8(layer: Layer, x: np.ndarray) -> np.ndarray:
    q = layer.quant
    xs = x.astype(np.int64) - q["in_zp"]
    out = np.empty((len(x), layer.n_out), dtype=np.int8)
    w = layer.w.astype(np.int64)
    for s in range(0, len(x), _BATCH):
        acc = np.einsum("brm,rm->br", xs[s : s + _BATCH][:, layer.idx], w) + layer.bias.astype(np.int64)
        out[s : s + _BATCH] = requantize(acc, q["mult"], q["shift"], q["out_zp"], q["act_min"], q["act_max"])
    return out


def _forward_float32(layer: Layer, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    out = np.empty((len(x), layer.n_out), dtype=np.float32)
    for s in range(0, len(x), _BATCH):
        g = x[s : s + _BATCH][:, layer.idx]  # [b, n_out, d_in]
        acc = np.zeros(g.shape[:2], dtype=np.float32)
        for m in range(layer.d_in):  # one float32 rounding per product and per sum, in slot order
            acc = acc + g[:, :, m] * layer.w[:, m]
        acc = acc + layer.bias  # bias last, as TFLite's reference FULLY_CONNECTED
        # where(acc < 0) like the C kernel (keeps -0.0, unlike maximum).
        out[s : s + _BATCH] = np.where(acc < 0, np.float32(0), acc) if layer.relu else acc
    return out


@dataclass
class HeadIR(_Sizes):
    dtype: DType
    layers: list[Layer]
    n_head: int  # the split activation is the output of layer n_head - 1
    quant: dict[str, dict[str, float | int]]  # int8: input / split / exit {"scale", "zero_point"}
    exit_threshold: float | int = 0  # exit when margin >= threshold
    exit_rule: dict[str, Any] = field(default_factory=dict)  # how the threshold was calibrated
    model_hash: str = ""

    def __post_init__(self) -> None:
        self.dtype = DType(self.dtype)

    @property
    def shape(self) -> HeadShape:
        return HeadShape(self.dtype, self.n_head, tuple(ly.shape for ly in self.layers))

    @property
    def split_quant(self) -> SplitQuant:
        q = self.quant["split"]
        return SplitQuant(float(q["scale"]), int(q["zero_point"]))

    # ----- encoding -----
    def encode_input(self, x: np.ndarray) -> np.ndarray:
        """float [N, ≤ input_size] in [0, 1] (zero-padded) -> what the device takes as input."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] > self.input_size:
            raise ToolchainError(f"input of shape {x.shape} does not fit the head's {self.input_size} inputs")
        full = np.zeros((len(x), self.input_size), dtype=np.float32)
        full[:, : x.shape[1]] = x
        if not self.dtype.quantized:
            return full
        q = self.quant["input"]
        return quantize(full, q["scale"], q["zero_point"])

    def decode_split(self, split: np.ndarray) -> np.ndarray:
        if not self.dtype.quantized:
            return np.asarray(split, dtype=np.float32)
        q = self.quant["split"]
        return dequantize(split, q["scale"], q["zero_point"])

    # ----- inference -----
    def forward(self, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(split activation, exit logits) for a batch of encoded inputs."""
        x = np.asarray(x_enc)
        want = self.dtype.numpy
        if x.dtype != want or x.ndim != 2 or x.shape[1] != self.input_size:
            raise ToolchainError(
                f"encoded input must be {want.name} [N, {self.input_size}], got {x.dtype} {list(x.shape)}",
                hint="pass the output of encode_input()",
            )
        step = _forward_int8 if self.dtype.quantized else _forward_float32
        split = None
        for i, layer in enumerate(self.layers):
            x = step(layer, x)
            if i == self.n_head - 1:
                split = x
        assert split is not None
        return split, x

    def exit_decision(self, exit_logits: np.ndarray) -> np.ndarray:
        return exit_margin(exit_logits) >= self.exit_threshold

    def infer(self, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        split, logits = self.forward(x_enc)
        return split, logits, self.exit_decision(logits)

    # ----- identity and persistence -----
    def compute_hash(self) -> str:
        """SHA-256 over everything that determines the device's outputs (leading HASH_LEN bytes)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.meta(), sort_keys=True).encode())
        for name, arr in sorted(self.arrays().items()):
            a = np.ascontiguousarray(arr)
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[: 2 * HASH_LEN]

    def meta(self) -> dict[str, Any]:
        layers = []
        for ly in self.layers:
            q = {k: v for k, v in ly.quant.items() if not isinstance(v, np.ndarray)}
            layers.append(
                {
                    "name": ly.name,
                    "kind": ly.kind,
                    "n_in": ly.n_in,
                    "n_out": ly.n_out,
                    "d_in": ly.d_in,
                    "relu": ly.relu,
                    "params": ly.params,
                    "quant": {k: (float(v) if isinstance(v, np.floating) else v) for k, v in q.items()},
                }
            )
        thr = self.exit_threshold
        return {
            "dtype": self.dtype,
            "n_head": self.n_head,
            "layers": layers,
            "quant": self.quant,
            "exit_threshold": int(thr) if self.dtype.quantized else float(np.float32(thr)),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for ly in self.layers:
            out[f"{ly.name}/idx"] = ly.idx
            out[f"{ly.name}/w"] = ly.w
            out[f"{ly.name}/bias"] = ly.bias
            for k, v in ly.quant.items():
                if isinstance(v, np.ndarray):
                    out[f"{ly.name}/{k}"] = v
        return out
