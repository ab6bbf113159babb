"""Deployment targets as data: one TOML file per target in `targets/`.

Common keys (checked here): name, description, kind. Every other table is read by the builder for
that kind, e.g. [cpu], [memory], [firmware], [serial], [flasher], [emulator] for microcontrollers.
A builder is found by kind in BUILDERS and called as `build(target, bundle, out, options)`.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import ConfigError, ToolchainError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_root() -> Path:
    """The checkout (editable install) or <prefix>/share/toolchain (wheel install, see pyproject)."""
    if (REPO_ROOT / "targets").is_dir():
        return REPO_ROOT
    return Path(sys.prefix) / "share" / "toolchain"


TARGETS_DIR = _data_root() / "targets"
FIRMWARE_DIR = _data_root() / "firmware_templates"

KINDS = ("mcu", "linux", "edgetpu", "server")

# kind -> "module:function" building that kind of target (imported only when used).
BUILDERS: dict[str, str] = {
    "mcu": "toolchain.mcu.builder:build",
    "linux": "toolchain.deploy.rpi:build",
    "edgetpu": "toolchain.deploy.coral:build",
    "server": "toolchain.deploy.server:build",
}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: str
    path: Path
    data: dict[str, Any] = field(default_factory=dict)  # the whole file, for kind-specific tables

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value

    def require(self, section: str, key: str) -> Any:
        sec = self.section(section)
        if key not in sec:
            raise ConfigError(f"{self.path}: missing {section}.{key}")
        return sec[key]


def _load(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for key in ("name", "description", "kind"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"{path}: missing string field {key!r}")
    if data["kind"] not in KINDS:
        raise ConfigError(f"{path}: kind = {data['kind']!r}", hint=f"use one of: {', '.join(KINDS)}")
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name {data['name']!r} must match the file name {path.stem!r}")
    return Target(data["name"], data["description"], data["kind"], path, data)


def list_targets(directory: Path = TARGETS_DIR) -> list[Target]:
    return [_load(p) for p in sorted(directory.glob("*.toml"))]


def load_target(name: str, directory: Path = TARGETS_DIR) -> Target:
    path = directory / f"{name}.toml"
    if not path.is_file():
        names = [p.stem for p in sorted(directory.glob("*.toml"))]
        raise ToolchainError(
            f"unknown target {name!r}", hint=f"valid targets: {', '.join(names)} (see `toolchain targets`)"
        )
    return _load(path)


def builder_for(target: Target):
    module, func = BUILDERS[target.kind].split(":")
    return getattr(importlib.import_module(module), func)
