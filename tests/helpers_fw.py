"""Shared pieces of the firmware/device/verify tests: one build per (target, dtype) per test session,
process checks, and a fault-injecting TCP proxy between verify and a device."""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import select
import shutil
import socket
import tempfile
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolchain.mcu.protocol import FrameDecoder, encode_frame

_BUILDS: dict[tuple[str, str | None, str], Path] = {}
_ROOT: list[Path] = []


def _root() -> Path:
    """The session's scratch directory, made on first use (importing this module creates nothing)."""
    if not _ROOT:
        _ROOT.append(Path(tempfile.mkdtemp(prefix="tc-fw-tests-")))
        atexit.register(shutil.rmtree, _ROOT[0], True)  # shared by the whole session, then removed
    return _ROOT[0]


def build_for(target: str, bundle: Path, data_root: Path, dtype: str | None = None) -> Path:
    """`toolchain build` for `target` from `bundle`, once per session (cached by arguments)."""
    from toolchain.pipeline import BuildOptions, build
    from toolchain.targets import load_target

    key = (target, dtype, str(bundle))
    if key not in _BUILDS:
        out = _root() / f"{target}-{dtype or 'default'}-{len(_BUILDS)}"
        opts = BuildOptions(dtype=dtype, data_dir=str(data_root), quiet=True)
        _BUILDS[key] = build(load_target(target), out=out, bundle=bundle, options=opts)
    return _BUILDS[key]


@pytest.fixture(scope="session", name="fw")
def fw_fixture(trained_bundle, data_root):
    """fw(target, dtype=None) -> build directory of the default trained bundle."""

    def get(target: str, dtype: str | None = None) -> Path:
        return build_for(target, trained_bundle, data_root, dtype)

    return get


def mcu(name: str):
    from toolchain.mcu.target import mcu_target
    from toolchain.targets import load_target

    return mcu_target(load_target(name))


def processes_using(path: Path) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line mentions `path`."""
    out = []
    needle = str(path).encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            out.append(int(d.name))
    return out


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass(frozen=True)
class Lie:
    """Which field of an INFER reply a lying device gets wrong: [exit flag u8, exit class u8, counter
    kind u8, pad, count u32] then the split and exit logits (docs/protocol.md)."""

    field: str  # split | exit_logits | exit_decision | exit_class
    elem: int  # bytes per value (1 int8, 4 float32)
    split_size: int
    n_classes: int = 10

    def apply(self, payload: bytearray) -> None:
        first = {"split": 8, "exit_logits": 8 + self.split_size * self.elem}.get(self.field)
        if first is not None:
            # The value's most significant byte: a float32 gains or loses orders of magnitude (an
            # exponent bit), an int8 changes by 64: far outside any tolerance.
            payload[first + self.elem - 1] ^= 0x40
        elif self.field == "exit_decision":
            payload[0] ^= 0x01
        elif self.field == "exit_class":
            payload[1] = (payload[1] + 1) % self.n_classes
        else:
            raise ValueError(self.field)


class FaultProxy:
    """TCP proxy host <-> device that corrupts the byte stream on purpose.

    Per byte and direction: flip one bit with p_flip, drop with p_drop, send twice with p_dup.
    `lie`: rewrite INFER replies and recompute both checks, i.e. a device that computes wrong results
    but speaks the protocol perfectly: True flips the lowest bit of the first split byte; a `Lie`
    corrupts one field of every reply (needs the element size and split width of the model).
    `on_upstream(n)` is called with the number of host->device bytes forwarded so far (e.g. to reset
    the device mid-run)."""

    def __init__(
        self,
        device_addr: tuple[str, int],
        p_flip: float = 0.0,
        p_drop: float = 0.0,
        p_dup: float = 0.0,
        seed: int = 1,
        lie: bool | Lie = False,
        on_upstream: Callable[[int], None] | None = None,
    ) -> None:
        self.device_addr = device_addr
        self.p = (p_flip, p_drop, p_dup)
        self.seed = seed
        self.lie = lie
        self.on_upstream = on_upstream
        self.faults = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            dev = socket.create_connection(self.device_addr, timeout=5)
            for s in (client, dev):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.2)
            self._socks += [client, dev]
            for src, dst, seed, up in ((client, dev, self.seed, True), (dev, client, self.seed + 1, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, random.Random(seed), up), daemon=True)
                t.start()
                self._threads.append(t)

    def _corrupt(self, data: bytes, rng: random.Random) -> bytes:
        p_flip, p_drop, p_dup = self.p
        if not any(self.p):
            return data
        out = bytearray()
        for b in data:
            r = rng.random()
            if r < p_drop:
                self.faults += 1
                continue
            if r < p_drop + p_flip:
                b ^= 1 << rng.randrange(8)
                self.faults += 1
            out.append(b)
            if rng.random() < p_dup:
                out.append(b)
                self.faults += 1
        return bytes(out)

    def _pump(self, src: socket.socket, dst: socket.socket, rng: random.Random, up: bool) -> None:
        decoder = FrameDecoder() if (self.lie and not up) else None
        total = 0
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if decoder is not None:
                data = b"".join(self._lie(f) for f in decoder.feed(data))
            data = self._corrupt(data, rng)
            total += len(data)
            try:
                dst.sendall(data)
            except OSError:
                break
            if up and self.on_upstream is not None:
                self.on_upstream(total)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _lie(self, frame) -> bytes:
        payload = bytearray(frame.payload)
        if frame.type == 0x82 and len(payload) > 8:
            if isinstance(self.lie, Lie):
                self.lie.apply(payload)
            else:
                payload[8] ^= 0x01  # first element of the split activation, lowest bit
            self.faults += 1
        return encode_frame(frame.type, frame.req_id, bytes(payload))

    def close(self) -> None:
        self._stop.set()
        for s in [*self._socks, self.listener]:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def url_addr(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    return host, int(port)


def env_without_tools() -> dict[str, str]:
    """Environment whose PATH is an empty directory: no flasher, no compiler, no QEMU is found."""
    env = dict(os.environ)
    empty = _root() / "empty-path"
    empty.mkdir(exist_ok=True)
    env["PATH"] = str(empty)
    return env


class PtyBridge:
    """A loopback TCP port in front of a device's pseudo-terminal (the host build), so the TCP
    FaultProxy can sit between verify and the host firmware too."""

    def __init__(self, pty_path: str) -> None:
        self.fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = ("127.0.0.1", self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                self._pump(conn)

    def _pump(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([conn, self.fd], [], [], 0.2)
            try:
                if conn in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    os.write(self.fd, data)
                if self.fd in ready:
                    conn.sendall(os.read(self.fd, 4096))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> PtyBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
