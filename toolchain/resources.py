"""Memory the machine can give: checked before large allocations, so an oversized project is a clear
error in a second instead of a MemoryError (or the OOM killer) after minutes of swapping."""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import ToolchainError

GIB = 1 << 30


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """cgroup v2 limit minus usage (containers, CI runners); None when unlimited or not cgroup v2."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None when the OS does not say."""
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(known) if known else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require_memory(need: int, what: str, hint: str) -> None:
    """Raise a ToolchainError when `need` bytes (an estimate) exceed the memory available now."""
    have = available_memory()
    if have is not None and need > have:
        raise ToolchainError(
            f"{what} needs about {human_bytes(need)} of memory, but only {human_bytes(have)} is available",
            hint=hint,
        )
