"""The microcontroller tables of a target file (targets/<name>.toml, kind = "mcu"), checked once.

[cpu]       core (a row of targets/cores.toml, which gives the compiler architecture flags; a
            target may override them with flags), fpu, clock_hz, dtypes, default_dtype
[compiler]  cc, size, objcopy, ar, cflags, ldflags
[memory]    flash_origin, flash, ram_origin, ram, stack (bytes; absent for the host build)
[firmware]  board (cortex_m | host | arduino), sources and include_dirs (relative to
            firmware_templates/), linker_script, images, [firmware.defines]
[serial]    baud, interbyte_timeout_ms, reply_timeout_s
[emulator]  command and serial_args with {elf}/{chardev} (QEMU), or kind = "pty" (host build);
            counter = "icount" | "host_ns"; drops_early_bytes
[flasher]   [[flasher.tools]] name, command (with {elf} {bin} {hex} {port} {sketch} {platformio}),
            install, needs_port
[arduino]   fqbn, core, platformio_platform, platformio_board
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolchain.dtypes import DType
from toolchain.errors import ConfigError
from toolchain.targets import Target, load_cores

BOARDS = ("cortex_m", "host", "arduino")


@dataclass(frozen=True)
class FlasherTool:
    name: str
    command: list[str]
    install: str
    needs_port: bool = False


@dataclass(frozen=True)
class McuTarget:
    target: Target
    board: str
    core: str
    cpu_flags: list[str]
    fpu: str
    clock_hz: int
    dtypes: list[DType]
    default_dtype: DType
    cc: str
    size_tool: str | None
    objcopy: str | None
    ar: str | None
    cflags: list[str]
    ldflags: list[str]
    flash: int | None
    ram: int | None
    flash_origin: int
    ram_origin: int
    stack: int
    sources: list[str]
    include_dirs: list[str]
    linker_script: str | None
    images: list[str]
    defines: dict[str, str]
    baud: int
    interbyte_timeout_ms: int
    reply_timeout_s: float
    emulator: dict[str, Any]
    flashers: list[FlasherTool]
    arduino: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def emulated(self) -> bool:
        return bool(self.emulator)

    @property
    def emulator_kind(self) -> str | None:
        if not self.emulator:
            return None
        return str(self.emulator.get("kind", "qemu"))


def _typed(t: Target, section: str, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    sec = t.section(section)
    if key not in sec:
        if default is ...:
            raise ConfigError(f"{t.path}: missing {section}.{key}")
        return default
    value = sec[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{t.path}: {section}.{key} has the wrong type ({value!r})")
    return value


def _str_list(t: Target, section: str, key: str, default: Any = ...) -> list[str]:
    value = _typed(t, section, key, list, default)
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{t.path}: {section}.{key} must be a list of strings")
    return list(value)


def _flashers(t: Target) -> list[FlasherTool]:
    tools = t.section("flasher").get("tools", [])
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not {"name", "command", "install"} <= set(tool):
            raise ConfigError(f"{t.path}: [[flasher.tools]] entry {i + 1} needs name, command and install")
        out.append(
            FlasherTool(
                str(tool["name"]),
                [str(c) for c in tool["command"]],
                str(tool["install"]),
                bool(tool.get("needs_port", False)),
            )
        )
    return out


def _cpu_flags(t: Target) -> list[str]:
    """[cpu] flags when the target gives them, else those of its core in targets/cores.toml."""
    if "flags" in t.section("cpu"):
        return _str_list(t, "cpu", "flags")
    core = _typed(t, "cpu", "core", str)
    cores = load_cores()
    if core not in cores:
        raise ConfigError(
            f"{t.path}: cpu.core = {core!r} is not in targets/cores.toml and [cpu] gives no flags",
            hint=f"use one of: {', '.join(cores)}, or add flags = [...] to [cpu]",
        )
    return [str(f) for f in cores[core]["flags"]]


def mcu_target(t: Target) -> McuTarget:
    """Parse and check the microcontroller tables of `t` (ConfigError names the bad key)."""
    if t.kind != "mcu":
        raise ConfigError(f"target {t.name!r} is of kind {t.kind!r}, not a microcontroller (mcu)")
    board = _typed(t, "firmware", "board", str)
    if board not in BOARDS:
        raise ConfigError(f"{t.path}: firmware.board = {board!r}", hint=f"use one of: {', '.join(BOARDS)}")
    dtypes = _str_list(t, "cpu", "dtypes")
    default_dtype = _typed(t, "cpu", "default_dtype", str)
    if default_dtype not in dtypes or not set(dtypes) <= set(DType):
        raise ConfigError(f"{t.path}: cpu.dtypes must be int8/float32 and include cpu.default_dtype")
    defines = t.section("firmware").get("defines", {})
    if not isinstance(defines, dict):
        raise ConfigError(f"{t.path}: [firmware.defines] must be a table")
    mem = t.section("memory")
    flash = _typed(t, "memory", "flash", int, None)
    ram = _typed(t, "memory", "ram", int, None)
    if board == "cortex_m" and (flash is None or ram is None or "flash_origin" not in mem):
        raise ConfigError(f"{t.path}: a cortex_m board needs memory.flash_origin, flash, ram_origin, ram")
    emulator = t.section("emulator")
    if emulator and emulator.get("kind", "qemu") == "qemu":
        _str_list(t, "emulator", "command")
        _str_list(t, "emulator", "serial_args")
    return McuTarget(
        target=t,
        board=board,
        core=_typed(t, "cpu", "core", str),
        cpu_flags=_cpu_flags(t),
        fpu=_typed(t, "cpu", "fpu", str, "none"),
        clock_hz=_typed(t, "cpu", "clock_hz", int, 0),
        dtypes=[DType(d) for d in dtypes],
        default_dtype=DType(default_dtype),
        cc=_typed(t, "compiler", "cc", str),
        size_tool=_typed(t, "compiler", "size", str, None),
        objcopy=_typed(t, "compiler", "objcopy", str, None),
        ar=_typed(t, "compiler", "ar", str, None),
        cflags=_str_list(t, "compiler", "cflags"),
        ldflags=_str_list(t, "compiler", "ldflags", []),
        flash=flash,
        ram=ram,
        flash_origin=_typed(t, "memory", "flash_origin", int, 0),
        ram_origin=_typed(t, "memory", "ram_origin", int, 0),
        stack=_typed(t, "memory", "stack", int, 4096),
        sources=_str_list(t, "firmware", "sources", []),
        include_dirs=_str_list(t, "firmware", "include_dirs", []),
        linker_script=_typed(t, "firmware", "linker_script", str, None),
        images=_str_list(t, "firmware", "images"),
        defines={str(k): str(v) for k, v in defines.items()},
        baud=_typed(t, "serial", "baud", int, 115200),
        interbyte_timeout_ms=_typed(t, "serial", "interbyte_timeout_ms", int, 250),
        reply_timeout_s=_typed(t, "serial", "reply_timeout_s", float, 5.0),
        emulator=dict(emulator),
        flashers=_flashers(t),
        arduino=dict(t.section("arduino")),
    )
