"""The HELLO reply as the C firmware writes it, read byte for byte: the Python decoder against the
build's own record, and the Python encoder (used by test proxies) against the C encoder."""

from __future__ import annotations

import json
import time

import pytest
from helpers_fw import fw_fixture, mcu  # noqa: F401  (registers the `fw` fixture)

from toolchain.mcu.device import start_device
from toolchain.mcu.protocol import HELLO, REPLY, FrameDecoder, decode_hello, encode_frame, encode_hello


def _raw_hello(port, timeout: float = 10.0) -> bytes:
    decoder = FrameDecoder()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        port.write(encode_frame(HELLO, 7))
        stop = time.monotonic() + 0.3
        while time.monotonic() < stop:
            for frame in decoder.feed(port.read(256)):
                if frame.type == HELLO | REPLY and frame.req_id == 7:
                    return frame.payload
    raise AssertionError("no HELLO reply")


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_hello_from_the_c_firmware(fw, dtype):
    build = fw("host", dtype)
    manifest = json.loads((build / "firmware.json").read_text())
    with start_device(mcu("host"), build) as dev:
        payload = _raw_hello(dev.open())
    info = decode_hello(payload)
    model, tensors = manifest["model"], manifest["tensors"]
    assert (info.target, info.model_hash, info.dtype) == ("host", model["hash"], dtype)
    assert (info.input_size, info.split_size, info.n_classes) == (800, 40, 10)
    assert info.exit_threshold == pytest.approx(manifest["exit_rule"]["threshold"], rel=1e-7)
    if dtype == "int8":
        for name, key in (("input", "input"), ("split", "split"), ("exit", "exit_logits")):
            assert info.quant[name]["zero_point"] == tensors[key]["zero_point"]
            assert info.quant[name]["scale"] == pytest.approx(tensors[key]["scale"], rel=1e-7)
    # The Python encoder (what the test proxies send) writes exactly the firmware's bytes.
    assert encode_hello(info) == payload
