"""`flash`: put a build on its board, three ways (`via`).

- `boot` (emulated targets' default): QEMU boots the image itself (`-kernel`), or the host build runs
  behind a pty; nothing is written. The pyserial URL (or pty path) is printed; the board runs until
  Ctrl-C (or `seconds`) and never outlives the tool (PR_SET_PDEATHSIG, see toolchain.mcu.device).
- `tool` (real boards' default): the first installed flasher of the target's [[flasher.tools]] (or
  the one named with `tool`) runs; see toolchain.mcu.flashers.
- `gdb`: the image is loaded through a GDB server and checked (toolchain.mcu.gdb): a server given
  as HOST:PORT, or one started here: the emulated board itself (QEMU halted, blank, with its
  gdbstub), or the tool's GDB server for a real board (pyOCD, OpenOCD, st-util).

Every Cortex-M image is checked before anything is written (toolchain.mcu.elfcheck), and its model
hash (firmware.json) is printed; a board flashed through GDB here also answers HELLO with it.
`dry_run` prints the exact commands instead.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import MismatchError, ToolchainError
from toolchain.mcu.device import Device, qemu_command, start_device
from toolchain.mcu.elfcheck import ImageSummary, check_bin, check_image, span
from toolchain.mcu.flashers import (
    choose,
    fill,
    installed,
    not_installed_error,
    plan,
    run_tool,
    start_gdb_server,
)
from toolchain.mcu.gdb import QEMU_PROFILE, GdbProfile, batch_command, gdb_compare, gdb_flash, tool_profile
from toolchain.mcu.manifest import McuBuild
from toolchain.mcu.protocol import Link
from toolchain.mcu.target import McuTarget, mcu_target
from toolchain.targets import load_target

VIAS = ("boot", "tool", "gdb")
DRY_RUN_GDB_PORT = 3333  # what --dry-run prints where a free port would be picked


@dataclass(frozen=True)
class FlashOptions:
    target: str
    build: str | Path | None = None
    port: str | None = None  # serial port, for flashers that need one (Arduino)
    dry_run: bool = False
    tool: str | None = None
    seconds: float | None = None  # emulated boards: stop after this long (default: Ctrl-C)
    via: str | None = None  # boot | tool | gdb; default boot (emulated) or tool (real boards)
    gdb: str | None = None  # HOST:PORT of a running GDB server
    compare_only: bool = False  # via gdb: compare the board's memory with the image, write nothing
    quiet: bool = False


def check_and_describe(mcu: McuTarget, build: McuBuild, quiet: bool = False) -> ImageSummary | None:
    """Refuse an image that would not boot on `mcu` (Cortex-M boards); print what will be flashed."""
    summary = check_image(build.image("elf"), mcu) if mcu.board == "cortex_m" else None
    if not quiet:
        what = summary.describe() if summary else f"{build.dir.name}"
        print(f"image {what}; model hash {build.model_hash} ({build.dtype})", file=sys.stderr, flush=True)
    return summary


def _verify_hint(mcu: McuTarget, build: McuBuild, where: str) -> str:
    flag = "--url" if "://" in where else "--port"
    return f"verify with: toolchain verify --target {mcu.name} --build {build.dir} {flag} {where}"


def flash_board(mcu: McuTarget, build: McuBuild, opts: FlashOptions) -> int:
    """A real board with its native flasher."""
    p = plan(mcu, build, opts.port or ("PORT" if opts.dry_run else None), opts.tool)
    if any("{bin}" in part for part in p.tool.command):
        check_bin(build.image("bin"), build.image("elf"), mcu)
    if opts.dry_run:
        note = "" if p.installed else f"  # {p.tool.name} is not installed: {p.tool.install}"
        print(shlex.join(p.command) + note)
        return 0
    if not p.installed:
        raise not_installed_error(mcu, build, opts.port)
    run_tool(p.tool, p.command)
    print(f"flashed {mcu.name} with {p.tool.name}: model hash {build.model_hash}")
    print(_verify_hint(mcu, build, opts.port or "PORT"))
    return 0


def _run_until_stopped(mcu: McuTarget, dev: Device, seconds: float | None) -> None:
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
        print(_verify_hint(mcu, build, dev.url), flush=True)
        _run_until_stopped(mcu, dev, seconds)
    return 0


def confirm_hello(mcu: McuTarget, build: McuBuild, dev: Device) -> str:
    """Ask the freshly flashed board who it is; refuse unless it runs this build's model."""
    port = dev.open()
    try:
        info = Link(port, reply_timeout=mcu.reply_timeout_s).hello()
    finally:
        port.close()  # one client at a time on QEMU's serial socket: verify connects next
    if info.target != mcu.name or info.model_hash != build.model_hash:
        raise MismatchError(
            f"after flashing, {mcu.name} answers HELLO as {info.target!r} with model hash {info.model_hash}, "
            f"but the build has {build.model_hash}"
        )
    return info.model_hash


def _gdb_profile(mcu: McuTarget, tool: str | None) -> GdbProfile:
    return QEMU_PROFILE if mcu.emulated else tool_profile(choose(mcu, tool, gdb=True)[0])


def _server_tool(mcu: McuTarget, tool: str | None):
    """The tool whose GDB server is started for a real board: the one named, else the first installed."""
    tools = choose(mcu, tool, gdb=True)
    found = [t for t in tools if installed(t, gdb=True)]
    if not found:
        cmds = "; ".join(f"{t.name}: {t.install}" for t in tools)
        raise ToolchainError(f"no GDB server for {mcu.name} is installed ({cmds})", hint="install one")
    return found[0]


def _gdb_dry_run(mcu: McuTarget, build: McuBuild, opts: FlashOptions) -> int:
    elf = build.image("elf").resolve()
    address = opts.gdb or f"127.0.0.1:{DRY_RUN_GDB_PORT}"
    if opts.gdb is None and mcu.emulated:
        cmd = qemu_command(mcu, None, "tcp:127.0.0.1:4444,server=on,wait=off,nodelay=on")
        print(shlex.join([*cmd, "-gdb", f"tcp:{address}", "-S"]) + " &")
    elif opts.gdb is None:
        tool = choose(mcu, opts.tool, gdb=True)[0]
        print(shlex.join(fill(tool.gdb_server, build, None, DRY_RUN_GDB_PORT)) + " &")
    profile = _gdb_profile(mcu, opts.tool)
    print(shlex.join(batch_command(elf, address, profile, compare_only=opts.compare_only)))
    return 0


def _compare_only(mcu: McuTarget, build: McuBuild, address: str) -> int:
    sections, by = gdb_compare(build.image("elf"), address)
    listed = ", ".join(f"{s.name} {span(s.start, s.end)}" for s in sections)
    print(f"{mcu.name} at {address} holds {build.image('elf').name} (model hash {build.model_hash}): "
          f"compare-sections ({by}) matched {listed}")  # fmt: skip
    return 0


def flash_gdb(mcu: McuTarget, build: McuBuild, image: ImageSummary, opts: FlashOptions) -> int:
    """Load through a GDB server: the given one, a QEMU board started here, or the tool's server."""
    if opts.dry_run:
        return _gdb_dry_run(mcu, build, opts)
    elf = build.image("elf")
    if opts.gdb is not None:
        if opts.compare_only:
            return _compare_only(mcu, build, opts.gdb)
        result = gdb_flash(elf, opts.gdb, _gdb_profile(mcu, opts.tool), image, opts.quiet)
        print(f"flashed {mcu.name}: {result.describe()}; model hash {build.model_hash}")
        return 0
    if mcu.emulated:
        if opts.compare_only:
            raise ToolchainError(
                "--compare-only needs a board that holds an image: a QEMU board started here is blank",
                hint="pass --gdb HOST:PORT of a board flashed by `toolchain flash --via gdb` (it prints it)",
            )
        with start_device(mcu, build, gdb=True) as dev:
            assert dev.gdb_address is not None
            result = gdb_flash(elf, dev.gdb_address, QEMU_PROFILE, image, opts.quiet)
            print(f"flashed {mcu.name}: {result.describe()}", flush=True)
            print(f"HELLO: {mcu.name} runs model hash {confirm_hello(mcu, build, dev)} (= firmware.json)")
            print(
                f"{mcu.name} is running (pid {dev.pid}); serial: {dev.url}; gdb: {dev.gdb_address}",
                flush=True,
            )
            print(_verify_hint(mcu, build, dev.url), flush=True)
            _run_until_stopped(mcu, dev, opts.seconds)
        return 0
    tool = _server_tool(mcu, opts.tool)
    with start_gdb_server(tool, build) as address:
        if opts.compare_only:
            return _compare_only(mcu, build, address)
        result = gdb_flash(elf, address, tool_profile(tool), image, opts.quiet)
    print(f"flashed {mcu.name} through {tool.name}'s GDB server: {result.describe()}")
    print(f"model hash {build.model_hash}")
    print(_verify_hint(mcu, build, opts.port or "PORT"))
    return 0


def _via(mcu: McuTarget, opts: FlashOptions) -> str:
    via = opts.via or ("gdb" if opts.gdb or opts.compare_only else "boot" if mcu.emulated else "tool")
    if via not in VIAS:
        raise ToolchainError(f"unknown --via {via!r}", hint=f"use one of: {', '.join(VIAS)}")
    if via == "boot" and not mcu.emulated:
        raise ToolchainError(
            f"{mcu.name} is a physical board: it cannot be booted without writing its flash",
            hint="use --via tool (the default: pyOCD, OpenOCD, st-flash) or --via gdb",
        )
    if via == "tool" and mcu.emulated:
        raise ToolchainError(
            f"{mcu.name} is emulated: it has no flasher tool",
            hint="use --via boot (the default) or --via gdb",
        )
    if via == "gdb" and mcu.board != "cortex_m":
        raise ToolchainError(
            f"{mcu.name} is not a bare-metal Cortex-M board: it cannot be flashed through GDB"
        )
    if (opts.gdb or opts.compare_only) and via != "gdb":
        raise ToolchainError("--gdb and --compare-only go with --via gdb")
    return via


def flash(opts: FlashOptions) -> int:
    mcu = mcu_target(load_target(opts.target))
    build = McuBuild.open(opts.build, opts.target)
    via = _via(mcu, opts)
    image = check_and_describe(mcu, build, opts.quiet)
    if via == "boot":
        return boot_emulated(mcu, build, opts.dry_run, opts.seconds)
    if via == "tool":
        return flash_board(mcu, build, opts)
    assert image is not None
    return flash_gdb(mcu, build, image, opts)
