"""Node profiles: compute rate (or slowdown vs this host), power, links, energy per bit; each sourced.

Profiles live in targets/plan/nodes.toml (and may be added in a placement's [profile.NAME] tables),
with the {value, status, source} convention of targets/plan/ (toolchain.plan.costs.Sourced).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.errors import ConfigError
from toolchain.plan.costs import PLAN_DIR, Sourced, sourced

NODES_FILE = PLAN_DIR / "nodes.toml"
KINDS = ("device", "edge", "cloud")
PROFILE_KEYS = (
    "description",
    "kind",
    "macs_per_s",
    "slowdown",
    "active_power_w",
    "uplink_bps",
    "downlink_bps",
    "rtt_ms",
    "energy_per_bit_nj",
)


@dataclass(frozen=True)
class NodeProfile:
    name: str
    description: str
    kind: str
    macs_per_s: Sourced | None  # node time = MACs / rate ...
    slowdown: Sourced | None  # ... or = host busy time x slowdown
    active_power_w: Sourced
    uplink_bps: Sourced
    downlink_bps: Sourced
    rtt_ms: Sourced
    energy_per_bit_nj: Sourced

    def sourced_items(self) -> dict[str, Sourced]:
        keys = (
            "macs_per_s",
            "slowdown",
            "active_power_w",
            "uplink_bps",
            "downlink_bps",
            "rtt_ms",
            "energy_per_bit_nj",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"{what} file {path} does not exist",
            hint="see examples/placements/ for placements; docs/parallel.md for the format",
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def parse_profile(name: str, data: Any, where: str) -> NodeProfile:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = [k for k in data if k not in PROFILE_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}", hint=f"valid keys: {', '.join(PROFILE_KEYS)}"
        )
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind = {kind!r} is not valid", hint=f"use one of: {', '.join(KINDS)}")
    if ("macs_per_s" in data) == ("slowdown" in data):
        raise ConfigError(
            f"{where} needs exactly one of macs_per_s and slowdown",
            hint="macs_per_s: node time = MACs / rate; slowdown: node time = host busy time x slowdown",
        )
    values: dict[str, Sourced | None] = {}
    for key in PROFILE_KEYS[2:]:
        if key not in data:
            if key in ("macs_per_s", "slowdown"):
                values[key] = None
                continue
            raise ConfigError(f"{where} is missing {key}", hint="give it as {value, status, source}")
        values[key] = sourced(data[key], f"{where}.{key}")
        if key in ("macs_per_s", "slowdown", "uplink_bps", "downlink_bps") and values[key].value <= 0:
            raise ConfigError(f"{where}.{key}.value must be positive")
    return NodeProfile(name, str(data.get("description", "")), kind, **values)  # type: ignore[arg-type]


def load_profiles(path: Path | None = None) -> dict[str, NodeProfile]:
    path = path or NODES_FILE
    data = read_toml(path, "node profiles").get("profile", {})
    return {name: parse_profile(name, spec, f"{path.name}: profile.{name}") for name, spec in data.items()}
