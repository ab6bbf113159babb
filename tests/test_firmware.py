"""`toolchain build` for microcontroller targets: images, manifest, memory report, budgets, errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers_fw import (
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
)

from toolchain.cli import main
from toolchain.errors import ConfigError, ToolchainError
from toolchain.mcu.compile import BudgetError, compile_cortex_m
from toolchain.mcu.render import memory_script
from toolchain.targets import Target, load_target

MCU_TARGETS = ["host", "qemu-m4", "qemu-m3", "qemu-stm32f4", "stm32f4", "nano33ble"]


def _run(*cmd) -> str:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True).stdout


def _manifest(build: Path) -> dict:
    return json.loads((build / "firmware.json").read_text())


def test_targets_command_lists_every_mcu_target(capsys):
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in MCU_TARGETS:
        (line,) = [ln for ln in lines if ln.split()[0] == name]
        assert line.split()[1] == "mcu"


@pytest.mark.parametrize("target", MCU_TARGETS)
def test_build_writes_images_manifest_and_memory_report(fw, target):
    build = fw(target)
    m = _manifest(build)
    model = json.loads((build / "model" / "model.json").read_text())
    assert m["target"] == target and m["model"]["hash"] == model["model_hash"]
    assert m["model"]["dtype"] == "int8" and m["tensors"]["input"]["shape"] == [800]
    assert m["tensors"]["split"]["shape"] == [40] and "scale" in m["tensors"]["split"]
    assert m["exit_rule"]["threshold"] == model["exit_threshold"]
    assert "-ffp-contract=off" in m["compiler"]["cflags"] and m["compiler"]["version"]
    for path in m["images"].values():
        assert (build / path).exists(), path
    # The generated config names the target the firmware reports in HELLO.
    src = build / ("sketch/tc_firmware/src" if target == "nano33ble" else "firmware/src")
    assert f'#define TC_TARGET_NAME "{target}"' in (src / "tc_config.h").read_text()
    report = json.loads((build / "memory.json").read_text())
    assert (build / "memory.md").is_file()
    if target == "host":
        assert report["measured"] is None
        return
    used, budget = report["used"], report["budget"]
    assert 0 < used["flash"] <= budget["flash"] and 0 < used["ram"] <= budget["ram"]
    # Every model array the prediction names is in the ELF with exactly the predicted size.
    arrays = [r for r in report["model_items"] if r["item"] in report["predicted"]["flash"]["arrays"]]
    assert arrays and all(r["measured"] == r["predicted"] for r in arrays)


def test_stm32f4_image_starts_at_flash_with_the_vector_table(fw):
    build = fw("stm32f4")
    syms = subprocess.run(["arm-none-eabi-nm", str(build / "firmware.elf")], capture_output=True, text=True)
    table = {ln.split()[2]: int(ln.split()[0], 16) for ln in syms.stdout.splitlines() if len(ln.split()) == 3}
    assert table["tc_vectors"] == 0x08000000
    # Word 0 of the binary is the initial stack pointer (top of the 128 KiB SRAM), word 1 the reset vector.
    blob = (build / "firmware.bin").read_bytes()
    assert int.from_bytes(blob[:4], "little") == 0x20000000 + 128 * 1024
    assert int.from_bytes(blob[4:8], "little") | 1 == table["Reset_Handler"] | 1
    assert (build / "firmware.hex").read_text().startswith(":")
    config = (build / "firmware" / "src" / "tc_config.h").read_text()
    assert "TC_UART_BASE 0x40004400u" in config and "TC_CPU_HZ 16000000u" in config


def test_arduino_target_has_sketch_platformio_project_and_cross_built_portable_part(fw):
    build = fw("nano33ble")
    sketch = build / "sketch" / "tc_firmware"
    src = {p.name for p in (sketch / "src").iterdir()}
    assert (sketch / "tc_firmware.ino").is_file()
    assert {"tc_board_arduino.cpp", "tc_app.c", "tc_proto.c", "model_data.c", "tc_head.c"} <= src
    assert "tc_main.c" not in src  # the Arduino core provides main()
    ini = (build / "platformio" / "platformio.ini").read_text()
    assert "board = nano33ble" in ini and "framework = arduino" in ini and "-ffp-contract=off" in ini
    assert (build / "platformio" / "src" / "main.cpp").is_file()
    # portable.o: an ARM relocatable object built for the hard-float ABI of the Cortex-M4F.
    blob = (build / "portable.o").read_bytes()
    assert blob[:4] == b"\x7fELF" and int.from_bytes(blob[16:18], "little") == 1  # ET_REL
    assert int.from_bytes(blob[18:20], "little") == 40  # EM_ARM
    attrs = _run("arm-none-eabi-readelf", "-A", build / "portable.o")
    assert "v7E-M" in attrs and "VFPv4-D16" in attrs and "VFP registers" in attrs
    syms = _run("arm-none-eabi-nm", build / "portable.o")
    assert " T tc_app_poll" in syms and " T tc_head_infer" in syms and " U tc_board_read" in syms


@pytest.mark.parametrize("region", ["ram", "flash"])
def test_budget_overflow_names_the_bytes(fw, tmp_path, region):
    build = fw("qemu-m3")
    report = json.loads((build / "memory.json").read_text())
    small = dataclasses.replace(mcu("qemu-m3"), **{region: 2048})
    src = tmp_path / "src"
    shutil.copytree(build / "firmware" / "src", src)
    (src / "memory.ld").write_text(memory_script(small))
    files = sorted(p.name for p in src.glob("*.c"))
    with pytest.raises(BudgetError) as exc:
        compile_cortex_m(small, src, files, tmp_path)
    over = report["used"][region] - 2048
    assert f"{region.upper()} overflowed by {over} bytes (budget 2048 bytes" in str(exc.value)


def test_unsupported_dtype_is_refused_before_any_work(trained_bundle, tmp_path):
    from toolchain.pipeline import BuildOptions, build

    with pytest.raises(ConfigError, match="qemu-m3 does not support dtype float32"):
        build(
            load_target("qemu-m3"), out=tmp_path / "b", bundle=trained_bundle, options=BuildOptions("float32")
        )
    assert not (tmp_path / "b").exists()


def test_missing_cross_compiler_is_a_clear_error(trained_bundle, tmp_path):
    from toolchain.pipeline import build

    t = load_target("qemu-m4")
    data = {**t.data, "compiler": {**t.data["compiler"], "cc": "no-such-gcc"}}
    with pytest.raises(ToolchainError, match="no-such-gcc is not installed"):
        build(Target(t.name, t.description, t.kind, t.path, data), out=tmp_path / "b", bundle=trained_bundle)


def test_target_tables_are_checked():
    from toolchain.mcu.target import mcu_target

    t = load_target("qemu-m4")
    bad = Target(
        t.name, t.description, t.kind, t.path, {**t.data, "firmware": {**t.data["firmware"], "board": "x"}}
    )
    with pytest.raises(ConfigError, match=r"firmware\.board"):
        mcu_target(bad)
    bad = Target(t.name, t.description, t.kind, t.path, {**t.data, "memory": {"flash": 1}})
    with pytest.raises(ConfigError, match="needs memory"):
        mcu_target(bad)
