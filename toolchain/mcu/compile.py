"""Compile and link the rendered firmware (Cortex-M cross build or native host build), make the
images, and turn a linker region overflow into an error that names the overflow in bytes."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.mcu.target import McuTarget

_OVERFLOW = re.compile(r"region [`'\"]?(\w+)[`'\"]? overflowed by (\d+) bytes")
INSTALL_HINTS = {
    "arm-none-eabi-gcc": "sudo apt-get install --no-install-recommends gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi",
    "gcc": "sudo apt-get install gcc",
}


class BudgetError(ToolchainError):
    """The firmware does not fit the target's flash or RAM budget."""


@dataclass
class CompileResult:
    images: dict[str, str]  # kind -> path relative to the build directory
    elf: Path | None  # the linked ELF to measure (None for the host build)
    commands: list[list[str]] = field(default_factory=list)  # run in firmware/src
    compiler_version: str = ""


def require_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(
            f"{tool} is not installed", hint=INSTALL_HINTS.get(tool, f"install {tool} and put it on PATH")
        )
    return path


def compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def overflow_error(mcu: McuTarget, stderr: str) -> BudgetError | None:
    found = {m.group(1).upper(): int(m.group(2)) for m in _OVERFLOW.finditer(stderr)}
    if not found:
        return None
    budgets = {"FLASH": ("flash", mcu.flash), "RAM": ("ram", mcu.ram)}
    parts = []
    for region, over in sorted(found.items()):
        key, budget = budgets.get(region, (region.lower(), None))
        parts.append(
            f"{region} overflowed by {over} bytes (budget {budget} bytes, [memory] {key} of "
            f"{mcu.target.path.name})"
        )
    return BudgetError(
        f"the firmware for {mcu.name} does not fit: " + "; ".join(parts),
        hint="use a smaller network (fewer neurons, lower out-degrees), int8 instead of float32, "
        "a smaller [memory] stack, or a target with more memory",
    )


def compile_cortex_m(mcu: McuTarget, src: Path, files: list[str], out: Path) -> CompileResult:
    require_tool(mcu.cc)
    rel = Path("..") / ".."  # src is out/firmware/src
    cmd = [
        mcu.cc,
        *mcu.cpu_flags,
        *mcu.cflags,
        "-I.",
        *files,
        *mcu.ldflags,
        "-L.",
        "-T",
        Path(mcu.linker_script or "sections.ld").name,
        f"-Wl,-Map={rel / 'firmware.map'}",
        "-o",
        str(rel / "firmware.elf"),
    ]
    proc = _run(cmd, src)  # cwd = src: the linker script's INCLUDE memory.ld resolves there first
    if proc.returncode != 0:
        err = overflow_error(mcu, proc.stderr)
        if err is not None:
            raise err
        raise ToolchainError(f"compiling the firmware for {mcu.name} failed:\n{proc.stderr.strip()}")
    commands = [cmd]
    images = {"elf": "firmware.elf", "map": "firmware.map"}
    objcopy_formats = {"bin": "binary", "hex": "ihex"}
    for kind in mcu.images:
        if kind in objcopy_formats:
            objcopy = require_tool(mcu.objcopy or "arm-none-eabi-objcopy")
            oc = [Path(objcopy).name, "-O", objcopy_formats[kind], str(rel / "firmware.elf")]
            oc.append(str(rel / f"firmware.{kind}"))
            proc = _run(oc, src)
            if proc.returncode != 0:
                raise ToolchainError(f"{' '.join(oc)} failed: {proc.stderr.strip()}")
            commands.append(oc)
            images[kind] = f"firmware.{kind}"
    return CompileResult(images, out / "firmware.elf", commands, compiler_version(mcu.cc))


def compile_host(mcu: McuTarget, src: Path, files: list[str], out: Path) -> CompileResult:
    require_tool(mcu.cc)
    cmd = [mcu.cc, *mcu.cpu_flags, *mcu.cflags, "-I.", *files, *mcu.ldflags, "-o", "../../firmware_host"]
    proc = _run(cmd, src)
    if proc.returncode != 0:
        raise ToolchainError(f"compiling the host firmware failed:\n{proc.stderr.strip()}")
    return CompileResult({"exe": "firmware_host"}, None, [cmd], compiler_version(mcu.cc))
