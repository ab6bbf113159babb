"""The installed flashers of a real board (pyOCD, OpenOCD, st-flash, arduino-cli, PlatformIO), run for
real, and the GDB servers some of them provide.

Each tool is a [[flasher.tools]] entry of the target file: its exact command line, how to install it,
what it prints when no debug probe is attached (`no_probe`), and optionally its GDB server. A tool's
output is passed through to the terminal while it runs (it shows its own progress) and kept: when the
tool fails, a `no_probe` line becomes "no debug probe found (...)", anything else is quoted.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.device import child_dies_with_parent
from toolchain.mcu.manifest import McuBuild
from toolchain.mcu.target import FlasherTool, McuTarget

PLACEHOLDERS = ("elf", "bin", "hex", "sketch", "platformio")
FLASH_TIMEOUT = 600.0
SERVER_START_TIMEOUT = 30.0
# libusb's words for a probe that is there but may not be opened by this user.
NO_PERMISSION = ("LIBUSB_ERROR_ACCESS", "Permission denied", "insufficient permissions")
# getopt's, argparse's, st-flash's and OpenOCD's (Tcl) words for a command line they reject. Checked
# first: st-util, for one, warns about a bad option and then goes on to look for a probe.
BAD_ARGUMENTS = (
    "unrecognized option",
    "unrecognized arguments",
    "invalid option",
    "invalid command line",
    "invalid command name",
    "Can't find",
)


class NoProbeError(ToolchainError):
    """The flasher ran and found no debug probe."""


@dataclass(frozen=True)
class FlashPlan:
    tool: FlasherTool
    command: list[str]
    installed: bool


def resolve(exe: str) -> str | None:
    """How to run `exe`: its name when it is on PATH, else its path in this Python environment's
    scripts directory (pyOCD installed with the toolchain into a venv that is not on PATH), else None."""
    if shutil.which(exe):
        return exe
    return shutil.which(exe, path=sysconfig.get_path("scripts"))


def fill(command: list[str], build: McuBuild, port: str | None, gdb_port: int | None = None) -> list[str]:
    """The command with its program resolved and the build's image paths, the serial port and the GDB
    port filled in."""
    out = [resolve(command[0]) or command[0]]
    command = command[1:]
    for part in command:
        for key in PLACEHOLDERS:
            if "{" + key + "}" in part:
                part = part.replace("{" + key + "}", str(build.image(key).resolve()))
        part = part.replace("{port}", port or "")
        out.append(part.replace("{gdb_port}", str(gdb_port)) if gdb_port is not None else part)
    return out


def _fill_tool(tool: FlasherTool, build: McuBuild, port: str | None) -> list[str]:
    if tool.needs_port and not port:
        raise ToolchainError(
            f"{tool.name} needs the board's serial port: pass --port",
            hint="e.g. --port /dev/ttyACM0 (`python -m serial.tools.list_ports` lists ports)",
        )
    return fill(tool.command, build, port)


def choose(mcu: McuTarget, tool: str | None, gdb: bool = False) -> list[FlasherTool]:
    """The target's tools to try, in order: the one named, else all (with a GDB server if gdb)."""
    tools = [t for t in mcu.flashers if t.gdb_server or not gdb]
    what = "GDB server" if gdb else "flasher"
    if not tools:
        raise ToolchainError(f"target {mcu.name} has no {what} configured ([[flasher.tools]])")
    if tool is None:
        return tools
    chosen = [t for t in tools if t.name == tool]
    if not chosen:
        raise ToolchainError(
            f"target {mcu.name} has no {what} {tool!r}",
            hint=f"choose one of: {', '.join(t.name for t in tools)}",
        )
    return chosen


def plan(mcu: McuTarget, build: McuBuild, port: str | None, tool: str | None = None) -> FlashPlan:
    """Which flasher runs (the first installed one, or the one named), with which exact command."""
    tools = choose(mcu, tool)
    for t in tools:
        if installed(t):
            return FlashPlan(t, _fill_tool(t, build, port), True)
    return FlashPlan(tools[0], _fill_tool(tools[0], build, port), False)


def not_installed_error(mcu: McuTarget, build: McuBuild, port: str | None) -> ToolchainError:
    lines = []
    for t in mcu.flashers:
        cmd = shlex.join(_fill_tool(t, build, port or "PORT"))
        lines.append(f"  {t.name}: install with `{t.install}`, then run: {cmd}")
    return ToolchainError(
        f"no flasher for {mcu.name} is installed; any one of these works:\n" + "\n".join(lines),
        hint="install one and run `toolchain flash` again (or run the command above yourself)",
    )


def failure(tool: FlasherTool, output: str, status: int | None) -> ToolchainError:
    """What a failed run of `tool` means, from its output."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in lines:
        if any(pattern in line for pattern in BAD_ARGUMENTS):
            return ToolchainError(
                f'{tool.name} rejected its command line ("{line}")',
                hint=f"the command comes from [[flasher.tools]] {tool.name} of the target file; check it "
                f"against `{tool.command[0]} --help` (installed version changed?)",
            )
    for line in lines:
        if any(pattern in line for pattern in tool.no_probe):
            return NoProbeError(
                f'no debug probe found ({tool.name}: "{line}"): connect the board or use --dry-run',
                hint="plug in the board's debug USB port (the ST-LINK on a NUCLEO); --dry-run prints the "
                "command without running it",
            )
    for line in lines:
        if any(pattern in line for pattern in NO_PERMISSION):
            return ToolchainError(
                f'{tool.name} found a debug probe but may not open it ("{line}")',
                hint="install the probe's udev rules (Debian's openocd and stlink-tools ship them) and "
                "re-plug it, or add yourself to the plugdev group",
            )
    tail = "\n".join(f"  {ln}" for ln in lines[-8:])
    how = "was stopped" if status is None else f"failed with exit status {status}"
    return ToolchainError(
        f"{tool.name} {how}:\n{tail}",
        hint="check the USB cable, that the board is powered and not held by a debugger session",
    )


def run_tool(tool: FlasherTool, command: list[str], timeout: float = FLASH_TIMEOUT) -> None:
    """Run a flasher, its output passed through to stderr; raise what its failure means."""
    print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=child_dies_with_parent()
        )
    except OSError as exc:
        raise ToolchainError(f"cannot run {command[0]}: {exc.strerror}", hint=tool.install) from None
    chunks: list[bytes] = []

    def pump() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            chunks.append(chunk)
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ToolchainError(f"{tool.name} did not finish within {timeout:.0f} s (stopped)") from None
    finally:
        reader.join(5)
    if status != 0:
        raise failure(tool, b"".join(chunks).decode(errors="replace"), status)


def free_port() -> int:
    """A TCP port nothing listens on now. The tools take a port number, not a socket, so a race with
    another program is possible; start_gdb_server notices it (the server exits) and says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether some process listens on TCP `port` (from /proc/net/tcp*: no connection is made, which
    matters: pyOCD's GDB server exits after its first client disconnects)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(t.exists() for t in tables):  # not Linux: probe by binding (EADDRINUSE = taken)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return True
            return False
    want = f":{port:04X}"
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":  # 0A = LISTEN
                    return True
    return False


@contextlib.contextmanager
def start_gdb_server(tool: FlasherTool, build: McuBuild) -> Iterator[str]:
    """Run the tool's GDB server on a free port; yield its HOST:PORT; stop it afterwards."""
    port = free_port()
    command = fill(tool.gdb_server, build, None, gdb_port=port)
    if not installed(tool, gdb=True):
        raise ToolchainError(f"{command[0]} ({tool.name}'s GDB server) is not installed", hint=tool.install)
    print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=child_dies_with_parent(),
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while not listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    status = proc.poll()
                    log.seek(0)
                    raise failure(tool, log.read().decode(errors="replace"), status)
                time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def installed(tool: FlasherTool, gdb: bool = False) -> bool:
    """Whether the tool's program (or its GDB server's) can be run."""
    return resolve((tool.gdb_server if gdb else tool.command)[0]) is not None
