"""firmware.json of a microcontroller build directory, opened once as a `McuBuild`: what was built, for
which target, from which model, and where its images are.

Paths inside are relative to the build directory (which is renamed into place after the build). Edge
and server builds describe themselves in manifest.json instead (toolchain.edge.manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.fsutil import read_versioned_json
from toolchain.paths import default_build_dir

MANIFEST = "firmware.json"
MANIFEST_FORMAT = "toolchain-mcu-build"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class McuBuild:
    dir: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, build_dir: str | Path | None, target: str) -> McuBuild:
        """The build of `target` in `build_dir` (default build/<target>); refuses another target's."""
        d = Path(build_dir) if build_dir is not None else default_build_dir(target)
        manifest = read_versioned_json(
            d / MANIFEST,
            MANIFEST_FORMAT,
            MANIFEST_VERSION,
            what="a microcontroller build manifest (flash and verify work on builds of kind mcu)",
            missing=f"{d} is not a firmware build directory (no {MANIFEST})",
            missing_hint="build one with `toolchain build --target T` (default directory build/<target>)",
        )
        built_for = manifest.get("target")
        if built_for != target:
            raise ToolchainError(
                f"{d} holds firmware for target {built_for!r}, not {target!r}",
                hint=f"pass --target {built_for}, or build for {target} with "
                f"`toolchain build --target {target}`",
            )
        return cls(d, manifest)

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    @property
    def model_hash(self) -> str:
        return str(self.manifest["model"]["hash"])

    @property
    def dtype(self) -> DType:
        return DType(self.manifest["model"]["dtype"])

    @property
    def export_dir(self) -> Path:
        return self.dir / self.manifest["model"]["dir"]

    @property
    def bundle_dir(self) -> Path:
        return self.dir / self.manifest["model"].get("bundle", "bundle")

    def image(self, kind: str) -> Path:
        """The build's image of `kind` (elf, bin, hex, exe, sketch, platformio), checked to exist."""
        images = self.manifest.get("images", {})
        rel = images.get(kind)
        if rel is None:
            raise ToolchainError(
                f"{self.dir} has no {kind} image (it has: {', '.join(sorted(images)) or 'none'})",
                hint=f"rebuild with `toolchain build --target {self.target}`",
            )
        path = self.dir / rel
        if not path.exists():
            raise ToolchainError(f"{path} is missing from the build directory", hint="rebuild it")
        return path
