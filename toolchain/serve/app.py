"""The KServe v2 REST application (Starlette): health, metadata, readiness, infer, statistics.

Limits: bodies over `max_body_bytes` get 413 (checked on Content-Length before reading, and while
streaming for chunked bodies); malformed requests get 400 with {"error": message}; a full model queue
gets 503 with Retry-After. Unknown models and routes get 404, wrong methods 405, all as JSON errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from toolchain import __version__
from toolchain.serve.batcher import BatchConfig, QueueFull
from toolchain.serve.models import Model
from toolchain.serve.protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request
from toolchain.serve.triton_config import model_config


@dataclass(frozen=True)
class ServerConfig:
    batch: BatchConfig = field(default_factory=BatchConfig)
    max_body_bytes: int = 1 << 20
    name: str = "toolchain-tail"


# Advertised in GET /v2 and gRPC ServerMetadata. Not "statistics": perf_analyzer reads an advertised
# statistics extension in Triton's format and aborts on anything else (our /stats is our own format).
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
Hook = Callable[[], Awaitable[None]]


@dataclass
class ServerState:
    """What the REST app and the gRPC service share: configuration, readiness, start/stop hooks."""

    config: ServerConfig
    ready: bool = False
    grpc_port: int | None = None  # advertised in GET /v2 so that clients can switch to gRPC
    extensions: list[str] = field(default_factory=lambda: list(EXTENSIONS))
    on_start: list[Hook] = field(default_factory=list)  # after the batchers start (the gRPC server)
    on_stop: list[Hook] = field(default_factory=list)  # before the batch queues drain


class BodyTooLarge(ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the server limit of {limit} bytes", status=413)


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# Oversize bodies up to this multiple of the limit are read and dropped before the 413, so the
# client receives the answer on a connection that stays usable; bigger ones are refused unread
# (uvicorn then closes the connection).
DRAIN_FACTOR = 16


async def _drain(request: Request) -> None:
    async for _ in request.stream():
        pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ProtocolError("Content-Length is not an integer") from None
        if n > limit:
            if n <= limit * DRAIN_FACTOR:
                await _drain(request)
            raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit * DRAIN_FACTOR:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge(limit)
    return b"".join(chunks)


def create_app(
    models: list[Model], config: ServerConfig | None = None, state: ServerState | None = None
) -> Starlette:
    state = state or ServerState(config or ServerConfig())
    config = state.config
    by_name = {m.name: m for m in models}

    def model_or_404(request: Request) -> Model:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        model = by_name.get(name)
        if model is None:
            raise HTTPException(404, f"unknown model {name!r} (models: {', '.join(sorted(by_name))})")
        if version is not None and version != model.version:
            raise HTTPException(404, f"model {name} has no version {version!r} (versions: {model.version})")
        return model

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": state.ready}, status_code=200 if state.ready else 503)

    async def server_metadata(request: Request) -> Response:
        meta = {"name": config.name, "version": __version__, "extensions": state.extensions}
        if state.grpc_port is not None:
            meta["grpc_port"] = state.grpc_port
        return JSONResponse(meta)

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(model_or_404(request).metadata())

    async def model_configuration(request: Request) -> Response:
        return JSONResponse(model_config(model_or_404(request), config.batch))

    async def model_ready(request: Request) -> Response:
        model = model_or_404(request)
        ok = state.ready and model.batcher is not None
        return JSONResponse({"name": model.name, "ready": ok}, status_code=200 if ok else 503)

    async def model_stats(request: Request) -> Response:
        model = model_or_404(request)
        stats = model.batcher.stats.as_dict() if model.batcher else {}
        return JSONResponse({"model_stats": [{"name": model.name, "version": model.version, **stats}]})

    async def infer(request: Request) -> Response:
        model = model_or_404(request)
        batcher = model.batcher
        assert batcher is not None
        batcher.arrive()
        try:
            body = await _read_body(request, config.max_body_bytes)
            req = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
            x = model.validate(req, config.batch.max_batch_size)
        except ProtocolError as exc:
            return _error(exc.message, exc.status)
        finally:
            batcher.depart()
        try:
            outs = await batcher.submit(x)
        except QueueFull as exc:
            return _error(f"model {model.name} is overloaded: {exc}", 503, {"Retry-After": "1"})
        selected = model.select(req, outs)
        binary = {n for n, _ in selected} if req.binary_all else req.binary_outputs
        content, headers = encode_infer_response(model.name, model.version, req.id, selected, binary)
        return Response(content, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(str(exc.detail), exc.status_code, dict(exc.headers or {}))

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        for m in models:
            await m.start(config.batch)
        for hook in state.on_start:
            await hook()
        state.ready = True
        try:
            yield
        finally:
            # Graceful shutdown: uvicorn has stopped accepting and finished open requests; queued
            # work is completed before the workers stop.
            state.ready = False
            for hook in state.on_stop:
                await hook()
            for m in models:
                if m.batcher is not None:
                    await m.batcher.close()

    m = "/v2/models/{model}"
    mv = "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route(m, model_metadata),
        Route(mv, model_metadata),
        Route(f"{m}/ready", model_ready),
        Route(f"{mv}/ready", model_ready),
        Route(f"{m}/stats", model_stats),
        Route(f"{m}/config", model_configuration),
        Route(f"{mv}/config", model_configuration),
        Route(f"{m}/infer", infer, methods=["POST"]),
        Route(f"{mv}/infer", infer, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
