"""Open Inference Protocol (KServe v2 REST) messages: parsing infer requests, encoding responses.

JSON tensors and the binary tensor data extension: with `Inference-Header-Content-Length: H`, the
body is H bytes of JSON followed by the raw little-endian row-major bytes of every input whose
`parameters.binary_data_size` is set, in input order. Outputs are returned the same way when the
request asks for `parameters.binary_data` on an output (or `binary_data_output` for all of them).

Every problem with a request raises ProtocolError with the HTTP status and a message for the client.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
DATATYPE_OF = {v: k for k, v in DATATYPES.items()}


class ProtocolError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray


@dataclass
class InferRequest:
    id: str | None
    inputs: list[InferInput]
    outputs: list[str] | None  # requested output names, None = all
    binary_outputs: set[str]
    binary_all: bool


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a JSON object")
    return value


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    return _obj(obj.get("parameters", {}), f"{where}.parameters")


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise ProtocolError(f"{where}.shape must be a list of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise ProtocolError(f"{where}.shape {value} has a negative dimension")
    return value


def _flatten(data: Any, where: str) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


_NONE = object()


def _valid(v: Any, kind: str) -> bool:
    if kind == "b":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    return isinstance(v, int | float) if kind == "f" else isinstance(v, int)


def _json_tensor(data: Any, dtype: np.dtype, shape: list[int], where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError(f"{where}.data must be a list")
    flat = _flatten(data, where)
    n = math.prod(shape)
    if len(flat) != n:
        raise ProtocolError(f"{where}.data has {len(flat)} elements, shape {shape} needs {n}")
    bad = next((v for v in flat if not _valid(v, dtype.kind)), _NONE)
    if bad is not _NONE:
        raise ProtocolError(f"{where}.data holds {bad!r}, which is not a {DATATYPE_OF[dtype]} value")
    if dtype.kind in "iu" and flat:
        info = np.iinfo(dtype)
        lo, hi = min(flat), max(flat)
        if lo < info.min or hi > info.max:
            raise ProtocolError(f"{where}.data has values outside the {DATATYPE_OF[dtype]} range")
    arr = np.asarray(flat, dtype=dtype)
    if dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ProtocolError(f"{where}.data holds non-finite values or values outside the float range")
    return arr.reshape(shape)


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    binary = b""
    if header_length is not None:
        try:
            h = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < h <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} = {h} is outside the body of {len(body)} bytes")
        body, binary = body[:h], body[h:]
    try:
        req = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc}") from None
    req = _obj(req, "request")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("request.id must be a string")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("request.inputs must be a non-empty list")
    inputs, offset = [], 0
    for i, raw in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        raw = _obj(raw, where)
        name, datatype = raw.get("name"), raw.get("datatype")
        if not isinstance(name, str):
            raise ProtocolError(f"{where}.name must be a string")
        if datatype not in DATATYPES:
            raise ProtocolError(
                f"{where}.datatype {datatype!r} is not supported (use one of {', '.join(DATATYPES)})"
            )
        dtype = DATATYPES[datatype]
        shape = _shape(raw.get("shape"), where)
        size = _params(raw, where).get("binary_data_size")
        if size is not None:
            if header_length is None:
                raise ProtocolError(f"{where} has binary_data_size but the request has no {HEADER_LENGTH}")
            want = math.prod(shape) * dtype.itemsize
            if size != want:
                raise ProtocolError(
                    f"{where}.binary_data_size is {size}, shape {shape} {datatype} needs {want}"
                )
            if offset + size > len(binary):
                raise ProtocolError(f"binary data ends after {len(binary)} bytes, {where} needs more")
            arr = np.frombuffer(binary, dtype=dtype.newbyteorder("<"), count=math.prod(shape), offset=offset)
            offset += size
            if dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ProtocolError(f"{where} holds non-finite values")
            data = arr.astype(dtype).reshape(shape)
        else:
            if "data" not in raw:
                raise ProtocolError(f"{where} has neither data nor parameters.binary_data_size")
            data = _json_tensor(raw["data"], dtype, shape, where)
        inputs.append(InferInput(name, datatype, shape, data))
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    outputs, binary_outputs = None, set()
    raw_outputs = req.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("request.outputs must be a list")
        outputs = []
        for j, raw in enumerate(raw_outputs):
            raw = _obj(raw, f"outputs[{j}]")
            if not isinstance(raw.get("name"), str):
                raise ProtocolError(f"outputs[{j}].name must be a string")
            outputs.append(raw["name"])
            if _params(raw, f"outputs[{j}]").get("binary_data") is True:
                binary_outputs.add(raw["name"])
    binary_all = _params(req, "request").get("binary_data_output") is True
    return InferRequest(rid, inputs, outputs, binary_outputs, binary_all)


def encode_infer_response(
    model: str, version: str, rid: str | None, outputs: list[tuple[str, np.ndarray]], binary: set[str]
) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers). Binary outputs follow the JSON header in output order."""
    tensors, blobs = [], []
    for name, arr in outputs:
        t: dict[str, Any] = {"name": name, "datatype": DATATYPE_OF[arr.dtype], "shape": list(arr.shape)}
        if name in binary:
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = arr.ravel().tolist()
        tensors.append(t)
    msg: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if rid is not None:
        msg["id"] = rid
    header = json.dumps(msg, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
