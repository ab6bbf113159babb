"""`toolchain serve`: the tail behind the Open Inference Protocol (KServe v2, REST and gRPC) on
onnxruntime.

One process and event loop: Starlette + uvicorn for REST (app.py; JSON and binary tensors,
protocol.py), grpc.aio for gRPC (grpc_server.py), dynamic batching per model shared by both
(batcher.py); `--workers` runs several such processes (workers.py). See docs/serving.md.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.serve.app import ServerConfig, ServerState, create_app
from toolchain.serve.batcher import BatchConfig
from toolchain.serve.models import Model, load_models
from toolchain.serve.process import banner, bind, run_worker
from toolchain.serve.workers import serve_workers

__all__ = [
    "BatchConfig",
    "Model",
    "ServerConfig",
    "ServerState",
    "banner",
    "bind",
    "create_app",
    "load_models",
    "serve",
]


def serve(
    source: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    threads: int = 1,
    data_dir: str | None = None,
    graceful_timeout: float = 10.0,
    grpc_port: int | None = None,
    workers: int = 1,
) -> None:
    """Serve REST on host:port and, when grpc_port is not None, gRPC on host:grpc_port (0 = any);
    with workers > 1, that many processes share both ports (see workers.py)."""
    config = config or ServerConfig()
    if workers > 1:
        serve_workers(source, host, port, config, threads, data_dir, graceful_timeout, grpc_port, workers)
        return
    models = load_models(source, threads=threads, data_dir=data_dir)
    sock = bind(host, port)
    run_worker(models, config, sock, host, grpc_port, graceful_timeout)
