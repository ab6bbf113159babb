"""What crosses the network between block instances, as bytes we serialize ourselves.

Split activations (with the batch's labels, which the loss at the far end needs) and their gradients
travel as one message each, in the placement's wire dtype:

    header  <B kind><B dtype><I rows><I cols><f scale>   14 bytes
    payload rows x cols values: fp32 (4 B), fp16 (2 B) or int8 (1 B, symmetric, x ~= q * scale)
    labels  rows x uint8 (activation messages only)

Weights for averaging and relaying are always fp32 (a 14-byte header, then the arrays in a fixed
order). The sizes are known in advance (`message_bytes`, `arrays_bytes`), so the cost predictor and
the measurement (len() of what was sent) can be compared exactly.
"""

from __future__ import annotations

import struct

import numpy as np

from toolchain.errors import ToolchainError

HEADER = struct.Struct("<BBIIf")
KIND_ACTIVATION, KIND_GRADIENT, KIND_ARRAYS = 1, 2, 3
DTYPES = {"fp32": (0, np.float32), "fp16": (1, np.float16), "int8": (2, np.int8)}
_BY_CODE = {code: (name, dt) for name, (code, dt) in DTYPES.items()}


def itemsize(wire: str) -> int:
    return np.dtype(DTYPES[wire][1]).itemsize


def message_bytes(rows: int, cols: int, wire: str, labels: bool) -> int:
    """Exact size of an activation (labels=True) or gradient message."""
    return HEADER.size + rows * cols * itemsize(wire) + (rows if labels else 0)


def arrays_bytes(n_values: int) -> int:
    return HEADER.size + 4 * n_values


def encode(x: np.ndarray, wire: str, labels: np.ndarray | None = None) -> bytes:
    """An activation (with labels) or gradient message."""
    code, dt = DTYPES[wire]
    rows, cols = x.shape
    scale = 0.0
    if wire == "int8":
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        scale = peak / 127.0 if peak > 0 else 1.0
        payload = np.clip(np.rint(x / np.float32(scale)), -127, 127).astype(np.int8)
    else:
        payload = x.astype(dt, copy=False)
    kind = KIND_ACTIVATION if labels is not None else KIND_GRADIENT
    parts = [HEADER.pack(kind, code, rows, cols, scale), payload.tobytes()]
    if labels is not None:
        if len(labels) != rows or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise ToolchainError("labels must be one uint8 class per row")
        parts.append(labels.astype(np.uint8).tobytes())
    return b"".join(parts)


def decode(msg: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 values, labels or None)."""
    if len(msg) < HEADER.size:
        raise ToolchainError(f"wire message of {len(msg)} bytes is shorter than its header")
    kind, code, rows, cols, scale = HEADER.unpack_from(msg)
    if code not in _BY_CODE or kind not in (KIND_ACTIVATION, KIND_GRADIENT):
        raise ToolchainError(f"wire message has unknown kind {kind} or dtype code {code}")
    name, dt = _BY_CODE[code]
    want = message_bytes(rows, cols, name, kind == KIND_ACTIVATION)
    if len(msg) != want:
        raise ToolchainError(f"wire message is {len(msg)} bytes, its header says {want}")
    n = rows * cols
    values = np.frombuffer(msg, dtype=dt, count=n, offset=HEADER.size).reshape(rows, cols)
    out = values.astype(np.float32) * np.float32(scale) if name == "int8" else values.astype(np.float32)
    labels = None
    if kind == KIND_ACTIVATION:
        labels = np.frombuffer(msg, dtype=np.uint8, count=rows, offset=HEADER.size + n * dt().itemsize)
        labels = labels.astype(np.int64)
    return out, labels


def encode_arrays(arrays: list[np.ndarray]) -> bytes:
    flat = (
        np.concatenate([a.astype(np.float32, copy=False).ravel() for a in arrays]) if arrays else np.zeros(0)
    )
    return HEADER.pack(KIND_ARRAYS, 0, len(arrays), flat.size, 0.0) + flat.astype(np.float32).tobytes()


def decode_arrays(msg: bytes, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    kind, _, count, n, _ = HEADER.unpack_from(msg)
    want = sum(int(np.prod(s)) for s in shapes)
    if kind != KIND_ARRAYS or count != len(shapes) or n != want or len(msg) != arrays_bytes(n):
        raise ToolchainError(f"weights message does not match its block ({count} arrays, {n} values)")
    flat = np.frombuffer(msg, dtype=np.float32, offset=HEADER.size)
    out, pos = [], 0
    for s in shapes:
        size = int(np.prod(s))
        out.append(flat[pos : pos + size].reshape(s).copy())
        pos += size
    return out
