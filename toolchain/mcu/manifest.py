"""manifest.json of an mcu build directory: what was built, for which target, from which model.

Paths inside are relative to the build directory (which is renamed into place after the build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError
from toolchain.fsutil import read_versioned_json

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "toolchain-mcu-build"
MANIFEST_VERSION = 1


def load_manifest(build_dir: str | Path) -> dict[str, Any]:
    return read_versioned_json(
        Path(build_dir) / MANIFEST,
        MANIFEST_FORMAT,
        MANIFEST_VERSION,
        what="a microcontroller build manifest (flash and verify work on builds of kind mcu)",
        missing=f"{build_dir} is not a firmware build directory (no {MANIFEST})",
        missing_hint="build one with `toolchain build --target T` (default directory build/<target>)",
    )


def check_target(manifest: dict[str, Any], build_dir: Path, target: str) -> None:
    built_for = manifest.get("target")
    if built_for != target:
        raise ToolchainError(
            f"{build_dir} holds firmware for target {built_for!r}, not {target!r}",
            hint=f"pass --target {built_for}, or build for {target} with `toolchain build --target {target}`",
        )


def image_path(build_dir: str | Path, kind: str) -> Path:
    """The build's image of `kind` (elf, bin, hex, exe, sketch, platformio), checked to exist."""
    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    rel = manifest.get("images", {}).get(kind)
    if rel is None:
        have = ", ".join(sorted(manifest.get("images", {}))) or "none"
        raise ToolchainError(
            f"{build_dir} has no {kind} image (it has: {have})",
            hint=f"rebuild with `toolchain build --target {manifest.get('target')}`",
        )
    path = build_dir / rel
    if not path.exists():
        raise ToolchainError(f"{path} is missing from the build directory", hint="rebuild it")
    return path
