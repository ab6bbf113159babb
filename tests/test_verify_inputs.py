"""verify refuses a device announcing other tensor sizes than the build, before the first sample,
and refuses option values that would disable a deadline or a retry bound (issue 13: 7)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers_fw import (
    FaultProxy,
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
    url_addr,
)

from toolchain.cli import main
from toolchain.errors import MismatchError, ToolchainError
from toolchain.mcu.device import start_device
from toolchain.mcu.protocol import HELLO, INFER, REPLY, decode_hello, encode_frame, encode_hello
from toolchain.mcu.verify import VerifyOptions, verify


class ShrinkingDevice(FaultProxy):
    """A device that lies consistently: its HELLO announces a split of `split` values and its INFER
    replies carry exactly that many (the real device's first ones), so every frame decodes."""

    def __init__(self, addr, split: int) -> None:
        super().__init__(addr, lie=True)
        self.split = split
        self.infers = 0

    def _lie(self, frame) -> bytes:
        payload = frame.payload
        if frame.type == HELLO | REPLY:
            self.real = decode_hello(payload)
            payload = encode_hello(dataclasses.replace(self.real, split_size=self.split))
        elif frame.type == INFER | REPLY:
            self.infers += 1
            n = self.real.elem_size
            split_end = 8 + self.real.split_size * n
            payload = payload[: 8 + self.split * n] + payload[split_end:]
        return encode_frame(frame.type, frame.req_id, payload)


def test_a_device_announcing_another_split_size_is_refused_at_hello(fw, data_root, tmp_path):
    build = fw("qemu-m3")
    with start_device(mcu("qemu-m3"), build) as dev, ShrinkingDevice(url_addr(dev.url), split=1) as proxy:
        opts = VerifyOptions(
            target="qemu-m3", build=build, url=proxy.url, samples=20, data_dir=str(data_root),
            quiet=True, report=tmp_path / "r.json",
        )  # fmt: skip
        with pytest.raises(MismatchError, match=r"announces 1 split values \(this build: 40\)"):
            verify(opts)
    assert proxy.infers == 0  # refused before a single sample was sent


BAD_OPTIONS = [
    (["--timeout", "nan"], "--timeout nan is not a usable number of seconds"),
    (["--timeout", "inf"], "--timeout inf"),
    (["--timeout", "0"], "--timeout 0.0"),
    (["--connect-timeout", "-5"], "--connect-timeout -5.0"),
    (["--retries", "-1"], "--retries -1 is out of range"),
    (["--baud", "0"], "--baud 0 must be a positive integer"),
]


@pytest.mark.parametrize("extra,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_option_values_that_would_disable_a_bound_are_refused(extra, message, tmp_path, capsys):
    argv = ["verify", "--target", "host", "--build", str(tmp_path / "none"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "not a firmware build directory" not in err  # checked before anything is opened
    with pytest.raises(ToolchainError):
        VerifyOptions(target="host", reply_timeout=float("nan"))
