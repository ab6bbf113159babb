"""Bytes on the wire per offload, counted at the socket: a TCP proxy on loopback between the edge
client and `toolchain serve` counts every byte each way (HTTP/1.1 request lines and headers, HTTP/2
connection preface, SETTINGS, HEADERS, DATA, WINDOW_UPDATE and PING frames; not TCP/IP headers).

For each transport the device can use (REST with JSON tensors, REST with binary tensors, the v2 gRPC
stream) it reports the first offload on a fresh connection (connection set-up included) and the mean
of the following ones (steady state).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np

from toolchain.edge.client import ClientConfig, V2Client
from toolchain.edge.grpc_client import GrpcV2Client


@dataclass
class CountingProxy:
    """Forwards 127.0.0.1:<port> to the upstream address and counts the bytes in each direction."""

    upstream_port: int
    up: int = 0  # client -> server
    down: int = 0  # server -> client
    connections: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> CountingProxy:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def snapshot(self) -> tuple[int, int]:
        return self.up, self.down

    async def _start(self) -> asyncio.Server:
        self._tasks: set[asyncio.Task] = set()
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if upward:
                        self.up += len(chunk)
                    else:
                        self.down += len(chunk)
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


def _offloads(client, x: np.ndarray, proxy: CountingProxy, n: int) -> dict:
    def one(i: int) -> None:
        out = client.infer("tail_int8", "split", x[i : i + 1], "INT8").outputs["logits"]
        assert out.shape == (1, 10)

    one(0)
    first = proxy.snapshot()
    for i in range(1, n + 1):
        one(i)
    last = proxy.snapshot()
    return {
        "first_request_bytes": first[0],
        "first_response_bytes": first[1],
        "steady_request_bytes": round((last[0] - first[0]) / n, 1),
        "steady_response_bytes": round((last[1] - first[1]) / n, 1),
        "connections": proxy.connections,
    }


def measure(http_port: int, grpc_port: int, n: int = 500) -> list[dict]:
    """One row per transport: bytes of the first offload and the mean of the next n, each way."""
    x = np.random.default_rng(0).integers(-128, 128, (n + 1, 40)).astype(np.int8)
    rows = []
    for name, binary in (("REST, JSON tensors", False), ("REST, binary tensors", True)):
        with CountingProxy(http_port) as proxy:
            client = V2Client(f"http://127.0.0.1:{proxy.port}", ClientConfig(binary=binary))
            try:
                rows.append({"transport": name} | _offloads(client, x, proxy, n))
            finally:
                client.close()
    with CountingProxy(grpc_port) as proxy:
        client = GrpcV2Client(f"127.0.0.1:{proxy.port}", ClientConfig())
        try:
            rows.append({"transport": "gRPC, one ModelStreamInfer stream"} | _offloads(client, x, proxy, n))
        finally:
            client.close()
    return rows
