"""Deployment targets as data: one TOML file per target in `targets/` (package data, see toolchain.paths).

Common keys (checked here): name, description, kind. Every other table is read by the builder for
that kind, e.g. [cpu], [memory], [firmware], [serial], [flasher], [emulator] for microcontrollers.
`cores.toml` beside them is the table of CPU cores that microcontroller targets name in [cpu] core.

This module is data only: the builder for each kind is registered in `toolchain.pipeline`, and
every builder has the signature of `Builder` below.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from toolchain.bundle import Bundle
from toolchain.dtypes import DType
from toolchain.errors import ConfigError, ToolchainError
from toolchain.paths import CORES_FILE, TARGETS_DIR


class TargetKind(StrEnum):
    MCU = "mcu"  # a microcontroller: C export + firmware (toolchain.mcu)
    LINUX = "linux"  # an edge board (Raspberry Pi): TFLite head + device runtime (toolchain.deploy.rpi)
    EDGETPU = "edgetpu"  # Coral: the linux bundle for the Edge TPU (toolchain.deploy.coral)
    SERVER = "server"  # the tail as a Triton model repository (toolchain.deploy.server)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: TargetKind
    path: Path
    data: dict[str, Any] = field(default_factory=dict)  # the whole file, for kind-specific tables

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value


@dataclass(frozen=True)
class BuildOptions:
    dtype: DType | None = None  # None = the target's default
    data_dir: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", DType.parse(self.dtype))


class Builder(Protocol):
    """Builds `bundle` for `target` into the (temporary, renamed on success) directory `out`, which
    already holds the bundle's copy in out/bundle; paths recorded in out must be relative to out."""

    def __call__(self, target: Target, bundle: Bundle, out: Path, options: BuildOptions) -> None: ...


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _load(path: Path) -> Target:
    data = _read_toml(path)
    for key in ("name", "description", "kind"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"{path}: missing string field {key!r}")
    if data["kind"] not in tuple(TargetKind):
        kinds = ", ".join(TargetKind)
        raise ConfigError(f"{path}: kind = {data['kind']!r}", hint=f"use one of: {kinds}")
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name {data['name']!r} must match the file name {path.stem!r}")
    return Target(data["name"], data["description"], TargetKind(data["kind"]), path, data)


def _target_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("*.toml")) if p.name != CORES_FILE.name]


def list_targets(directory: Path = TARGETS_DIR) -> list[Target]:
    return [_load(p) for p in _target_files(directory)]


def load_target(name: str, directory: Path = TARGETS_DIR) -> Target:
    path = directory / f"{name}.toml"
    if path not in _target_files(directory):
        names = [p.stem for p in _target_files(directory)]
        raise ToolchainError(
            f"unknown target {name!r}", hint=f"valid targets: {', '.join(names)} (see `toolchain targets`)"
        )
    return _load(path)


def load_cores(path: Path = CORES_FILE) -> dict[str, dict[str, Any]]:
    """The table of CPU cores (`cores.toml`): compiler flags, FPU, and the QEMU machine that runs it."""
    data = _read_toml(path)
    for name, core in data.items():
        if not isinstance(core, dict) or not isinstance(core.get("flags"), list):
            raise ConfigError(f"{path}: [{name}] needs flags = [...]")
    return data
