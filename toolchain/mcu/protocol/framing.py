"""Frames of the device protocol (docs/protocol.md): CRCs, the encoder and a resynchronising decoder."""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

PROTO_MAJOR = 1
PROTO_MINOR = 0
SYNC = b"\xa5\x5a"
HEADER_LEN = 8
OVERHEAD = 10
MAX_PAYLOAD = 0xFFFF

HELLO, INFER, ECHO, ERROR = 0x01, 0x02, 0x03, 0x7F
REPLY = 0x80
MSG_NAMES = {HELLO: "HELLO", INFER: "INFER", ECHO: "ECHO", ERROR: "ERROR"}

ERR_BAD_CRC, ERR_TOO_LONG, ERR_UNKNOWN_TYPE, ERR_BAD_LENGTH, ERR_TIMEOUT, ERR_FAULT = 1, 2, 3, 4, 5, 6
ERROR_NAMES = {
    ERR_BAD_CRC: "BAD_CRC",
    ERR_TOO_LONG: "TOO_LONG",
    ERR_UNKNOWN_TYPE: "UNKNOWN_TYPE",
    ERR_BAD_LENGTH: "BAD_LENGTH",
    ERR_TIMEOUT: "TIMEOUT",
    ERR_FAULT: "FAULT",
}
ID_NONE = 0xFFFF

COUNTER_KINDS = {0: "none", 1: "dwt_cycles", 2: "systick", 3: "host_ns", 4: "micros"}
CAP_INFER, CAP_ECHO, CAP_COUNTER = 0x1, 0x2, 0x4


# ----------------------------------------------------------------------------------------------
def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8, poly 0x07, init 0, no reflection (check value of b'123456789' is 0xF4)."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (check value of b'123456789' is 0x29B1): binascii's CRC-CCITT (poly 0x1021,
    not reflected) started at 0xFFFF, in C."""
    return binascii.crc_hqx(data, crc)


@dataclass(frozen=True)
class Frame:
    type: int
    req_id: int
    payload: bytes


def encode_frame(type_: int, req_id: int, payload: bytes = b"") -> bytes:
    if not 0 <= type_ <= 0xFF or not 0 <= req_id <= 0xFFFF or len(payload) > MAX_PAYLOAD:
        raise ValueError("frame field out of range")
    head = struct.pack("<BHH", type_, req_id, len(payload))
    head += bytes([crc8(head)])
    body = head + payload
    return SYNC + body + struct.pack("<H", crc16(body))


class FrameDecoder:
    """Incremental decoder: scans for A5 5A, checks the header, then the frame; on any failure it
    drops one byte and rescans, so a frame that starts inside garbage is still found."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.buf = bytearray()
        self.bad_frames = 0  # frames whose header was valid but whose frame check failed

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return out
            out.append(frame)

    def _next(self) -> Frame | None:
        buf = self.buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing A5: it may be the first half of the next sync.
                del buf[: len(buf) - 1 if buf.endswith(SYNC[:1]) else len(buf)]
                return None
            del buf[:start]
            if len(buf) < HEADER_LEN:
                return None
            type_, req_id, length = struct.unpack_from("<BHH", buf, 2)
            if crc8(bytes(buf[2:7])) != buf[7] or length > self.max_payload:
                del buf[:1]
                continue
            if len(buf) < OVERHEAD + length:
                return None
            body = bytes(buf[2 : HEADER_LEN + length])
            (got,) = struct.unpack_from("<H", buf, HEADER_LEN + length)
            if crc16(body) != got:
                self.bad_frames += 1
                del buf[:1]
                continue
            del buf[: OVERHEAD + length]
            return Frame(type_, req_id, body[6:])
