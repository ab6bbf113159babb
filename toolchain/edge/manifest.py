"""manifest.json of an edge build (rpi, coral, server targets): what the device and server need.

Written by toolchain/deploy/*.py on the host, read by the edge runtime and the tail server. All paths
are relative to the build directory. Standard library only (the device reads it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError
from toolchain.fsutil import file_sha256, read_versioned_json

MANIFEST = "manifest.json"
FORMAT = "toolchain-edge-manifest"
VERSION = 1


class ManifestError(ToolchainError):
    """A build directory has no usable manifest.json."""


def load_manifest(build_dir: str | Path) -> dict[str, Any]:
    return read_versioned_json(
        Path(build_dir) / MANIFEST,
        FORMAT,
        VERSION,
        what="a toolchain edge manifest",
        missing=f"{build_dir} has no {MANIFEST}",
        missing_hint="pass a build directory made by `toolchain build --target rpi|coral|server`",
        error=ManifestError,
    )


def resolve(build_dir: str | Path, rel: str, expect_sha256: str | None = None) -> Path:
    """A file named by the manifest; checks that it exists and (optionally) is unmodified."""
    path = Path(build_dir) / rel
    if not path.is_file():
        raise ManifestError(f"{path} is listed in {MANIFEST} but missing", hint="rebuild the target")
    if expect_sha256 is not None and file_sha256(path) != expect_sha256:
        raise ManifestError(
            f"{path} does not match the SHA-256 recorded in {MANIFEST} (modified or from another build)",
            hint="rebuild the target instead of mixing files from different builds",
        )
    return path
