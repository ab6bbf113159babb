"""`toolchain serve --workers N`: N processes share the REST socket (inherited, the kernel hands each
connection to one of them) and the gRPC port (SO_REUSEPORT); each loads its own models and runs its
own event loop and batch queues. It lifts the one-event-loop limit at the cost of smaller batches.

The parent binds both ports first (so port 0 works and a port in use is an error), prints the
banner once, forwards SIGTERM/SIGINT to the workers and waits for them; when one worker exits with
an error, the others are stopped.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
import socket
import sys
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.serve.app import ServerConfig
from toolchain.serve.models import load_models
from toolchain.serve.process import banner, bind, run_worker


def _reserve_grpc_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket that holds the gRPC port while the workers bind it:
    it resolves port 0 and refuses a port that another process holds."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ToolchainError(
            f"cannot listen for gRPC on {host}:{port}: {exc.strerror}",
            hint="choose another --grpc-port (0 picks a free one) or stop the process that holds it",
        ) from None
    return sock


def _worker(
    source: str,
    sock: socket.socket,
    host: str,
    grpc_port: int | None,
    config: ServerConfig,
    threads: int,
    data_dir: str | None,
    graceful_timeout: float,
    ready: multiprocessing.queues.Queue,
) -> None:
    try:
        models = load_models(source, threads=threads, data_dir=data_dir)
        ready.put(("loaded", [m.name for m in models]))
        run_worker(
            models,
            config,
            sock,
            host,
            grpc_port,
            graceful_timeout,
            announce=False,
            shared=True,
            on_ready=lambda: ready.put(("ready", None)),
        )
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def serve_workers(
    source: str | Path,
    host: str,
    port: int,
    config: ServerConfig,
    threads: int,
    data_dir: str | None,
    graceful_timeout: float,
    grpc_port: int | None,
    workers: int,
) -> None:
    sock = bind(host, port)
    reserved = _reserve_grpc_port(host, grpc_port) if grpc_port is not None else None
    if reserved is not None:
        grpc_port = reserved.getsockname()[1]
    # spawn, not fork: onnxruntime and gRPC keep threads and state that must not be forked.
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    args = (str(source), sock, host, grpc_port, config, threads, data_dir, graceful_timeout, ready)
    procs = [ctx.Process(target=_worker, args=args, name=f"serve-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def forward(signum: int, frame: object) -> None:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # The banner once every worker serves, so that a client never meets a port nobody answers on.
    names, started = [], 0
    while started < workers and all(p.is_alive() for p in procs):
        try:
            what, value = ready.get(timeout=0.5)
        except queue.Empty:
            continue
        names = value if what == "loaded" else names
        started += what == "ready"
    if started == workers:
        print(banner(names, host, sock.getsockname()[1], grpc_port, workers), flush=True)
    failed = 0
    for p in procs:
        p.join()
        if p.exitcode not in (0, -signal.SIGTERM) and not failed:
            failed = p.exitcode or 1
            forward(signal.SIGTERM, None)
    sock.close()
    if reserved is not None:
        reserved.close()
    if failed:
        raise ToolchainError(f"a serving worker exited with status {failed}; the others were stopped")
