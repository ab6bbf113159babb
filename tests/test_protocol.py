"""Host side of the device protocol: CRCs, frames, the resynchronising decoder, message codecs."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.mcu.protocol import (
    ERROR,
    OVERHEAD,
    FrameDecoder,
    HelloInfo,
    LinkError,
    crc8,
    crc16,
    decode_hello,
    decode_infer,
    describe_error,
    encode_frame,
    encode_hello,
)

frames = st.tuples(
    st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=600)
)  # type, request id, payload


def test_crc_check_values():
    # The catalogued check values of CRC-8 (poly 0x07) and CRC-16/CCITT-FALSE.
    assert crc8(b"123456789") == 0xF4
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def _crc16_bitwise(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@given(st.binary(max_size=300))
def test_crc16_matches_the_bitwise_definition(data):
    assert crc16(data) == _crc16_bitwise(data)


def test_frame_layout():
    f = encode_frame(0x02, 0x1234, b"\x01\x02\x03")
    assert f[:2] == b"\xa5\x5a"
    assert f[2] == 0x02 and struct.unpack_from("<HH", f, 3) == (0x1234, 3)
    assert f[7] == crc8(f[2:7])
    assert struct.unpack_from("<H", f, len(f) - 2)[0] == crc16(f[2:-2])
    assert len(f) == OVERHEAD + 3


@given(st.lists(frames, max_size=6), st.lists(st.binary(max_size=40), max_size=7), st.integers(1, 97))
@settings(max_examples=200, deadline=None)
def test_decoder_finds_every_frame_between_garbage(items, junk, chunk):
    # Garbage without a 0xA5 byte can never start a frame, so every frame must come out, in order,
    # whatever the chunking of the byte stream.
    junk = [j.replace(b"\xa5", b"\x00") for j in junk] + [b""] * (len(items) + 1)
    stream = junk[0] + b"".join(encode_frame(t, i, p) + junk[k + 1] for k, (t, i, p) in enumerate(items))
    dec = FrameDecoder()
    got = []
    for k in range(0, len(stream), chunk):
        got += dec.feed(stream[k : k + chunk])
    assert [(f.type, f.req_id, f.payload) for f in got] == items


@given(frames, st.data())
@settings(max_examples=300, deadline=None)
def test_a_damaged_frame_is_never_accepted(frame, data):
    # Up to 3 flipped bits anywhere in a frame: CRC-16 catches them (frames < 4 KiB), so the decoder
    # returns nothing rather than a wrong frame.
    raw = bytearray(encode_frame(*frame))
    positions = data.draw(st.lists(st.integers(0, 8 * len(raw) - 1), min_size=1, max_size=3, unique=True))
    for bit in positions:
        raw[bit // 8] ^= 1 << (bit % 8)
    got = FrameDecoder().feed(bytes(raw))
    assert got == [] or [(f.type, f.req_id, f.payload) for f in got] == [frame]
    assert got == [] or bytes(raw) == encode_frame(*frame)  # only when the flips cancelled out


def test_decoder_resyncs_after_a_false_header():
    good = encode_frame(0x81, 7, b"hello")
    # A5 5A followed by a header whose check fails: the decoder must drop one byte and rescan.
    stream = b"\xa5\x5a\x01\x02\x03\x04\x05\x06" + good
    assert [f.payload for f in FrameDecoder().feed(stream)] == [b"hello"]


def test_decoder_counts_frames_with_a_bad_frame_check():
    raw = bytearray(encode_frame(0x82, 9, b"x" * 20))
    raw[12] ^= 0xFF
    dec = FrameDecoder()
    assert dec.feed(bytes(raw) + encode_frame(0x81, 10, b""))[0].req_id == 10
    assert dec.bad_frames == 1


def _info(dtype: str) -> HelloInfo:
    quant = (
        {k: {"scale": 0.5 + i, "zero_point": -3 + i} for i, k in enumerate(("input", "split", "exit"))}
        if dtype == "int8"
        else {}
    )
    return HelloInfo(
        major=1, minor=0, max_payload=800, capabilities=7, dtype=dtype, counter_kind="systick",
        interbyte_timeout_ms=250, counter_hz=25_000_000, input_size=800, split_size=40, n_classes=10,
        quant=quant, exit_threshold=17 if dtype == "int8" else 0.75, model_hash="0123456789abcdef",
        target="qemu-m4", build_info="gcc 12",
    )  # fmt: skip


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_hello_roundtrip(dtype):
    info = _info(dtype)
    assert decode_hello(encode_hello(info)) == info


def test_hello_truncated_is_a_clear_error():
    with pytest.raises(LinkError, match="malformed HELLO"):
        decode_hello(encode_hello(_info("int8"))[:40])


def test_infer_reply_decoding_and_size_check():
    info = _info("int8")
    split = np.arange(-20, 20, dtype=np.int8)
    logits = np.arange(10, dtype=np.int8)
    payload = struct.pack("<BBBBI", 1, 9, 2, 0, 12345) + split.tobytes() + logits.tobytes()
    r = decode_infer(payload, info)
    assert r.exit_taken and r.exit_class == 9 and r.count == 12345 and r.counter_kind == "systick"
    assert np.array_equal(r.split, split) and np.array_equal(r.exit_logits, logits)
    with pytest.raises(LinkError, match="expected 58"):
        decode_infer(payload[:-1], info)


def test_error_description_names_the_code():
    assert "BAD_LENGTH" in describe_error(struct.pack("<BBH", 4, 0x02, 800))
    assert "fault" in describe_error(struct.pack("<BBH", 6, 0, 0x0100))
    assert ERROR == 0x7F
