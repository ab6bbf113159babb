"""Flash an image through a GDB server: QEMU's gdbstub, `pyocd gdbserver`, OpenOCD, st-util.

The sequence is the one an IDE or a CI job runs, over the GDB remote protocol (driven through GDB/MI,
see toolchain.mcu.gdbmi):

1. connect (`target remote HOST:PORT`) and halt the core (the server's monitor commands; QEMU is
   started halted with `-S`, so nothing is needed there);
2. `load`: GDB writes every loadable section at its load address (the server programs the flash);
3. `compare-sections`: every loaded section is compared with the board's memory. With a server that
   implements the `qCRC` packet (OpenOCD, pyOCD) GDB compares CRCs; QEMU's gdbstub (7.2) answers
   qCRC as unsupported and GDB then reads the memory back and compares bytes. A section that differs
   stops here: the board is left halted, never started on a broken image;
4. reset with the core halted, and read PC and SP: they must be the image's reset vector and initial
   stack pointer, i.e. the core really boots from what was written;
5. let it run (the server's monitor command, or `detach`, which resumes QEMU) and detach.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.elfcheck import ImageSummary, span
from toolchain.mcu.gdbmi import GdbError, GdbMi, MiResult, find_gdb, record_fields
from toolchain.mcu.target import FlasherTool
from toolchain.progress import Progress

CONNECT_TIMEOUT = 20.0
COMMAND_TIMEOUT = 60.0
LOAD_TIMEOUT = 600.0
_SECTION = re.compile(r"Section (\S+), range (0x[0-9a-fA-F]+) -- (0x[0-9a-fA-F]+): (matched|MIS-MATCHED)")


class FlashVerifyError(ToolchainError):
    """The board's memory does not hold the image."""


@dataclass(frozen=True)
class GdbProfile:
    """How to drive one kind of GDB server around `load` (monitor commands, run in order)."""

    name: str
    halt: tuple[str, ...]
    reset: tuple[str, ...]
    run: tuple[str, ...]


# QEMU's gdbstub forwards `monitor` to its human monitor: system_reset resets the machine, and the
# M-profile reset reads SP and PC from the vector table just written. The VM stays stopped until
# GDB detaches, which resumes it.
QEMU_PROFILE = GdbProfile("qemu", halt=(), reset=("monitor system_reset",), run=())


def tool_profile(tool: FlasherTool) -> GdbProfile:
    return GdbProfile(tool.name, tuple(tool.gdb_halt), tuple(tool.gdb_reset), tuple(tool.gdb_run))


@dataclass(frozen=True)
class SectionCheck:
    name: str
    start: int
    end: int  # exclusive
    matched: bool


@dataclass(frozen=True)
class GdbFlashResult:
    address: str
    load_size: int
    seconds: float
    sections: tuple[SectionCheck, ...]
    compared_by: str  # "qCRC" or "read-back"
    pc: int
    sp: int

    def describe(self) -> str:
        rate = self.load_size / self.seconds / 1024 if self.seconds > 0 else 0.0
        names = ", ".join(f"{s.name} {span(s.start, s.end)}" for s in self.sections)
        return (
            f"loaded {self.load_size:,} B through GDB at {self.address} in {self.seconds:.1f} s "
            f"({rate:,.1f} KiB/s); compare-sections ({self.compared_by}) matched {names}; "
            f"after reset PC 0x{self.pc:08x}, SP 0x{self.sp:08x}"
        )


def parse_compare(text: str) -> list[SectionCheck]:
    """The per-section lines of GDB's `compare-sections`."""
    return [
        SectionCheck(m[1], int(m[2], 16), int(m[3], 16), m[4] == "matched") for m in _SECTION.finditer(text)
    ]


def _check(result: MiResult, what: str, gdb: GdbMi) -> MiResult:
    if result.cls == "error":
        msg = result.fields.get("msg") or result.text or gdb.tail()
        raise GdbError(f"{what} failed: {msg}")
    return result


def _connect(gdb: GdbMi, address: str) -> None:
    # auto-retry off: a refused connection is an error at once, not after connect-timeout.
    for setting in ("confirm off", "pagination off", "remotetimeout 20", "tcp auto-retry off"):
        gdb.console(f"set {setting}")
    result = gdb.run(f"-target-select remote {address}", CONNECT_TIMEOUT)
    if result.cls == "error":
        raise GdbError(
            f"cannot connect to the GDB server at {address}: {result.fields.get('msg', result.text)}",
            hint="start the GDB server first (`pyocd gdbserver`, `openocd`, QEMU -gdb) and pass its "
            "HOST:PORT with --gdb, or leave out --gdb to let the toolchain start it",
        )


def _monitor(gdb: GdbMi, commands: tuple[str, ...], profile: GdbProfile) -> None:
    for cmd in commands:
        result = gdb.console(cmd, COMMAND_TIMEOUT)
        if result.cls == "error":
            raise GdbError(
                f"the {profile.name} GDB server refused `{cmd}`: {result.fields.get('msg', result.text)}",
                hint="the server's monitor commands are gdb_halt/gdb_reset/gdb_run of the flasher in the "
                "target file; with --gdb, name the server's kind with --tool",
            )


def _load(gdb: GdbMi, image: ImageSummary, quiet: bool) -> tuple[int, float]:
    """`load` with a progress bar from GDB's +download records; (bytes loaded, seconds)."""
    start = time.monotonic()
    with Progress(image.flash_bytes, "load", quiet=quiet) as progress:

        def on_record(line: str) -> None:
            sent = record_fields(line).get("total-sent")
            if line.startswith("+download") and sent is not None:
                progress.update(min(int(sent), image.flash_bytes) - progress.count)

        result = _check(gdb.run("-target-download", LOAD_TIMEOUT, on_record), "load", gdb)
        progress.update(image.flash_bytes - progress.count)
    return int(result.fields.get("load-size", "0")), time.monotonic() - start


def _compare(gdb: GdbMi, elf: Path) -> tuple[list[SectionCheck], str]:
    """compare-sections: per section, whether the board's memory matches; and how it was compared."""
    gdb.console("set debug remote 1")  # the packet log says whether the server answered qCRC
    result = _check(gdb.console("compare-sections", LOAD_TIMEOUT), "compare-sections", gdb)
    gdb.console("set debug remote 0")
    sections = parse_compare(result.text)
    log = "\n".join(result.log)
    by = "read-back" if "qCRC" in log and "is NOT supported" in log else "qCRC"
    if not sections:
        raise GdbError(f"compare-sections reported no section of {elf.name}:\n{result.text[-800:]}")
    return sections, by


def _mismatch(
    sections: list[SectionCheck], by: str, elf: Path, address: str, after_load: bool
) -> FlashVerifyError | None:
    """FlashVerifyError naming every section that differs, or None."""
    bad = [s for s in sections if not s.matched]
    if not bad:
        return None
    listed = ", ".join(f"{s.name} ({span(s.start, s.end)})" for s in bad)
    when = "after loading it" if after_load else "(nothing was written)"
    return FlashVerifyError(
        f"the board's memory does not match {elf.name} {when}: compare-sections ({by}) found "
        f"{listed} MIS-MATCHED, through GDB at {address}",
        hint="the toolchain did not reset or start the board; check that the flash is not "
        "write-protected and flash again"
        if after_load
        else "the board holds another image, or the image file changed since it was flashed",
    )


def _registers(gdb: GdbMi) -> tuple[int, int]:
    gdb.console("maintenance flush register-cache")
    values = []
    for reg in ("$pc", "$sp"):
        result = _check(
            gdb.run(f'-data-evaluate-expression "(unsigned int){reg}"', COMMAND_TIMEOUT), reg, gdb
        )
        values.append(int(result.fields.get("value", "-1"), 0))
    return values[0], values[1]


def gdb_flash(
    elf: Path, address: str, profile: GdbProfile, image: ImageSummary, quiet: bool = False
) -> GdbFlashResult:
    """Load `elf` through the GDB server at `address`, check it, boot it (see the module doc)."""
    with GdbMi(elf) as gdb:
        _connect(gdb, address)
        _monitor(gdb, profile.halt, profile)
        size, seconds = _load(gdb, image, quiet)
        if size != image.flash_bytes:
            raise GdbError(f"GDB loaded {size:,} bytes, but {elf.name} has {image.flash_bytes:,} to load")
        sections, by = _compare(gdb, elf)
        error = _mismatch(sections, by, elf, address, after_load=True)
        if error is not None:
            raise error  # before any reset: the board is not started on what does not match
        _monitor(gdb, profile.reset, profile)
        pc, sp = _registers(gdb)
        if pc != image.reset_vector & ~1 or sp != image.initial_sp:
            raise FlashVerifyError(
                f"after reset the core is at PC 0x{pc:08x}, SP 0x{sp:08x}, not at the image's reset "
                f"vector 0x{image.reset_vector & ~1:08x} and stack 0x{image.initial_sp:08x}: the board "
                "does not boot from the flash just written",
                hint="check the boot configuration (BOOT0 pin, boot from main flash) and the server's "
                "reset command",
            )
        _monitor(gdb, profile.run, profile)
        _check(gdb.run("-target-detach", COMMAND_TIMEOUT), "detach", gdb)
    return GdbFlashResult(address, size, seconds, tuple(sections), by, pc, sp)


def gdb_compare(elf: Path, address: str) -> tuple[list[SectionCheck], str]:
    """Compare the board's memory with `elf` without writing anything. Connecting halts the core;
    detaching lets it run on as before, whatever the comparison found."""
    with GdbMi(elf) as gdb:
        _connect(gdb, address)
        sections, by = _compare(gdb, elf)
        _check(gdb.run("-target-detach", COMMAND_TIMEOUT), "detach", gdb)
    error = _mismatch(sections, by, elf, address, after_load=False)
    if error is not None:
        raise error
    return sections, by


def batch_command(
    elf: Path, address: str, profile: GdbProfile, gdb: str | None = None, compare_only: bool = False
) -> list[str]:
    """The one-shot GDB command line doing the same steps (printed by --dry-run)."""
    if compare_only:
        steps = [f"target remote {address}", "compare-sections", "detach"]
    else:
        steps = [f"target remote {address}", *profile.halt, "load", "compare-sections", *profile.reset]
        steps += [*profile.run, "detach"]
    cmd = [gdb or find_gdb(), "-batch", "-nx"]
    for step in steps:
        cmd += ["-ex", step]
    return [*cmd, str(elf)]
