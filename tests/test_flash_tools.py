"""The installed flashers (pyOCD, OpenOCD, st-flash/st-util; scripts/install.sh installs them) run for
real with no debug probe attached: each one's output must become the clear "no debug probe found"
error, so a tool whose wording changes is noticed here. The --dry-run commands are run too, to show
the tools accept their arguments (they fail at the probe, not at parsing), with a deliberately wrong
argument as the control that the check can fail."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from helpers_fw import (
    fw_fixture,  # noqa: F401  (registers the `fw` fixture)
    mcu,
)

from toolchain.cli import main
from toolchain.mcu.flashers import NoProbeError, failure, fill, resolve
from toolchain.mcu.manifest import McuBuild

TOOLS = ["pyocd", "openocd", "st-flash"]
NO_PROBE = ": connect the board or use --dry-run"


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolchain", *argv], capture_output=True, text=True, timeout=timeout
    )


def _tool(name: str):
    return next(t for t in mcu("stm32f4").flashers if t.name == name)


def _run(cmd: list[str]) -> tuple[str, int]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc.stdout + proc.stderr, proc.returncode


@pytest.mark.parametrize("tool", TOOLS)
def test_each_flasher_without_a_probe_is_a_clear_error(fw, tool):
    proc = _cli("flash", "--target", "stm32f4", "--build", str(fw("stm32f4")), "--tool", tool)
    assert proc.returncode == 2, proc.stderr
    assert f'error: no debug probe found ({tool}: "' in proc.stderr and NO_PROBE in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "model hash" in proc.stderr  # the image was identified before the tool ran


@pytest.mark.parametrize("tool", TOOLS)
def test_each_gdb_server_without_a_probe_is_a_clear_error(fw, tool):
    proc = _cli("flash", "--target", "stm32f4", "--build", str(fw("stm32f4")), "--via", "gdb", "--tool", tool)
    assert proc.returncode == 2, proc.stderr
    assert f'error: no debug probe found ({tool}: "' in proc.stderr and NO_PROBE in proc.stderr
    server = _tool(tool).gdb_server[0]
    assert f"$ {resolve(server)} " in proc.stderr  # the server really ran


@pytest.mark.parametrize("tool", TOOLS)
def test_dry_run_commands_pass_the_tools_argument_parsing(fw, capsys, tool):
    build = fw("stm32f4")
    assert main(["flash", "--target", "stm32f4", "--build", str(build), "--tool", tool, "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert "not installed" not in line
    cmd = fill(_tool(tool).command, McuBuild.open(build, "stm32f4"), None)
    assert shlex.split(line) == cmd  # what is printed is exactly what runs below
    output, status = _run(cmd)
    assert status != 0 and isinstance(failure(_tool(tool), output, status), NoProbeError), output
    # The control: the same command with an argument the tool does not know fails at parsing.
    bad = [cmd[0], "--tc-no-such-option", *cmd[1:]] if tool != "openocd" else [cmd[0], "-f", "tc/none.cfg"]
    output, status = _run(bad)
    assert status != 0 and "rejected its command line" in str(failure(_tool(tool), output, status)), output


def test_the_options_used_are_in_the_tools_help(fw):
    pyocd = resolve("pyocd")
    flash_help, _ = _run([pyocd, "flash", "--help"])
    assert "--no-wait" in flash_help and "--target" in flash_help
    server_help, _ = _run([pyocd, "gdbserver", "--help"])
    assert "--port" in server_help and "--no-wait" in server_help
    assert "--listen_port" in _run(["st-util", "--help"])[0]
    assert "--reset" in _run(["st-flash", "--help"])[0]
    assert "--file" in _run(["openocd", "--help"])[0] and "--command" in _run(["openocd", "--help"])[0]
    # OpenOCD reads the board file (and every file it includes) without touching a probe.
    output, status = _run(["openocd", "-f", "board/st_nucleo_f4.cfg", "-c", "shutdown"])
    assert status == 0 and "shutdown command invoked" in output


def test_a_tool_failing_otherwise_is_quoted(fw):
    err = failure(_tool("openocd"), "Info : clock speed 2000 kHz\nError: target voltage may be too low\n", 1)
    assert not isinstance(err, NoProbeError)
    assert "openocd failed with exit status 1" in str(err) and "target voltage may be too low" in str(err)
    err = failure(_tool("pyocd"), "LIBUSB_ERROR_ACCESS opening the probe", 1)
    assert "found a debug probe but may not open it" in str(err) and "udev" in str(err)
