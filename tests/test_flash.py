"""`toolchain flash`: flasher plans and dry runs for real boards, booting emulated boards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_fw import (
    env_without_tools,
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
    pid_alive,
)

from toolchain.cli import main
from toolchain.mcu.device import open_port
from toolchain.mcu.flash import plan
from toolchain.mcu.manifest import McuBuild
from toolchain.mcu.protocol import Link


def _cli(*argv: str, env=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolchain", *argv], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_stm32f4_dry_run_prints_the_exact_flasher_command(fw, capsys):
    build = fw("stm32f4")
    assert main(["flash", "--target", "stm32f4", "--build", str(build), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    p = plan(mcu("stm32f4"), McuBuild.open(build, "stm32f4"), None)
    assert line.startswith(" ".join(p.command[:2]))
    image = "firmware.bin" if p.tool.name == "st-flash" else "firmware.elf"
    assert str((build / image).resolve()) in line


@pytest.mark.parametrize("tool", ["openocd", "st-flash"])
def test_a_named_flasher_is_planned_with_its_image(fw, tool):
    build = fw("stm32f4")
    p = plan(mcu("stm32f4"), McuBuild.open(build, "stm32f4"), None, tool=tool)
    assert p.tool.name == tool
    if tool == "st-flash":
        assert p.command[-2:] == [str((build / "firmware.bin").resolve()), "0x08000000"]
    else:
        assert f"program {(build / 'firmware.elf').resolve()} verify reset exit" in p.command


def test_no_installed_flasher_lists_install_and_run_commands(fw):
    build = fw("stm32f4")
    proc = _cli("flash", "--target", "stm32f4", "--build", str(build), env=env_without_tools())
    assert proc.returncode == 2
    err = proc.stderr
    assert "no flasher for stm32f4 is installed" in err and "Traceback" not in err
    for tool, install in [("pyocd", "pip install pyocd"), ("openocd", "apt-get install openocd")]:
        assert f"{tool}: install with `" in err and install in err
    assert f"st-flash --reset write {(build / 'firmware.bin').resolve()} 0x08000000" in err


def test_arduino_flash_needs_a_port_and_dry_run_shows_the_sketch(fw, capsys):
    build = fw("nano33ble")
    argv = ["flash", "--target", "nano33ble", "--build", str(build)]
    assert main([*argv, "--dry-run", "--port", "/dev/ttyACM0"]) == 0
    out = capsys.readouterr().out
    assert "arduino-cli compile --fqbn arduino:mbed_nano:nano33ble" in out
    assert "--port /dev/ttyACM0" in out and str((build / "sketch" / "tc_firmware").resolve()) in out
    assert main(argv) == 2
    assert "pass --port" in capsys.readouterr().err


def test_flash_refuses_a_build_of_another_target(fw, capsys):
    assert main(["flash", "--target", "stm32f4", "--build", str(fw("qemu-stm32f4")), "--dry-run"]) == 2
    assert "holds firmware for target 'qemu-stm32f4'" in capsys.readouterr().err


def test_qemu_flash_boots_the_board_prints_the_url_and_stops_on_ctrl_c(fw):
    build = fw("qemu-m4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolchain", "flash", "--target", "qemu-m4", "--build", str(build)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert "qemu-m4 is running (pid" in first and "socket://127.0.0.1:" in first
        qemu_pid = int(first.split("(pid ")[1].split(")")[0])
        url = first.split("serial: ")[1].strip()
        assert f"--url {url}" in proc.stdout.readline()
        port = open_port(url)
        info = Link(port).hello()
        manifest = json.loads((Path(build) / "firmware.json").read_text())
        assert info.target == "qemu-m4" and info.model_hash == manifest["model"]["hash"]
        port.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    end = time.monotonic() + 5
    while pid_alive(qemu_pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert not pid_alive(qemu_pid)


def test_emulated_dry_run_prints_a_runnable_qemu_command(fw, capsys):
    build = fw("qemu-stm32f4")
    assert main(["flash", "--target", "qemu-stm32f4", "--build", str(build), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("qemu-system-arm -M netduinoplus2") and "-icount shift=0" in out
    assert "-serial null -serial tcp:127.0.0.1:4444,server=on,wait=on,nodelay=on" in out
