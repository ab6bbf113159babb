"""One serving process: REST (Starlette + uvicorn) on a bound socket and v2 gRPC (grpc.aio) on one event
loop, sharing the batch queues. `toolchain.serve.serve` runs one; `workers.py` runs several."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable

from toolchain.errors import ToolchainError
from toolchain.serve.app import ServerConfig, ServerState, create_app
from toolchain.serve.models import Model


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free port (the URL is printed once the server is up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, a response written as headers + body meets
    # the client's delayed ACK and every keep-alive request costs ~40 ms (measured: 22 vs 2,000 req/s).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ToolchainError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port (0 picks a free one) or stop the process that holds it",
        ) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _grpc_hooks(
    models: list[Model], state: ServerState, host: str, grpc_port: int, grace: float, shared: bool
) -> None:
    """Bind the gRPC server now (so its port can be printed) and start/stop it with the REST app."""
    from toolchain.serve.grpc_server import create_grpc_server

    server, state.grpc_port = create_grpc_server(models, state, host, grpc_port, reuse_port=shared)

    async def start() -> None:
        await server.start()

    async def stop() -> None:
        # Like uvicorn for HTTP: refuse new RPCs, let the ones in flight finish (their batches still run).
        await server.stop(grace)

    state.on_start.append(start)
    state.on_stop.append(stop)


async def _serve(
    models: list[Model],
    state: ServerState,
    sock: socket.socket,
    host: str,
    grpc_port: int | None,
    graceful_timeout: float,
    announce: bool = True,
    shared: bool = False,
) -> None:
    import uvicorn

    # grpc.aio binds to the running event loop, so the gRPC server is made inside it.
    if grpc_port is not None:
        _grpc_hooks(models, state, host, grpc_port, graceful_timeout, shared)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(models, state=state),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_timeout,
            timeout_keep_alive=30,
            lifespan="on",
        )
    )
    if announce:
        names = [m.name for m in models]
        print(banner(names, host, sock.getsockname()[1], state.grpc_port), file=sys.stdout, flush=True)
    # uvicorn installs SIGINT/SIGTERM handlers: it stops accepting, finishes open requests, then runs
    # the lifespan shutdown, which stops the gRPC server and drains the batch queues.
    await server.serve(sockets=[sock])


def banner(names: list[str], host: str, port: int, grpc_port: int | None, workers: int = 1) -> str:
    shown = f"[{host}]" if ":" in host else host
    line = f"serving {', '.join(names)} on http://{shown}:{port} (KServe v2 REST)"
    if grpc_port is not None:
        line += f" and grpc://{shown}:{grpc_port} (v2 gRPC)"
    return line + (f", {workers} worker processes" if workers > 1 else "")


def run_worker(
    models: list[Model],
    config: ServerConfig,
    sock: socket.socket,
    host: str,
    grpc_port: int | None,
    graceful_timeout: float,
    announce: bool = True,
    shared: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """One serving process: REST on `sock` and gRPC on grpc_port, on one (uv)loop."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        state = ServerState(config)
        if on_ready is not None:

            async def ready() -> None:
                on_ready()

            state.on_start.append(ready)
        runner.run(_serve(models, state, sock, host, grpc_port, graceful_timeout, announce, shared))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the host extra pins it): grpc.aio and uvicorn both run on it. A trial
    here with perf_analyzer (gRPC streaming, concurrency 32) was within the noise of a shared machine
    (6,054 / 6,784 infer/s on asyncio, 6,782 / 6,316 on uvloop); it is kept for uvicorn's REST path."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
