"""`toolchain verify` against the host build and the QEMU boards; refusals and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers_fw import (
    FaultProxy,
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
    url_addr,
)

from toolchain.cli import main
from toolchain.errors import MismatchError, ToolchainError
from toolchain.mcu.device import DeviceError, start_device
from toolchain.mcu.verify import VerifyOptions, verify


def _opts(target, build, data_root, samples, **kw) -> VerifyOptions:
    return VerifyOptions(
        target=target, build=build, samples=samples, data_dir=str(data_root), quiet=True, **kw
    )


def test_host_int8_cli_500_samples(fw, data_root, tmp_path, capsys):
    build = fw("host")
    out = tmp_path / "report.json"
    argv = ["verify", "--target", "host", "--build", str(build), "--samples", "500"]
    rc = main([*argv, "--data-dir", str(data_root), "--report", str(out), "--quiet"])
    assert rc == 0
    assert "PASS" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["passed"] and r["samples"] == 500 and r["comparison"] == "bit-exact"
    assert r["mismatches"]["samples"] == 0
    assert r["accuracy"]["agreement_with_host"] == 1.0
    assert r["accuracy"]["device_end_to_end"] == r["accuracy"]["host_reference_end_to_end"] > 0.8
    assert r["exit_rate"]["device"] == r["exit_rate"]["host_reference"]
    assert r["device_vs_reference"]["split"]["rmse"] == 0.0
    assert r["device_vs_reference"]["split"]["cosine"] == 1.0
    # Quantization error against the float model is small but not zero.
    assert 0 < r["device_vs_float_model"]["split"]["l2_relative"] < 0.1
    assert r["counter"]["unit"].startswith("ns") and 0 < r["counter"]["min"] <= r["counter"]["max"]
    assert r["tail"] == "onnxruntime" and r["throughput"]["samples_per_s"] > 0


@pytest.mark.parametrize(("target", "samples"), [("qemu-m4", 100), ("qemu-m3", 60), ("qemu-stm32f4", 60)])
def test_qemu_boards_are_bit_exact(fw, data_root, target, samples):
    r = verify(_opts(target, fw(target), data_root, samples))
    assert r["passed"] and r["samples"] == samples and r["mismatches"]["samples"] == 0
    assert r["device"]["target"] == target and r["device"]["counter"] == "systick"
    c = r["counter"]
    # -icount shift=0: deterministic instruction counts (one SysTick tick of resolution).
    assert c["unit"] == "instructions (QEMU icount)" and 1000 < c["min"] <= c["mean"] <= c["max"]
    assert c["max"] - c["min"] <= 2 * 1e9 / r["device"]["counter_hz"] + 1


def test_host_float32_within_tolerance(fw, data_root):
    r = verify(_opts("host", fw("host", "float32"), data_root, 200))
    assert r["passed"] and r["dtype"] == "float32" and r["comparison"].startswith("|d-r| <=")
    assert r["device_vs_reference"]["exit_logits"]["max_abs"] <= 1e-4


def test_wrong_model_hash_is_refused(fw, data_root, capsys):
    # The device runs the int8 build; verify is pointed at the float32 build of the same target.
    with start_device(mcu("host"), fw("host")) as dev:
        argv = ["verify", "--target", "host", "--build", str(fw("host", "float32")), "--port", dev.url]
        assert main([*argv, "--data-dir", str(data_root), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "a model with hash" in err and "refusing to compare" in err


def test_firmware_of_another_target_is_refused(fw, data_root):
    with start_device(mcu("qemu-m4"), fw("qemu-m4")) as dev:
        opts = _opts("qemu-stm32f4", fw("qemu-stm32f4"), data_root, 5, url=dev.url)
        with pytest.raises(MismatchError, match="firmware for target 'qemu-m4'"):
            verify(opts)


def test_build_of_another_target_is_refused(fw, data_root):
    with pytest.raises(ToolchainError, match="holds firmware for target 'qemu-m4', not 'qemu-m3'"):
        verify(_opts("qemu-m3", fw("qemu-m4"), data_root, 5))


def test_physical_board_needs_a_port(fw, data_root):
    with pytest.raises(DeviceError, match="physical board: pass its serial port with --port"):
        verify(_opts("stm32f4", fw("stm32f4"), data_root, 5))


def test_a_device_that_computes_wrong_results_fails(fw, data_root, tmp_path):
    # Perfect protocol, wrong numbers: verify must report the mismatch, never a pass.
    with start_device(mcu("qemu-m3"), fw("qemu-m3")) as dev, FaultProxy(url_addr(dev.url), lie=True) as proxy:
        report = tmp_path / "r.json"
        with pytest.raises(MismatchError, match="differ on 30 of 30 samples"):
            verify(_opts("qemu-m3", fw("qemu-m3"), data_root, 30, url=proxy.url, report=report))
    r = json.loads(report.read_text())
    assert not r["passed"] and r["mismatches"]["split"] == 30 and r["mismatches"]["exit_logits"] == 0
    assert r["mismatches"]["first"][0]["failed"] == ["split"]


def test_an_image_for_another_machine_names_the_emulator_failure(fw, data_root, tmp_path):
    build = tmp_path / "broken"
    shutil.copytree(fw("qemu-m4"), build)
    shutil.copyfile(fw("host") / "firmware_host", build / "firmware.elf")  # an x86-64 ELF
    with pytest.raises(ToolchainError, match=r"(?s)exited with status.*qemu: fatal"):
        verify(_opts("qemu-m4", build, data_root, 5, connect_timeout=3))


def test_onnx_and_keras_tails_agree(trained_bundle, data_root):
    import numpy as np

    from toolchain.bundle import load_bundle
    from toolchain.mcu.verify.host import Tail, float_head, select_samples

    bundle = load_bundle(trained_bundle)
    _, x, _ = select_samples(bundle, 300, data_root)
    split, _ = float_head(bundle, x)
    onnx_tail, keras_tail = Tail(bundle, "onnxruntime"), Tail(bundle, "keras")
    assert (onnx_tail.engine, keras_tail.engine) == ("onnxruntime", "keras")
    a, b = onnx_tail.predict(split), keras_tail.predict(split)
    assert len(a) == 300 and np.array_equal(a, b)


def test_samples_argument():
    from toolchain.mcu.verify.host import parse_samples

    assert parse_samples("all") is None and parse_samples("25") == 25
    for bad in ("0", "-3", "many"):
        with pytest.raises(ToolchainError, match="--samples"):
            parse_samples(bad)
