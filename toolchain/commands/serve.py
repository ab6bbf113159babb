"""`toolchain serve`: serve the tail (and the full network) over KServe v2 REST and gRPC."""

from __future__ import annotations

import argparse

from toolchain.commands.common import add_data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bundle",
        required=True,
        metavar="DIR",
        help="a build directory (toolchain build --target rpi|coral|server) or a trained bundle",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="REST port (default 8000; 0 = any free port)")
    p.add_argument(
        "--grpc-port",
        type=int,
        help="v2 gRPC port (default 8001 as Triton's, any free port when --port is 0; -1 = no gRPC)",
    )
    p.add_argument("--max-batch-size", type=int, default=64, help="rows per onnxruntime run (default 64)")
    p.add_argument(
        "--max-queue-delay-ms", type=float, default=0.5, help="how long a batch waits to fill (default 0.5)"
    )
    p.add_argument("--no-batching", action="store_true", help="run every request on its own")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests per model before 503")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request size limit (default 1 MiB)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per model")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the REST and gRPC ports (default 1; each batches on its own)",
    )
    add_data_dir(p)


def run(args: argparse.Namespace) -> int:
    from toolchain.errors import ToolchainError
    from toolchain.serve import BatchConfig, ServerConfig, serve

    try:
        batch = BatchConfig(
            enabled=not args.no_batching,
            max_batch_size=args.max_batch_size,
            max_queue_delay_ms=args.max_queue_delay_ms,
            max_queue=args.max_queue,
        )
    except ValueError as exc:
        raise ToolchainError(str(exc)) from None
    if args.workers < 1:
        raise ToolchainError(f"--workers {args.workers} is not a process count", hint="use 1 or more")
    if args.max_body_bytes < 1024:
        raise ToolchainError("--max-body-bytes must be at least 1024")
    config = ServerConfig(batch=batch, max_body_bytes=args.max_body_bytes)
    grpc_port = {None: 0 if args.port == 0 else 8001, -1: None}.get(args.grpc_port, args.grpc_port)
    if grpc_port is not None and not 0 <= grpc_port <= 65535:
        raise ToolchainError(
            f"--grpc-port {args.grpc_port} is not a port", hint="use 0-65535, or -1 for no gRPC"
        )
    serve(
        args.bundle,
        args.host,
        args.port,
        config,
        threads=args.threads,
        data_dir=args.data_dir,
        grpc_port=grpc_port,
        workers=args.workers,
    )
    return 0
