"""The Open Inference Protocol (KServe v2) over gRPC: `inference.GRPCInferenceService` on grpc.aio.

It shares the models, batch queues and request checks with the REST app (same event loop, so REST
and gRPC requests are batched together). Errors map to gRPC status codes the way HTTP statuses do
in REST: a malformed request is INVALID_ARGUMENT, an unknown model NOT_FOUND, a full queue
UNAVAILABLE (HTTP 503; clients retry it), and a message over the size limit RESOURCE_EXHAUSTED
(enforced by gRPC itself through grpc.max_receive_message_length). Outputs always travel as
raw_output_contents, as Triton sends them.

ModelStreamInfer (Triton's extension) runs every request of a stream concurrently, so one stream's
requests batch together too; a failed request gets a response with `error_message` (and the status
code in the response parameter `status_code`) and the stream stays open.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from toolchain import __version__
from toolchain.edge.v2grpc import grpc_predict_v2_pb2 as pb
from toolchain.edge.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from toolchain.errors import ToolchainError
from toolchain.serve.batcher import QueueFull
from toolchain.serve.models import Model
from toolchain.serve.protocol import DATATYPE_OF, DATATYPES, InferInput, InferRequest, ProtocolError
from toolchain.serve.triton_config import model_config

# The typed-contents field of InferTensorContents for each datatype (FP16 has none: raw bytes only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class Failure(Exception):
    code: grpc.StatusCode
    message: str


def _typed(t: Any, dtype: np.dtype, n: int, where: str) -> np.ndarray:
    field = _CONTENTS.get(t.datatype)
    if field is None:
        raise ProtocolError(f"{where}: {t.datatype} tensors must be sent in raw_input_contents")
    values = getattr(t.contents, field)
    if len(values) != n:
        raise ProtocolError(
            f"{where}.contents.{field} has {len(values)} values, shape {list(t.shape)} needs {n}"
        )
    if dtype.kind in "iu" and n:
        info = np.iinfo(dtype)
        if min(values) < info.min or max(values) > info.max:
            raise ProtocolError(f"{where}.contents.{field} has values outside the {t.datatype} range")
    return np.asarray(values, dtype=dtype)


def parse_request(req: pb.ModelInferRequest) -> InferRequest:
    """The protobuf request as the REST parser's InferRequest; ProtocolError when it is malformed."""
    if not req.inputs:
        raise ProtocolError("request.inputs must be a non-empty list")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise ProtocolError(
            f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs "
            "(one per input, in order)"
        )
    inputs = []
    for i, t in enumerate(req.inputs):
        where = f"inputs[{i}]"
        dtype = DATATYPES.get(t.datatype)
        if dtype is None:
            raise ProtocolError(
                f"{where}.datatype {t.datatype!r} is not supported (use one of {', '.join(DATATYPES)})"
            )
        shape = list(t.shape)
        if any(d < 0 for d in shape):
            raise ProtocolError(f"{where}.shape {shape} has a negative dimension")
        n = math.prod(shape)
        if raw:
            if t.HasField("contents"):
                raise ProtocolError(f"{where} has contents although the request uses raw_input_contents")
            want = n * dtype.itemsize
            if len(raw[i]) != want:
                raise ProtocolError(
                    f"raw_input_contents[{i}] has {len(raw[i])} bytes, "
                    f"shape {shape} {t.datatype} needs {want}"
                )
            arr = np.frombuffer(raw[i], dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        else:
            arr = _typed(t, dtype, n, where)
        if dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ProtocolError(f"{where} holds non-finite values")
        inputs.append(InferInput(t.name, t.datatype, shape, arr.reshape(shape)))
    outputs = [o.name for o in req.outputs] or None
    return InferRequest(req.id or None, inputs, outputs, set(), True)


def encode_response(model: Model, rid: str, selected: list[tuple[str, np.ndarray]]) -> pb.ModelInferResponse:
    resp = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=rid)
    for name, arr in selected:
        out = resp.outputs.add()
        out.name, out.datatype = name, DATATYPE_OF[arr.dtype]
        out.shape.extend(arr.shape)
        resp.raw_output_contents.append(
            np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        )
    return resp


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: list[Model], server: Any) -> None:
        self.by_name = {m.name: m for m in models}
        self.server = server  # the REST app's ServerState: config, readiness, extensions

    def _model(self, name: str, version: str) -> Model:
        model = self.by_name.get(name)
        if model is None:
            raise Failure(
                grpc.StatusCode.NOT_FOUND,
                f"unknown model {name!r} (models: {', '.join(sorted(self.by_name))})",
            )
        if version and version != model.version:
            raise Failure(
                grpc.StatusCode.NOT_FOUND,
                f"model {name} has no version {version!r} (versions: {model.version})",
            )
        return model

    def prepare(self, request: pb.ModelInferRequest) -> tuple[Model, InferRequest, asyncio.Future]:
        """Check the request and queue it for its model's next batch; Failure when it cannot be."""
        model = self._model(request.model_name, request.model_version)
        batcher = model.batcher
        if batcher is None or not self.server.ready:
            raise Failure(grpc.StatusCode.UNAVAILABLE, f"model {model.name} is not ready")
        try:
            req = parse_request(request)
            x = model.validate(req, self.server.config.batch.max_batch_size)
        except ProtocolError as exc:
            raise Failure(_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message) from None
        try:
            return model, req, batcher.enqueue(x)
        except QueueFull as exc:
            raise Failure(grpc.StatusCode.UNAVAILABLE, f"model {model.name} is overloaded: {exc}") from None

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        model, req, future = self.prepare(request)
        return encode_response(model, request.id, model.select(req, await future))

    # -- the RPCs ------------------------------------------------------------------------------------
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.server.ready)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(
            name=self.server.config.name, version=__version__, extensions=self.server.extensions
        )

    async def ModelReady(self, request, context):
        try:
            model = self._model(request.name, request.version)
        except Failure as f:
            await context.abort(f.code, f.message)
        return pb.ModelReadyResponse(ready=self.server.ready and model.batcher is not None)

    async def ModelMetadata(self, request, context):
        try:
            model = self._model(request.name, request.version)
        except Failure as f:
            await context.abort(f.code, f.message)
        meta = model.metadata()
        meta.pop("parameters", None)  # the v2 gRPC message has no parameters; ModelConfig carries them
        return json_format.ParseDict(meta, pb.ModelMetadataResponse())

    async def ModelConfig(self, request, context):
        try:
            model = self._model(request.name, request.version)
        except Failure as f:
            await context.abort(f.code, f.message)
        config = model_config(model, self.server.config.batch)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

    async def ModelInfer(self, request, context):
        try:
            return await self.infer(request)
        except Failure as f:
            await context.abort(f.code, f.message)

    async def ModelStreamInfer(self, request_iterator, context) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # No task per request: each one is checked and queued as it arrives, and its response is
        # made by a callback when its batch is done (tasks cost more than the whole tail run).
        done: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        state = {"pending": 0, "reading": True}

        def finish(msg: pb.ModelStreamInferResponse) -> None:
            done.put_nowait(msg)
            if not state["reading"] and state["pending"] == 0:
                done.put_nowait(None)

        def answered(
            request: pb.ModelInferRequest, model: Model, req: InferRequest, fut: asyncio.Future
        ) -> None:
            state["pending"] -= 1
            error = "cancelled" if fut.cancelled() else fut.exception()
            if error is not None:
                finish(
                    _stream_error(request, Failure(grpc.StatusCode.INTERNAL, f"inference failed: {error!r}"))
                )
            else:
                resp = encode_response(model, request.id, model.select(req, fut.result()))
                finish(pb.ModelStreamInferResponse(infer_response=resp))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    try:
                        model, req, fut = self.prepare(request)
                    except Failure as f:
                        done.put_nowait(_stream_error(request, f))
                        continue
                    state["pending"] += 1
                    fut.add_done_callback(lambda f, r=request, m=model, q=req: answered(r, m, q, f))
            finally:
                state["reading"] = False
                if state["pending"] == 0:
                    done.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (msg := await done.get()) is not None:
                yield msg
        finally:
            reader.cancel()


def _stream_error(request: pb.ModelInferRequest, f: Failure) -> pb.ModelStreamInferResponse:
    resp = pb.ModelInferResponse(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    resp.parameters["status_code"].int64_param = f.code.value[0]
    return pb.ModelStreamInferResponse(error_message=f.message, infer_response=resp)


def create_grpc_server(
    models: list[Model], state: Any, host: str, port: int, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server bound to host:port (0 = a free port), not started; (server, port)."""
    limit = state.config.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 1 << 20)),
            # Off by default so that a port in use is an error, not a silently shared socket; the
            # worker processes of --workers share one port on purpose.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(models, state), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ToolchainError(
            f"cannot listen for gRPC on {address}: {exc}",
            hint="choose another --grpc-port (0 picks a free one) or stop the process that holds it",
        ) from None
    return server, bound
