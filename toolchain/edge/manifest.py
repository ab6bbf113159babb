"""manifest.json of an edge build (rpi, coral, server targets): what the device and server need.

Written by toolchain/deploy/*.py on the host, read by the edge runtime and the tail server. All paths
are relative to the build directory. Standard library only (the device reads it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError

MANIFEST = "manifest.json"
FORMAT = "toolchain-edge-manifest"
VERSION = 1
# Files of a bundle that determine the model (metrics and plots do not).
_MODEL_FILES = ("config.toml", "weights.npz", "connectivity.npz")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bundle_sha256(bundle_dir: str | Path) -> str:
    """One hash for the trained model: SHA-256 over the hashes of its config, weights and connectivity."""
    h = hashlib.sha256()
    for name in _MODEL_FILES:
        h.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(Path(bundle_dir) / name)))
    return h.hexdigest()


class ManifestError(ToolchainError):
    """A build directory has no usable manifest.json."""


def load_manifest(build_dir: str | Path) -> dict[str, Any]:
    build_dir = Path(build_dir)
    path = build_dir / MANIFEST
    if not path.is_file():
        raise ManifestError(
            f"{build_dir} has no {MANIFEST}",
            hint="pass a build directory made by `toolchain build --target rpi|coral|server --bundle DIR`",
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if data.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a toolchain edge manifest (format {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise ManifestError(
            f"{path}: manifest version {data.get('version')!r} is not supported (expected {VERSION})",
            hint="rebuild with this toolchain version",
        )
    return data


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
