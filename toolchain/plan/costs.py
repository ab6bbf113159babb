"""Cost inputs of the planner: link, wire format, device clock/IPC/power, tail time, each with its source.

Defaults come from data files (targets/plan/links.toml, targets/plan/devices.toml) and the target's
own file (clock, memory budget); CLI flags override them. Every number carries a `Sourced` record so
the output can say what it assumed. A number without a sourced default is asked for, never guessed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import ConfigError, ToolchainError
from toolchain.paths import PLAN_DATA_DIR
from toolchain.targets import Target, load_target

PLAN_DIR = PLAN_DATA_DIR
LINKS_FILE = PLAN_DIR / "links.toml"
DEVICES_FILE = PLAN_DIR / "devices.toml"
WIRES = ("serial", "kserve-binary")
STATUSES = ("definition", "derived", "measured", "verified", "unverified", "assumption", "user")
KINDS = ("table", "affine", "cyclic", "dense")


@dataclass(frozen=True)
class Sourced:
    """A number and where it comes from."""

    value: float
    status: str
    source: str

    @classmethod
    def user(cls, value: float, flag: str) -> Sourced:
        return cls(float(value), "user", f"command line {flag}")


@dataclass(frozen=True)
class Overrides:
    """CLI overrides; None keeps the default from the data files."""

    link: str = "uart-115200"
    wire: str | None = None
    bandwidth_bps: float | None = None
    rtt_ms: float | None = None
    energy_per_bit_nj: float | None = None
    tail_ms: float | None = None
    power_mw: float | None = None
    ipc: float | None = None
    clock_mhz: float | None = None
    links_file: Path | None = None
    devices_file: Path | None = None

    def check(self) -> None:
        rules = {
            "bandwidth_bps": ("--bandwidth", False),
            "rtt_ms": ("--rtt-ms", True),
            "energy_per_bit_nj": ("--energy-per-bit-nj", True),
            "tail_ms": ("--tail-ms", True),
            "power_mw": ("--power-mw", True),
            "ipc": ("--ipc", False),
            "clock_mhz": ("--clock-mhz", False),
        }
        for name, (flag, zero_ok) in rules.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
                need = "zero or positive" if zero_ok else "positive"
                raise ToolchainError(f"{flag} = {v:g} is not valid: it must be a finite, {need} number")
        if self.wire is not None and self.wire not in WIRES:
            raise ToolchainError(f"unknown wire format {self.wire!r}", hint=f"use one of: {', '.join(WIRES)}")


@dataclass(frozen=True)
class Costs:
    """Resolved cost inputs for one target and one link."""

    target: str
    core: str
    clock_hz: Sourced | None
    ipc: Sourced
    power_mw: Sourced | None
    link: str
    link_description: str
    wire: str
    bandwidth_bps: Sourced
    rtt_ms: Sourced
    energy_per_bit_nj: Sourced | None  # None: no power figure for the transfer
    tail_ms: Sourced
    wire_params: dict[str, Sourced]
    per_mac: dict[str, dict[str, Sourced]]  # dtype -> kind (+ "per_inference") -> instructions
    budget: dict[str, int] | None  # target [memory]: flash, ram, stack
    notes: list[str] = field(default_factory=list)

    def assumptions(self) -> list[dict[str, Any]]:
        """Every number used, with unit, status and source (the output prints this)."""
        rows: list[tuple[str, Sourced | None, str]] = [
            (f"{self.target} clock", self.clock_hz, "Hz"),
            ("instructions per cycle", self.ipc, ""),
            (f"{self.target} active power", self.power_mw, "mW"),
            (f"{self.link} uplink bandwidth", self.bandwidth_bps, "bit/s"),
            (f"{self.link} round trip", self.rtt_ms, "ms"),
            (f"{self.link} transfer energy", self.energy_per_bit_nj, "nJ/bit"),
            ("tail on the server", self.tail_ms, "ms"),
        ]
        rows += [(f"{self.wire} {k}", v, "B") for k, v in self.wire_params.items()]
        return [
            {"name": name, "value": s.value, "unit": unit, "status": s.status, "source": s.source}
            for name, s, unit in rows
            if s is not None
        ]


# ----------------------------------------------------------------------------------------------
# Data files
# ----------------------------------------------------------------------------------------------
def _read_toml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ToolchainError(f"{what} file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def sourced(value: Any, where: str) -> Sourced:
    """A {value, status, source} table from a data file, checked."""
    if not isinstance(value, dict) or set(value) != {"value", "status", "source"}:
        raise ConfigError(f"{where} must be a table {{value, status, source}}, got {value!r}")
    v, status, source = value["value"], value["status"], value["source"]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{where}.value = {v!r} must be a finite number >= 0")
    if status not in STATUSES:
        raise ConfigError(f"{where}.status = {status!r}", hint=f"use one of: {', '.join(STATUSES)}")
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}.source must say where the number comes from")
    return Sourced(float(v), status, source)


def load_links(path: Path | None = None) -> dict[str, Any]:
    path = path or LINKS_FILE
    data = _read_toml(path, "links")
    for key in ("server", "wire", "link"):
        if not isinstance(data.get(key), dict):
            raise ConfigError(f"{path}: missing table [{key}]")
    return data


def load_devices(path: Path | None = None) -> dict[str, Any]:
    path = path or DEVICES_FILE
    data = _read_toml(path, "devices")
    if "ipc" not in data or not isinstance(data.get("instructions_per_mac"), dict):
        raise ConfigError(f"{path}: needs ipc and [instructions_per_mac.<dtype>]")
    return data


def link_names(links: dict[str, Any]) -> list[str]:
    return sorted(links["link"])


# ----------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------
def _clock(target: Target, ov: Overrides) -> Sourced | None:
    if ov.clock_mhz is not None:
        return Sourced(ov.clock_mhz * 1e6, "user", "command line --clock-mhz")
    hz = target.section("cpu").get("clock_hz")
    if hz is None:
        return None
    return Sourced(float(hz), "definition", f"{target.path.name} [cpu] clock_hz")


def _budget(target: Target) -> dict[str, int] | None:
    mem = target.section("memory")
    if "flash" not in mem or "ram" not in mem:
        return None
    return {"flash": int(mem["flash"]), "ram": int(mem["ram"]), "stack": int(mem.get("stack", 0))}


def _link_value(spec: dict, key: str, name: str, override: float | None, flag: str) -> Sourced | None:
    if override is not None:
        return Sourced.user(override, flag)
    if key not in spec:
        return None
    return sourced(spec[key], f"link {name}: {key}")


def _energy_per_bit(
    spec: dict, name: str, ov: Overrides, bandwidth: Sourced, power: Sourced | None, notes: list[str]
) -> Sourced | None:
    """nJ per uplink bit: given, or (radio power [+ device power while awake]) / bandwidth."""
    given = _link_value(spec, "energy_per_bit_nj", name, ov.energy_per_bit_nj, "--energy-per-bit-nj")
    if given is not None:
        return given
    parts: list[str] = []
    used: list[Sourced] = [bandwidth]
    mw = 0.0
    if "tx_power_mw" in spec:
        tx = sourced(spec["tx_power_mw"], f"link {name}: tx_power_mw")
        mw += tx.value
        used.append(tx)
        parts.append(f"radio {tx.value:g} mW ({tx.source})")
    elif "alpha_mw_per_mbps" in spec:
        a = sourced(spec["alpha_mw_per_mbps"], f"link {name}: alpha_mw_per_mbps")
        b = sourced(spec["beta_mw"], f"link {name}: beta_mw")
        mw += a.value * bandwidth.value / 1e6 + b.value
        used += [a, b]
        parts.append(
            f"radio {a.value:g} mW/Mbps x {bandwidth.value / 1e6:g} Mbps + {b.value:g} mW ({a.source})"
        )
    if spec.get("awake_during_tx"):
        if power is None:  # resolve() already notes the missing device power
            return None
        mw += power.value
        used.append(power)
        parts.append(f"device awake {power.value:g} mW")
    if not parts:
        notes.append(f"link {name} has no transfer energy figure: pass --energy-per-bit-nj")
        return None
    # The result is only as trustworthy as its weakest input.
    weak = [w for w in ("unverified", "assumption", "user") if w in {u.status for u in used}]
    # mW / (bit/s) = mJ per bit; x 1e6 -> nJ per bit.
    per_bit = mw / bandwidth.value * 1e6
    return Sourced(
        per_bit, weak[0] if weak else "derived", " + ".join(parts) + f", / {bandwidth.value:,.0f} bit/s"
    )


def resolve(target_name: str, ov: Overrides) -> Costs:
    """Costs for a target and a link, defaults from the data files, overridden by `ov`."""
    ov.check()
    target = load_target(target_name)
    links = load_links(ov.links_file)
    devices = load_devices(ov.devices_file)
    if ov.link not in links["link"]:
        raise ToolchainError(
            f"unknown link {ov.link!r}",
            hint=f"valid links: {', '.join(link_names(links))} (see {ov.links_file or LINKS_FILE})",
        )
    spec = links["link"][ov.link]
    notes: list[str] = []
    wire = ov.wire or spec.get("wire", "serial")
    if wire not in WIRES:
        raise ConfigError(f"link {ov.link}: wire = {wire!r}", hint=f"use one of: {', '.join(WIRES)}")
    bandwidth = _link_value(spec, "bandwidth_bps", ov.link, ov.bandwidth_bps, "--bandwidth")
    if bandwidth is None or bandwidth.value <= 0:
        raise ToolchainError(
            f"link {ov.link} has no default uplink bandwidth (no sourced figure)",
            hint="pass the measured uplink payload rate, e.g. --bandwidth 2e6 (bit/s)",
        )
    rtt = _link_value(spec, "rtt_ms", ov.link, ov.rtt_ms, "--rtt-ms")
    if rtt is None:
        raise ToolchainError(
            f"link {ov.link} has no default round-trip time (no sourced figure)",
            hint="measure it (e.g. ping the server) and pass --rtt-ms",
        )
    power = None
    if ov.power_mw is not None:
        power = Sourced.user(ov.power_mw, "--power-mw")
    elif target.name in devices.get("power", {}):
        power = sourced(devices["power"][target.name].get("active_mw"), f"power.{target.name}.active_mw")
    else:
        notes.append(f"no active-power figure for target {target.name}: device energy needs --power-mw")
    tail = Sourced.user(ov.tail_ms, "--tail-ms") if ov.tail_ms is not None else None
    tail = tail or sourced(links["server"].get("tail_ms"), "server.tail_ms")
    wire_params = {k: sourced(v, f"wire.{wire}.{k}") for k, v in links["wire"].get(wire, {}).items()}
    per_mac = {
        dtype: {k: sourced(v, f"instructions_per_mac.{dtype}.{k}") for k, v in table.items()}
        for dtype, table in devices["instructions_per_mac"].items()
    }
    ipc = Sourced.user(ov.ipc, "--ipc") if ov.ipc is not None else sourced(devices["ipc"], "ipc")
    return Costs(
        target=target.name,
        core=str(target.section("cpu").get("core", target.kind)),
        clock_hz=_clock(target, ov),
        ipc=ipc,
        power_mw=power,
        link=ov.link,
        link_description=str(spec.get("description", "")),
        wire=wire,
        bandwidth_bps=bandwidth,
        rtt_ms=rtt,
        energy_per_bit_nj=_energy_per_bit(spec, ov.link, ov, bandwidth, power, notes),
        tail_ms=tail,
        wire_params=wire_params,
        per_mac=per_mac,
        budget=_budget(target),
        notes=notes,
    )
