"""Codecs of the HELLO, INFER and ERROR payloads (docs/protocol.md)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.mcu.protocol.framing import (
    COUNTER_KINDS,
    ERR_FAULT,
    ERROR_NAMES,
    MSG_NAMES,
)


class LinkError(ToolchainError):
    """The device did not answer correctly within the allowed time and retries."""


# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HelloInfo:
    major: int
    minor: int
    max_payload: int
    capabilities: int
    dtype: DType
    counter_kind: str
    interbyte_timeout_ms: int
    counter_hz: int
    input_size: int
    split_size: int
    n_classes: int
    quant: dict[str, dict[str, float | int]]
    exit_threshold: float | int
    model_hash: str
    target: str
    build_info: str

    @property
    def elem_size(self) -> int:
        return DType(self.dtype).nbytes

    @property
    def np_dtype(self) -> np.dtype:
        return DType(self.dtype).numpy


_HELLO_FIXED = struct.Struct("<BBHIBBHIHHHH" + "fi" * 3 + "4s")


def encode_hello(info: HelloInfo) -> bytes:
    """The device's HELLO reply payload (used by tests and the proxy; the device writes it in C)."""
    q = [info.quant.get(k, {}) for k in ("input", "split", "exit")]
    thr = (
        struct.pack("<i", int(info.exit_threshold))
        if DType(info.dtype).quantized
        else struct.pack("<f", float(info.exit_threshold))
    )
    kind = {v: k for k, v in COUNTER_KINDS.items()}[info.counter_kind]
    code = DType(info.dtype).spec.protocol_code
    fixed = _HELLO_FIXED.pack(
        info.major, info.minor, info.max_payload, info.capabilities, code, kind,
        info.interbyte_timeout_ms, info.counter_hz, info.input_size, info.split_size, info.n_classes, 0,
        *(v for d in q for v in (float(d.get("scale", 0.0)), int(d.get("zero_point", 0)))), thr,
    )  # fmt: skip
    out = fixed
    for blob in (bytes.fromhex(info.model_hash), info.target.encode(), info.build_info.encode()):
        out += bytes([len(blob)]) + blob
    return out


def decode_hello(payload: bytes) -> HelloInfo:
    try:
        f = _HELLO_FIXED.unpack_from(payload, 0)
        pos = _HELLO_FIXED.size
        blobs = []
        for _ in range(3):
            n = payload[pos]
            blob = payload[pos + 1 : pos + 1 + n]
            if len(blob) != n:
                raise ValueError("truncated string")
            blobs.append(blob)
            pos += 1 + n
    except (struct.error, IndexError, ValueError) as exc:
        raise LinkError(f"malformed HELLO reply ({len(payload)} bytes): {exc}") from None
    dtype = DType.from_protocol_code(f[4])
    if dtype is None:
        raise LinkError(f"HELLO reply names an unknown dtype code {f[4]}")
    quant = {}
    if dtype.quantized:
        for i, name in enumerate(("input", "split", "exit")):
            quant[name] = {"scale": f[12 + 2 * i], "zero_point": f[13 + 2 * i]}
    raw_thr = f[18]
    threshold = struct.unpack("<i" if dtype.quantized else "<f", raw_thr)[0]
    return HelloInfo(
        major=f[0], minor=f[1], max_payload=f[2], capabilities=f[3], dtype=dtype,
        counter_kind=COUNTER_KINDS.get(f[5], f"unknown({f[5]})"), interbyte_timeout_ms=f[6],
        counter_hz=f[7], input_size=f[8], split_size=f[9], n_classes=f[10], quant=quant,
        exit_threshold=threshold, model_hash=blobs[0].hex(),
        target=blobs[1].decode("ascii", "replace"), build_info=blobs[2].decode("ascii", "replace"),
    )  # fmt: skip


@dataclass(frozen=True)
class InferResult:
    exit_taken: bool
    exit_class: int
    counter_kind: str
    count: int
    split: np.ndarray
    exit_logits: np.ndarray


def infer_reply_size(info: HelloInfo) -> int:
    return 8 + (info.split_size + info.n_classes) * info.elem_size


def decode_infer(payload: bytes, info: HelloInfo) -> InferResult:
    if len(payload) != infer_reply_size(info):
        raise LinkError(f"INFER reply has {len(payload)} bytes, expected {infer_reply_size(info)}")
    taken, cls, kind, _, count = struct.unpack_from("<BBBBI", payload, 0)
    values = np.frombuffer(payload, dtype=info.np_dtype, offset=8)
    return InferResult(
        exit_taken=bool(taken),
        exit_class=cls,
        counter_kind=COUNTER_KINDS.get(kind, f"unknown({kind})"),
        count=count,
        split=values[: info.split_size].copy(),
        exit_logits=values[info.split_size :].copy(),
    )


def decode_error(payload: bytes) -> tuple[int, int, int]:
    if len(payload) != 4:
        return 0, 0, 0
    code, req_type, detail = struct.unpack("<BBH", payload)
    return code, req_type, detail


def describe_error(payload: bytes) -> str:
    code, req_type, detail = decode_error(payload)
    name = ERROR_NAMES.get(code, f"code {code}")
    if code == ERR_FAULT:
        return f"the device took a fault (CFSR low bits 0x{detail:04x}) and halted"
    return f"{name} (request {MSG_NAMES.get(req_type, hex(req_type))}, detail {detail})"
