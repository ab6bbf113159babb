"""Training energy of a local trial, with a label saying how it was obtained.

Measured where the machine allows it: RAPL package counters (`/sys/class/powercap/intel-rapl*`,
readable on bare-metal Intel and recent AMD Linux hosts), times this process's share of the busy CPU
time over the interval (`/proc/stat`), so other jobs on a shared machine are not charged to a trial.
Otherwise estimated: this process's CPU seconds (all its threads) × a per-thread power, taken from
codecarbon's CPU database (TDP of the detected CPU / its logical CPUs, codecarbon's own convention),
or codecarbon's default per thread when the CPU is not in its database, or given by the user.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class PowerModel:
    method: str  # "rapl" | "cpu-seconds"
    watts_per_thread: float | None  # cpu-seconds: the power of one busy logical CPU
    label: str  # printed beside every figure: measured / estimated, and from what

    def energy_j(self, cpu_s: float, rapl_j: float | None = None) -> float:
        if self.method == "rapl" and rapl_j is not None:
            return rapl_j
        assert self.watts_per_thread is not None
        return cpu_s * self.watts_per_thread


def rapl_domains(root: Path = RAPL_ROOT) -> list[Path]:
    """Readable package-level RAPL energy counters (`intel-rapl:N/energy_uj` named package-*)."""
    out = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue  # sub-domains (core, uncore, dram) are inside a package's total
        try:
            name = (d / "name").read_text().strip()
            int((d / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        if name.startswith("package"):
            out.append(d)
    return out


def read_rapl_uj(domains: list[Path]) -> list[tuple[int, int]]:
    """(energy_uj, max_energy_range_uj) per domain."""
    out = []
    for d in domains:
        rng = d / "max_energy_range_uj"
        out.append((int((d / "energy_uj").read_text()), int(rng.read_text()) if rng.exists() else 2**64))
    return out


def rapl_delta_j(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> float:
    """Joules between two readings; a counter that wrapped adds its range back."""
    total = 0
    for (e0, _), (e1, rng) in zip(before, after, strict=True):
        total += e1 - e0 if e1 >= e0 else e1 + rng - e0
    return total / 1e6


def machine_busy_s(stat: Path = Path("/proc/stat")) -> float:
    """CPU seconds every CPU of the machine spent busy (not idle or waiting for I/O) since boot."""
    fields = stat.read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in fields]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already inside user/nice: count user..steal only
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class RaplMeter:
    """Energy of this process between two calls: RAPL package joules × its share of busy CPU time."""

    def __init__(self, domains: list[Path]) -> None:
        self.domains = domains
        self._mark()

    def _mark(self) -> None:
        self.uj = read_rapl_uj(self.domains)
        self.busy = machine_busy_s()
        self.cpu = time.process_time()

    def lap_j(self) -> float:
        uj, busy, cpu = read_rapl_uj(self.domains), machine_busy_s(), time.process_time()
        joules = rapl_delta_j(self.uj, uj)
        share = min(1.0, (cpu - self.cpu) / (busy - self.busy)) if busy > self.busy else 1.0
        self.uj, self.busy, self.cpu = uj, busy, cpu
        return joules * share


def codecarbon_watts_per_thread() -> tuple[float, str]:
    """Per-thread power from codecarbon's CPU database (offline: it reads a table it ships)."""
    import codecarbon
    from codecarbon.core import cpu as cc_cpu
    from codecarbon.core.util import count_cpus

    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it warns about unknown CPU models
    tdp = cc_cpu.TDP()
    threads = max(1, int(count_cpus()))
    known = tdp.model and tdp._get_cpu_power_from_registry(tdp.model)
    if known:
        return float(known) / threads, (
            f"codecarbon {codecarbon.__version__} CPU database: {tdp.model} TDP {float(known):g} W "
            f"/ {threads} logical CPUs"
        )
    w = float(cc_cpu.DEFAULT_POWER_PER_CORE)
    return w, (
        f"codecarbon {codecarbon.__version__} default {w:g} W per thread: the CPU {tdp.model or 'model'!r} "
        "is not in its TDP database"
    )


def power_model(watts_per_thread: float | None = None, rapl_root: Path = RAPL_ROOT) -> PowerModel:
    """RAPL when readable (and no override), else CPU seconds × a labelled per-thread power."""
    if watts_per_thread is not None:
        return PowerModel(
            "cpu-seconds",
            watts_per_thread,
            f"estimated: CPU seconds x {watts_per_thread:g} W per thread (given with --watts-per-thread)",
        )
    if rapl_domains(rapl_root):
        return PowerModel(
            "rapl",
            None,
            "measured: RAPL package energy x this process's share of busy CPU time (/proc/stat)",
        )
    w, source = codecarbon_watts_per_thread()
    return PowerModel(
        "cpu-seconds", w, f"estimated: CPU seconds x {w:g} W per thread ({source}; no RAPL here)"
    )
