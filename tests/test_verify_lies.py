"""verify against a float32 device that lies: every comparison verify makes (split, exit logits, exit
decision, exit class) must turn a wrong answer into a failure, and only that comparison; a difference
inside the float32 tolerance must still pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_fw import FaultProxy, Lie, PtyBridge, fw_fixture, mcu  # noqa: F401  (registers `fw`)

from toolchain.errors import MismatchError
from toolchain.mcu.device import start_device
from toolchain.mcu.verify import VerifyOptions, verify

N = 12
FIELDS = ("split", "exit_logits", "exit_decision", "exit_class")


@pytest.fixture(scope="module")
def float32_host(fw):
    """The float32 host build, running, behind a TCP port."""
    build = fw("host", "float32")
    with start_device(mcu("host"), build) as dev, PtyBridge(dev.url) as bridge:
        yield build, bridge.addr


def _verify(build: Path, url: str, data_root, report: Path) -> dict:
    opts = VerifyOptions(
        "host", build=build, url=url, samples=N, data_dir=str(data_root), quiet=True, report=report
    )
    return verify(opts)


@pytest.mark.parametrize("field", FIELDS)
def test_a_float32_device_that_lies_in_one_field_fails_on_that_field(
    float32_host, field, data_root, tmp_path
):
    build, addr = float32_host
    lie = Lie(field, elem=4, split_size=40)
    report = tmp_path / "r.json"
    with FaultProxy(addr, lie=lie) as proxy, pytest.raises(MismatchError, match=f"differ on {N} of {N}"):
        _verify(build, proxy.url, data_root, report)
    # Valid JSON even when the lie produced NaN or infinity (strict: no NaN / Infinity constants).
    r = json.loads(report.read_text(), parse_constant=lambda c: pytest.fail(f"report holds {c}"))
    assert not r["passed"] and r["dtype"] == "float32"
    assert {k: r["mismatches"][k] for k in FIELDS} == {k: N if k == field else 0 for k in FIELDS}
    assert r["mismatches"]["first"][0]["failed"] == [field]


def test_a_float32_difference_inside_the_tolerance_passes(float32_host, data_root, tmp_path):
    """The lowest mantissa bit of a split value: far below |d - r| <= 1e-5 + 1e-5·|r|."""
    build, addr = float32_host
    with FaultProxy(addr, lie=True) as proxy:
        r = _verify(build, proxy.url, data_root, tmp_path / "r.json")
    assert r["passed"] and proxy.faults >= N
    assert 0 < r["device_vs_reference"]["split"]["max_abs"] <= 1e-5
