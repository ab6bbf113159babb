"""`flash`: put a build on its board.

Emulated targets (QEMU, host build) have nothing to write: the board is booted with the image and
the pyserial URL (or pty path) to use is printed; it runs until Ctrl-C (or `seconds`), and never
outlives the tool (PR_SET_PDEATHSIG, see toolchain.mcu.device). Real boards run the first installed
flasher of the target's [[flasher.tools]] list (or the one named with `tool`); when none is
installed the error lists the exact install and run commands. `dry_run` prints the exact command.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.device import qemu_command, start_device
from toolchain.mcu.manifest import McuBuild
from toolchain.mcu.target import FlasherTool, McuTarget, mcu_target
from toolchain.targets import load_target

PLACEHOLDERS = ("elf", "bin", "hex", "sketch", "platformio")


@dataclass(frozen=True)
class FlashPlan:
    tool: FlasherTool
    command: list[str]
    installed: bool


def _fill(tool: FlasherTool, build: McuBuild, port: str | None) -> list[str]:
    if tool.needs_port and not port:
        raise ToolchainError(
            f"{tool.name} needs the board's serial port: pass --port",
            hint="e.g. --port /dev/ttyACM0 (`python -m serial.tools.list_ports` lists ports)",
        )
    out = []
    for part in tool.command:
        for key in PLACEHOLDERS:
            if "{" + key + "}" in part:
                part = part.replace("{" + key + "}", str(build.image(key).resolve()))
        out.append(part.replace("{port}", port or ""))
    return out


def plan(mcu: McuTarget, build: McuBuild, port: str | None, tool: str | None = None) -> FlashPlan:
    """Which flasher runs, with which exact command line."""
    tools = mcu.flashers
    if not tools:
        raise ToolchainError(f"target {mcu.name} has no flasher configured ([[flasher.tools]])")
    if tool is not None:
        chosen = [t for t in tools if t.name == tool]
        if not chosen:
            raise ToolchainError(
                f"target {mcu.name} has no flasher {tool!r}",
                hint=f"choose one of: {', '.join(t.name for t in tools)}",
            )
        tools = chosen
    for t in tools:
        if shutil.which(t.command[0]):
            return FlashPlan(t, _fill(t, build, port), True)
    t = tools[0]
    return FlashPlan(t, _fill(t, build, port), False)


def not_installed_error(mcu: McuTarget, build: McuBuild, port: str | None) -> ToolchainError:
    lines = []
    for t in mcu.flashers:
        cmd = shlex.join(_fill(t, build, port or "PORT"))
        lines.append(f"  {t.name}: install with `{t.install}`, then run: {cmd}")
    return ToolchainError(
        f"no flasher for {mcu.name} is installed; any one of these works:\n" + "\n".join(lines),
        hint="install one and run `toolchain flash` again (or run the command above yourself)",
    )


def flash_board(mcu: McuTarget, build: McuBuild, port: str | None, dry_run: bool, tool: str | None) -> int:
    p = plan(mcu, build, port or ("PORT" if dry_run else None), tool)
    if dry_run:
        note = "" if p.installed else f"  # {p.tool.name} is not installed: {p.tool.install}"
        print(shlex.join(p.command) + note)
        return 0
    if not p.installed:
        raise not_installed_error(mcu, build, port)
    print(f"$ {shlex.join(p.command)}", file=sys.stderr, flush=True)
    rc = subprocess.run(p.command, check=False).returncode
    if rc != 0:
        raise ToolchainError(
            f"{p.tool.name} failed with exit status {rc}",
            hint="check the USB cable, that the board is powered and not held by a debugger session",
        )
    print(f"flashed {mcu.name}; verify with:")
    print(f"  toolchain verify --target {mcu.name} --build {build.dir} --port PORT")
    return 0


def boot_emulated(mcu: McuTarget, build: McuBuild, dry_run: bool, seconds: float | None) -> int:
    if dry_run:
        if mcu.emulator_kind == "pty":
            print(f"{build.image('exe').resolve()}  # stdin/stdout on the master side of a pty")
        else:
            chardev = "tcp:127.0.0.1:4444,server=on,wait=on,nodelay=on"
            print(shlex.join(qemu_command(mcu, build.image("elf").resolve(), chardev)))
        return 0
    with start_device(mcu, build) as dev:
        print(f"{mcu.name} is running (pid {dev.pid}); serial: {dev.url}", flush=True)
        print(
            f"verify with: toolchain verify --target {mcu.name} --build {build.dir} --url {dev.url}"
            if "://" in dev.url
            else f"verify with: toolchain verify --target {mcu.name} --build {build.dir} --port {dev.url}",
            flush=True,
        )
        print("stop with Ctrl-C", file=sys.stderr, flush=True)
        end = None if seconds is None else time.monotonic() + seconds
        try:
            while dev.alive() and (end is None or time.monotonic() < end):
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        if not dev.alive():
            raise ToolchainError(f"{mcu.name} exited with status {dev.proc.returncode}:\n{dev.log_tail()}")
    print(f"{mcu.name} stopped", file=sys.stderr)
    return 0


def flash(
    target: str,
    build: str | Path | None = None,
    port: str | None = None,
    dry_run: bool = False,
    tool: str | None = None,
    seconds: float | None = None,
) -> int:
    mcu = mcu_target(load_target(target))
    opened = McuBuild.open(build, target)
    if mcu.emulated:
        return boot_emulated(mcu, opened, dry_run, seconds)
    return flash_board(mcu, opened, port, dry_run, tool)
