"""HeadReference: what a device computes for the head + exit, bit for bit, in NumPy.

int8: TFLite Micro's FULLY_CONNECTED (`acc = bias + Σ (x − x_zp)·w`, double-rounding requantization,
output zero point, clamp) on the packed weights. float32: `acc = 0; acc += x·w` slot by slot in
float32, then `acc + bias`: the exact order of the C kernels (compiled with -ffp-contract=off), and of
TFLite's reference FULLY_CONNECTED whenever the slots are in ascending input order (index tables,
dense layers). The exit rule is the
top-1 minus top-2 margin of the exit logits (int8 integers or float32), compared with a threshold.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import ToolchainError
from toolchain.ir.fixedpoint import requantize
from toolchain.ir.layers import Layer

EXPORT_FORMAT = "toolchain-c-export"
EXPORT_VERSION = 1
HASH_LEN = 8  # leading bytes of the SHA-256 compiled into the firmware
_BATCH = 1024  # bounds the [batch, n_out, d_in] gather


def exit_margin(logits: np.ndarray) -> np.ndarray:
    """top-1 minus top-2 of each row: int64 for int8 logits, float32 (one IEEE subtraction) else."""
    part = np.sort(logits, axis=1)
    if logits.dtype == np.int8:
        return part[:, -1].astype(np.int64) - part[:, -2].astype(np.int64)
    return (part[:, -1] - part[:, -2]).astype(logits.dtype)


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
class HeadReference:
    dtype: str  # "int8" | "float32"
    layers: list[Layer]
    n_head: int  # the split activation is the output of layer n_head - 1
    quant: dict[str, dict[str, float | int]]  # int8: input / split / exit {"scale", "zero_point"}
    exit_threshold: float | int = 0  # exit when margin >= threshold
    exit_rule: dict[str, Any] = field(default_factory=dict)  # how the threshold was calibrated
    model_hash: str = ""

    @property
    def input_size(self) -> int:
        return self.layers[0].n_in

    @property
    def split_size(self) -> int:
        return self.layers[self.n_head - 1].n_out

    @property
    def n_classes(self) -> int:
        return self.layers[-1].n_out

    # ----- encoding -----
    def encode_input(self, x: np.ndarray) -> np.ndarray:
        """float [N, ≤ input_size] in [0, 1] (zero-padded) -> what the device takes as input."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] > self.input_size:
            raise ToolchainError(f"input of shape {x.shape} does not fit the head's {self.input_size} inputs")
        full = np.zeros((len(x), self.input_size), dtype=np.float32)
        full[:, : x.shape[1]] = x
        if self.dtype == "float32":
            return full
        scale = np.float32(self.quant["input"]["scale"])
        zp = int(self.quant["input"]["zero_point"])
        # TFLite's Quantize: round(x / scale) (half away from zero) + zero point, saturated.
        v = full / scale
        q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
        return np.clip(q + zp, -128, 127).astype(np.int8)

    def decode_split(self, split: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return np.asarray(split, dtype=np.float32)
        q = self.quant["split"]
        scale = np.float32(q["scale"])
        return ((np.asarray(split, dtype=np.int32) - int(q["zero_point"])) * scale).astype(np.float32)

    # ----- inference -----
    def forward(self, x_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(split activation, exit logits) for a batch of encoded inputs."""
        x = np.asarray(x_enc)
        want = np.int8 if self.dtype == "int8" else np.float32
        if x.dtype != want or x.ndim != 2 or x.shape[1] != self.input_size:
            raise ToolchainError(
                f"encoded input must be {np.dtype(want).name} [N, {self.input_size}], got "
                f"{x.dtype} {list(x.shape)}",
                hint="pass the output of encode_input()",
            )
        step = _forward_int8 if self.dtype == "int8" else _forward_float32
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
        h.update(json.dumps(self._meta(), sort_keys=True).encode())
        for name, arr in sorted(self._arrays().items()):
            a = np.ascontiguousarray(arr)
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[: 2 * HASH_LEN]

    def _meta(self) -> dict[str, Any]:
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
            "exit_threshold": int(thr) if self.dtype == "int8" else float(np.float32(thr)),
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for ly in self.layers:
            out[f"{ly.name}/idx"] = ly.idx
            out[f"{ly.name}/w"] = ly.w
            out[f"{ly.name}/bias"] = ly.bias
            for k, v in ly.quant.items():
                if isinstance(v, np.ndarray):
                    out[f"{ly.name}/{k}"] = v
        return out

    def files(self, extra_meta: dict[str, Any] | None = None) -> dict[str, bytes]:
        """model.json + reference.npz contents (the caller writes them atomically)."""
        import io

        buf = io.BytesIO()
        np.savez(buf, **self._arrays())
        meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model_hash": self.model_hash}
        meta.update(self._meta())
        meta["exit_rule"] = self.exit_rule
        meta.update(extra_meta or {})
        return {"reference.npz": buf.getvalue(), "model.json": (json.dumps(meta, indent=2) + "\n").encode()}

    @classmethod
    def from_export(cls, export_dir: str | Path) -> HeadReference:
        d = Path(export_dir)
        try:
            meta = json.loads((d / "model.json").read_text())
            with np.load(d / "reference.npz") as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError as exc:
            raise ToolchainError(
                f"{d} is not a C export: {Path(exc.filename).name} is missing",
                hint="run `toolchain export c --bundle DIR --out OUT` first",
            ) from None
        except (json.JSONDecodeError, ValueError, OSError) as exc:
            raise ToolchainError(f"{d}: corrupt C export ({exc})") from None
        if meta.get("format") != EXPORT_FORMAT or meta.get("version") != EXPORT_VERSION:
            raise ToolchainError(
                f"{d}: C export format {meta.get('format')!r} version {meta.get('version')!r} is not "
                f"supported (this toolchain reads {EXPORT_FORMAT} version {EXPORT_VERSION})",
                hint="re-run `toolchain export c` with this toolchain",
            )
        layers = []
        for m in meta["layers"]:
            name = m["name"]
            quant: dict[str, Any] = dict(m["quant"])
            for k in ("in_scale", "out_scale"):
                if k in quant:
                    quant[k] = np.float32(quant[k])
            for k in ("w_scale", "mult", "shift"):
                if f"{name}/{k}" in arrays:
                    quant[k] = arrays[f"{name}/{k}"]
            layers.append(
                Layer(
                    name,
                    m["kind"],
                    m["n_in"],
                    arrays[f"{name}/idx"],
                    arrays[f"{name}/w"],
                    arrays[f"{name}/bias"],
                    m["relu"],
                    dict(m["params"]),
                    quant,
                )
            )
        ref = cls(meta["dtype"], layers, meta["n_head"], meta["quant"], meta["exit_threshold"])
        ref.exit_rule = meta.get("exit_rule", {})
        ref.model_hash = ref.compute_hash()
        if ref.model_hash != meta["model_hash"]:
            raise ToolchainError(
                f"{d}: model hash {meta['model_hash']} does not match its arrays ({ref.model_hash})",
                hint="the export was modified; re-run `toolchain export c`",
            )
        return ref
