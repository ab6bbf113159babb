"""A small KServe v2 REST client for the device (standard library only): binary tensors, keep-alive,
timeouts, retries with backoff, and a circuit breaker.

When the server cannot be reached (connection refused, timeout, 5xx) after the retries, the client
marks it down for `cooldown` seconds: offloads during that time fail at once, so the device answers
from its exit without waiting on a dead link; the first offload after the cooldown probes the
server again and, when it answers, normal offloading resumes.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.errors import ToolchainError

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {"INT8": np.int8, "UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16, "INT32": np.int32}


@dataclass(frozen=True)
class ClientConfig:
    timeout: float = 2.0  # seconds per attempt (connect and read)
    retries: int = 2  # extra attempts after a transient failure
    backoff: float = 0.05  # seconds before the first retry; doubles each time
    cooldown: float = 1.0  # seconds to answer locally after the server was found unreachable
    binary: bool = True  # binary tensor extension (else JSON tensors)


class ServerRejected(ToolchainError):
    """The server answered 4xx: the request itself is wrong (a model/build mismatch), not the link."""


class Unreachable(Exception):
    """No answer from the server (after retries, or while the circuit breaker is open)."""


@dataclass
class InferResult:
    outputs: dict[str, np.ndarray]
    request_bytes: int  # on the wire: request line, headers and body
    body_bytes: int  # the v2 body only (JSON header + binary tensor)
    attempts: int


class V2Client:
    transport = "rest"

    def __init__(self, url: str, config: ClientConfig | None = None) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ToolchainError(
                f"server URL {url!r} is not http(s)://HOST[:PORT]", hint="e.g. http://10.0.0.2:8000"
            )
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.config = config or ClientConfig()
        self.url = url
        self._conn: http.client.HTTPConnection | None = None
        self.down_until = 0.0
        self.failures = 0  # offloads that ended unreachable

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.config.timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
        """One attempt: (status, headers, body, request bytes). Raises OSError/HTTPException."""
        conn = self._connect()
        hdrs = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if method == "POST":
            hdrs["Content-Length"] = str(len(body))
        conn.putrequest(method, self.prefix + path, skip_host=True, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        head = f"{method} {self.prefix + path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()
        )
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, resp, data, len(head) + 2 + len(body)

    def _attempts(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
        """Retries transient failures with backoff; raises Unreachable when they are exhausted."""
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                status, resp, data, sent = self._request(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a broken keep-alive connection is reopened on the next attempt
                last = f"{type(exc).__name__}: {exc}"
                continue
            if status >= 500 or status == 429:
                last = f"HTTP {status}: {data[:200].decode(errors='replace')}"
                continue
            return status, resp, data, sent, attempt + 1
        raise Unreachable(last)

    # -- v2 API ----------------------------------------------------------------------------------
    def get_json(self, path: str) -> dict[str, Any]:
        status, _, data, _, _ = self._attempts("GET", path)
        if status != 200:
            raise ServerRejected(f"GET {path} -> HTTP {status}: {data[:300].decode(errors='replace')}")
        return json.loads(data)

    def model_metadata(self, model: str) -> dict[str, Any]:
        return self.get_json(f"/v2/models/{model}")

    def infer(self, model: str, input_name: str, x: np.ndarray, datatype: str) -> InferResult:
        """POST /v2/models/{model}/infer, honouring the circuit breaker."""
        now = time.monotonic()
        if now < self.down_until:
            raise Unreachable("server marked down (circuit breaker open)")
        body, headers = encode_request(input_name, x, datatype, self.config.binary)
        try:
            status, resp, data, sent, attempts = self._attempts(
                "POST", f"/v2/models/{model}/infer", body, headers
            )
        except Unreachable:
            self.failures += 1
            self.down_until = time.monotonic() + self.config.cooldown
            raise
        if status != 200:
            raise ServerRejected(
                f"server rejected the request (HTTP {status}): {data[:300].decode(errors='replace')}",
                hint="the server hosts a different model than this build; serve the same build directory",
            )
        self.down_until = 0.0
        return InferResult(decode_response(data, resp.getheader(HEADER_LENGTH)), sent, len(body), attempts)


def encode_request(name: str, x: np.ndarray, datatype: str, binary: bool) -> tuple[bytes, dict[str, str]]:
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(x.shape)}
    if not binary:
        tensor["data"] = x.ravel().tolist()
        return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode(), {
            "Content-Type": "application/json"
        }
    raw = np.ascontiguousarray(x, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    msg = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    header = json.dumps(msg, separators=(",", ":")).encode()
    return header + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def decode_response(data: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    binary = b""
    if header_length is not None:
        h = int(header_length)
        data, binary = data[:h], data[h:]
    msg = json.loads(data)
    out, offset = {}, 0
    for t in msg["outputs"]:
        dtype = np.dtype(DATATYPES[t["datatype"]]).newbyteorder("<")
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arr = np.frombuffer(binary, dtype=dtype, count=size // dtype.itemsize, offset=offset)
            offset += size
        else:
            arr = np.asarray(t["data"], dtype=dtype)
        out[t["name"]] = arr.astype(dtype.newbyteorder("=")).reshape(t["shape"])
    return out


def wait_until_ready(url: str, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll GET /v2/health/ready until it answers 200; a ToolchainError after `timeout` seconds."""
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
            try:
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    return
            finally:
                c.close()
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise ToolchainError(f"{url} did not become ready within {timeout:g} s")
        time.sleep(interval)
