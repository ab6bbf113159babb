"""`Link`: one conversation with a device over any pyserial-like port, with bounded time everywhere:
HELLO until the board answers, resynchronisation, request ids, retransmission and re-handshakes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from toolchain.errors import ToolchainError
from toolchain.mcu.protocol.framing import (
    ECHO,
    ERR_BAD_CRC,
    ERR_FAULT,
    ERR_TIMEOUT,
    ERROR,
    ERROR_NAMES,
    HELLO,
    ID_NONE,
    INFER,
    MSG_NAMES,
    PROTO_MAJOR,
    PROTO_MINOR,
    REPLY,
    Frame,
    FrameDecoder,
    encode_frame,
)
from toolchain.mcu.protocol.messages import (
    HelloInfo,
    InferResult,
    LinkError,
    decode_error,
    decode_hello,
    decode_infer,
    describe_error,
    infer_reply_size,
)


# ----------------------------------------------------------------------------------------------
class Port(Protocol):
    """What Link needs from a pyserial port (serial.Serial or serial_for_url objects)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def reset_input_buffer(self) -> None: ...


@dataclass
class LinkStats:
    requests: int = 0
    retransmissions: int = 0
    rehellos: int = 0
    bad_frames: int = 0
    device_errors: dict[str, int] = field(default_factory=dict)
    bytes_out: int = 0
    bytes_in: int = 0


class Link:
    """One conversation with a device: requests with ids, deadlines and retries.

    `reply_timeout` is the floor of every request's deadline; large frames get more time from
    `min_rate` (bytes/s the link is assumed to sustain at worst)."""

    def __init__(
        self,
        port: Port,
        reply_timeout: float = 5.0,
        retries: int = 4,
        connect_timeout: float = 10.0,
        min_rate: float = 2000.0,
        poll: float = 0.05,
    ) -> None:
        self.port = port
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.min_rate = min_rate
        self.poll = poll
        self.decoder = FrameDecoder()
        self.next_id = 1
        self.info: HelloInfo | None = None
        self.stats = LinkStats()
        self.on_hello = None  # callback(HelloInfo) run after every (re)handshake: identity checks

    # -- low level ------------------------------------------------------------------------------
    def _new_id(self) -> int:
        rid = self.next_id
        self.next_id = rid % 0xFFFE + 1  # 1..0xFFFE; 0xFFFF is the device's "no request"
        return rid

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except OSError as exc:
            raise LinkError(f"writing to the device failed: {exc}") from None
        self.stats.bytes_out += len(data)

    def _read_frames(self, deadline: float) -> list[Frame]:
        """Wait until at least one frame arrives or the deadline passes (then [])."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Fixed read timeout (reconfiguring a tty costs syscalls): overshoots by <= poll.
            if self.port.timeout != self.poll:
                self.port.timeout = self.poll
            try:
                waiting = getattr(self.port, "in_waiting", 0) or 0
                data = self.port.read(max(1, min(waiting, 65536)))
            except OSError as exc:
                raise LinkError(f"reading from the device failed: {exc}") from None
            if data:
                self.stats.bytes_in += len(data)
                before = self.decoder.bad_frames
                frames = self.decoder.feed(data)
                self.stats.bad_frames += self.decoder.bad_frames - before
                if frames or self.decoder.bad_frames != before:
                    return frames

    def _deadline(self, nbytes: int) -> float:
        return time.monotonic() + self.reply_timeout + nbytes / self.min_rate

    def _count_error(self, payload: bytes) -> None:
        name = ERROR_NAMES.get(decode_error(payload)[0], "other")
        self.stats.device_errors[name] = self.stats.device_errors.get(name, 0) + 1

    # -- handshake ------------------------------------------------------------------------------
    def hello(self, timeout: float | None = None) -> HelloInfo:
        """Send HELLO every `poll`..0.2 s until a valid reply, then flush stale replies with an ECHO nonce."""
        wait = self.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        interval = self.poll
        while time.monotonic() < deadline:
            rid = self._new_id()
            self._write(encode_frame(HELLO, rid))
            wait_until = min(deadline, time.monotonic() + interval)
            interval = min(0.2, interval * 1.5)
            while True:
                frames = self._read_frames(wait_until)
                if not frames:
                    if time.monotonic() >= wait_until:
                        break
                    continue
                for fr in frames:
                    if fr.type == ERROR and decode_error(fr.payload)[0] == ERR_FAULT:
                        raise LinkError(describe_error(fr.payload))
                    if fr.type == HELLO | REPLY:
                        info = decode_hello(fr.payload)
                        if info.major != PROTO_MAJOR:
                            raise LinkError(
                                f"the device speaks protocol {info.major}.{info.minor}, this host "
                                f"speaks {PROTO_MAJOR}.{PROTO_MINOR}",
                                hint="rebuild and flash the firmware with this toolchain version",
                            )
                        self.info = info
                        self.decoder.max_payload = max(info.max_payload, infer_reply_size(info))
                        self._flush_with_nonce(deadline)
                        if self.on_hello is not None:
                            self.on_hello(info)
                        return info
        raise LinkError(
            f"no HELLO reply from the device within {wait:g} s",
            hint="check the port, that the board is flashed with this build and not held in reset, "
            "and that no other program has the port open",
        )

    def _flush_with_nonce(self, deadline: float) -> None:
        nonce = os.urandom(8)
        rid = self._new_id()
        self._write(encode_frame(ECHO, rid, nonce))
        until = min(deadline, time.monotonic() + self.reply_timeout)
        while time.monotonic() < until:
            for fr in self._read_frames(until):
                if fr.type == ECHO | REPLY and fr.req_id == rid and fr.payload == nonce:
                    return
        # The nonce did not come back: the caller's next request will resynchronise by id.

    # -- requests -------------------------------------------------------------------------------
    def request(self, type_: int, payload: bytes, what: str | None = None) -> Frame:
        """Send a request and return its reply; retransmit on errors, re-handshake on silence."""
        if self.info is None:
            self.hello()
        what = what or MSG_NAMES.get(type_, hex(type_))
        rid = self._new_id()
        frame = encode_frame(type_, rid, payload)
        self.stats.requests += 1
        problems: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmissions += 1
            self._write(frame)
            deadline = self._deadline(len(frame) + 64 + (self.info.max_payload if self.info else 0))
            outcome = self._await_reply(rid, type_, deadline)
            if isinstance(outcome, Frame):
                return outcome
            problems.append(outcome)
            if outcome.startswith("no reply"):
                # Silence: the board may have reset or been re-flashed. Handshake again (this
                # re-checks the model hash through on_hello) before retransmitting.
                self.stats.rehellos += 1
                self.hello(timeout=max(self.reply_timeout, 2.0))
        raise LinkError(
            f"{what} failed after {self.retries + 1} attempts: " + "; ".join(problems),
            hint="the serial link is unreliable or the device is not running this firmware",
        )

    def _await_reply(self, rid: int, type_: int, deadline: float) -> Frame | str:
        bad_before = self.decoder.bad_frames
        while True:
            frames = self._read_frames(deadline)
            if not frames:
                if self.decoder.bad_frames != bad_before:
                    return "corrupted reply"
                if time.monotonic() >= deadline:
                    return "no reply before the deadline"
                continue
            for fr in frames:
                if fr.req_id == ID_NONE and fr.type == ERROR and decode_error(fr.payload)[0] == ERR_FAULT:
                    raise LinkError(describe_error(fr.payload))
                if fr.req_id != rid:
                    continue  # a stale reply (earlier retransmission, duplicate): ignore it
                if fr.type == type_ | REPLY:
                    return fr
                if fr.type == ERROR:
                    self._count_error(fr.payload)
                    code = decode_error(fr.payload)[0]
                    if code in (ERR_BAD_CRC, ERR_TIMEOUT):
                        return f"device error {describe_error(fr.payload)}"  # damaged in transit
                    name = MSG_NAMES.get(type_, hex(type_))
                    raise LinkError(
                        f"the device rejected {name}: {describe_error(fr.payload)}",
                        hint="the build directory and the firmware on the device do not match",
                    )

    def echo(self, data: bytes) -> bytes:
        return self.request(ECHO, data).payload

    def infer(self, sample: np.ndarray) -> InferResult:
        info = self.info or self.hello()
        x = np.ascontiguousarray(sample, dtype=info.np_dtype)
        if x.size != info.input_size:
            raise ToolchainError(f"input has {x.size} elements, the device expects {info.input_size}")
        reply = self.request(INFER, x.tobytes(), "INFER")
        return decode_infer(reply.payload, self.info or info)
