"""The device's v2 gRPC client: one persistent ModelStreamInfer stream per server, so a steady-state
offload costs one HTTP/2 DATA frame (the protobuf request, ~70 bytes for 40 int8 values) instead of
an HTTP/1.1 request line, headers and a JSON header (373 bytes).

Same interface and failure semantics as the REST client (client.V2Client): per-attempt timeout,
retries with backoff on transient failures (connection errors, timeouts, UNAVAILABLE, which is the
server's full queue), the circuit breaker, and ServerRejected for a request the server refuses.
grpcio is imported here only; `open_client` falls back to REST when it is not installed.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.parse
from typing import Any

import numpy as np

from toolchain.edge.client import DATATYPES, ClientConfig, InferResult, ServerRejected, Unreachable, V2Client
from toolchain.errors import ToolchainError

TRANSPORTS = ("auto", "rest", "grpc")
# Per offload on an open stream, besides the protobuf message: the 5-byte gRPC length prefix and the
# 9-byte HTTP/2 DATA frame header (RFC 9113 §4.1). benchmarks/serve_load.py measures it at the socket.
FRAMING_BYTES = 5 + 9
_UNAVAILABLE = 14  # grpc.StatusCode.UNAVAILABLE: the server's queue is full or it is stopping


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""


def grpc_available() -> bool:
    try:
        import grpc  # noqa: F401

        from toolchain.edge.v2grpc import grpc_predict_v2_pb2  # noqa: F401
    except ImportError:
        return False
    return True


class GrpcV2Client:
    """A v2 gRPC client on a persistent channel and stream; `target` is HOST:PORT."""

    transport = "grpc"

    def __init__(self, target: str, config: ClientConfig | None = None) -> None:
        import grpc

        from toolchain.edge.v2grpc import grpc_predict_v2_pb2 as pb
        from toolchain.edge.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

        self._grpc, self._pb, self._pb_grpc = grpc, pb, pb_grpc
        self.target, self.url = target, f"grpc://{target}"
        self.config = config or ClientConfig()
        self._connect()
        self._call: Any = None
        self._requests: queue.SimpleQueue | None = None
        self._responses: queue.SimpleQueue | None = None
        self.down_until = 0.0
        self.failures = 0

    # -- the stream ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        # A channel of its own (not gRPC's process-wide subchannel pool): after a failure the
        # client makes a new one, which connects at once instead of waiting out gRPC's reconnect
        # back-off (1 s, growing to 2 min), like the REST client reopening its connection.
        self._channel = self._grpc.insecure_channel(
            self.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self._stub = self._pb_grpc.GRPCInferenceServiceStub(self._channel)

    def _open(self) -> None:
        requests: queue.SimpleQueue = queue.SimpleQueue()
        responses: queue.SimpleQueue = queue.SimpleQueue()

        def outgoing():
            while (item := requests.get()) is not None:
                yield item

        call = self._stub.ModelStreamInfer(outgoing())

        def incoming() -> None:
            # A reader thread, so that the caller can wait for a response with a timeout.
            try:
                for resp in call:
                    responses.put(resp)
            except self._grpc.RpcError as exc:
                responses.put(exc)
            responses.put(None)

        threading.Thread(target=incoming, name="v2-grpc-stream", daemon=True).start()
        self._call, self._requests, self._responses = call, requests, responses

    def _reset(self, reconnect: bool = False) -> None:
        """End the stream (the next offload opens a new one), and after a failure the channel too."""
        if self._call is not None:
            assert self._requests is not None
            self._requests.put(None)
            self._call.cancel()
        self._call = self._requests = self._responses = None
        if reconnect:
            self._channel.close()
            self._connect()

    def close(self) -> None:
        self._reset()
        self._channel.close()

    def _exchange(self, request: Any) -> Any:
        if self._call is None:
            self._open()
        assert self._requests is not None and self._responses is not None
        self._requests.put(request)
        try:
            item = self._responses.get(timeout=self.config.timeout)
        except queue.Empty:
            self._reset(reconnect=True)  # a late answer must not be taken for the next request's
            raise _Transient(f"no answer within {self.config.timeout:g} s") from None
        if item is None or isinstance(item, Exception):
            self._reset(reconnect=True)
            detail = item.details() if isinstance(item, self._grpc.RpcError) else "stream closed"
            raise _Transient(f"gRPC stream failed: {detail}")
        return item

    def _attempts(self, request: Any) -> tuple[Any, int]:
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                msg = self._exchange(request)
            except _Transient as exc:
                last = str(exc)
                continue
            if msg.error_message:
                status = msg.infer_response.parameters["status_code"].int64_param
                if status == _UNAVAILABLE:
                    last = msg.error_message
                    continue
                raise ServerRejected(
                    f"server rejected the request: {msg.error_message}",
                    hint="the server hosts a different model than this build; serve the same build directory",
                )
            return msg.infer_response, attempt + 1
        raise Unreachable(last)

    # -- v2 API --------------------------------------------------------------------------------------
    def _unary(self, method: str, request: Any) -> Any:
        grpc = self._grpc
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                return getattr(self._stub, method)(request, timeout=self.config.timeout)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    last = f"{exc.code().name}: {exc.details()}"
                    self._reset(reconnect=True)
                    continue
                raise ServerRejected(f"{method} -> {exc.code().name}: {exc.details()}") from None
        raise Unreachable(last)

    def model_metadata(self, model: str) -> dict[str, Any]:
        """ModelMetadata as the REST JSON, with the parameters of ModelConfig (bundle_sha256)."""
        pb = self._pb
        meta = self._unary("ModelMetadata", pb.ModelMetadataRequest(name=model))
        config = self._unary("ModelConfig", pb.ModelConfigRequest(name=model)).config

        def tensors(items) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

        return {
            "name": meta.name,
            "platform": meta.platform,
            "inputs": tensors(meta.inputs),
            "outputs": tensors(meta.outputs),
            "parameters": {k: v.string_value for k, v in config.parameters.items()},
        }

    def infer(self, model: str, input_name: str, x: np.ndarray, datatype: str) -> InferResult:
        if time.monotonic() < self.down_until:
            raise Unreachable("server marked down (circuit breaker open)")
        request = encode_request(self._pb, model, input_name, x, datatype)
        try:
            resp, attempts = self._attempts(request)
        except Unreachable:
            self.failures += 1
            self.down_until = time.monotonic() + self.config.cooldown
            raise
        self.down_until = 0.0
        size = request.ByteSize()
        return InferResult(decode_response(resp), size + FRAMING_BYTES, size, attempts)


def encode_request(pb: Any, model: str, input_name: str, x: np.ndarray, datatype: str) -> Any:
    raw = np.ascontiguousarray(x, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<")).tobytes()
    req = pb.ModelInferRequest(model_name=model, raw_input_contents=[raw])
    tensor = req.inputs.add()
    tensor.name, tensor.datatype = input_name, datatype
    tensor.shape.extend(x.shape)
    return req


def decode_response(resp: Any) -> dict[str, np.ndarray]:
    out = {}
    for t, raw in zip(resp.outputs, resp.raw_output_contents, strict=True):
        dtype = np.dtype(DATATYPES[t.datatype]).newbyteorder("<")
        out[t.name] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(list(t.shape))
    return out


def open_client(url: str, config: ClientConfig, transport: str = "auto") -> V2Client | GrpcV2Client:
    """The client for `url`: grpc://HOST:PORT is gRPC; an http(s) URL is REST, or gRPC when the
    server advertises a gRPC port in GET /v2 (`transport` auto) and grpcio is installed."""
    if transport not in TRANSPORTS:
        raise ToolchainError(
            f"transport {transport!r} is not valid", hint=f"use one of {', '.join(TRANSPORTS)}"
        )
    u = urllib.parse.urlsplit(url)
    if u.scheme == "grpc":
        if transport == "rest":
            raise ToolchainError(
                f"{url} is a gRPC address", hint="use http://HOST:PORT with --transport rest"
            )
        if not u.hostname or not u.port:
            raise ToolchainError(
                f"server URL {url!r} is not grpc://HOST:PORT", hint="e.g. grpc://10.0.0.2:8001"
            )
        _need_grpc(url)
        return GrpcV2Client(f"{u.hostname}:{u.port}", config)
    rest = V2Client(url, config)
    if transport == "rest" or (transport == "auto" and not grpc_available()):
        return rest
    _need_grpc(url)
    try:
        port = rest.get_json("/v2").get("grpc_port")
    except (Unreachable, ServerRejected, ValueError):
        port = None
    if port is None:
        if transport == "grpc":
            raise ToolchainError(
                f"{url} does not advertise a v2 gRPC port in GET /v2",
                hint="pass the gRPC address as grpc://HOST:PORT, or use --transport rest",
            )
        return rest  # unreachable or REST-only: REST, the only transport every v2 server offers
    rest.close()
    return GrpcV2Client(f"{rest.host}:{int(port)}", config)


def _need_grpc(url: str) -> None:
    if not grpc_available():
        raise ToolchainError(
            f"{url} needs gRPC, but grpcio is not installed on this device",
            hint="pip install 'toolchain[device]' (it pins grpcio), or use an http:// URL",
        )
