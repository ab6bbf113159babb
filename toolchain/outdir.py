"""What an `--out DIR` may replace: nothing but a directory the toolchain itself wrote, or an empty one.

Every artifact directory (bundle, build, C export) gets a marker file, `.toolchain-artifact.json`,
listing the files the toolchain wrote into it. An existing `--out` is replaced only when it is empty,
or when it carries the marker and holds nothing the marker does not list. A directory written by an
older toolchain (no marker) is recognised by its own descriptor (bundle.json, firmware.json,
manifest.json, model.json with the toolchain's format name). Anything else (a folder holding
`notes.txt`, a home directory, the current directory) is refused with a message, unless the caller
passes `force` (`--force` on the command line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.errors import ToolchainError

MARKER = ".toolchain-artifact.json"
MARKER_FORMAT = "toolchain-artifact"
MARKER_VERSION = 1
# Descriptors of artifacts written before the marker existed: file name -> its `format` value.
# (Strings, not imports: this foundation module must not import the stages that define them.)
LEGACY_DESCRIPTORS = {
    "bundle.json": "toolchain-bundle",
    "firmware.json": "toolchain-mcu-build",
    "manifest.json": "toolchain-edge-manifest",
    "model.json": "toolchain-c-export",
}
_MAX_MARKER_BYTES = 4 << 20  # a marker lists file names; anything larger is not ours
_SHOW = 3  # foreign entries named in a refusal


def output_path(path: str | Path) -> Path:
    """The absolute path an `--out` names, refusing the current directory and its ancestors.

    The toolchain replaces an output directory as a whole by renaming, which cannot work for the
    directory a process (this one, or the user's shell) is in.
    """
    raw = Path(path)
    if raw.is_symlink() and not raw.exists():
        raise ToolchainError(
            f"--out {raw} is a symbolic link to {os.readlink(raw)}, which does not exist",
            hint="remove the link or choose another output directory",
        )
    out = raw.resolve()
    cwd = Path.cwd().resolve()
    if cwd == out or cwd.is_relative_to(out):
        what = "the current directory" if cwd == out else f"a parent of the current directory ({cwd})"
        raise ToolchainError(
            f"--out {path} is {what}: the toolchain replaces its output directory as a whole",
            hint="name a new subdirectory instead, e.g. --out bundle or --out build/mytarget",
        )
    return out


def _read_marker(directory: Path) -> dict[str, Any] | None:
    path = directory / MARKER
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_MARKER_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return data


def _legacy_kind(directory: Path) -> str | None:
    for name, fmt in LEGACY_DESCRIPTORS.items():
        path = directory / name
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size < _MAX_MARKER_BYTES:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == fmt:
                    return fmt
        except (OSError, ValueError, RecursionError):
            continue
    return None


def tree_entries(directory: Path) -> list[str]:
    """Every entry below `directory` (files, links, empty directories) as POSIX relative paths."""
    out = []

    def fail(exc: OSError) -> None:
        raise exc  # an unreadable subdirectory must not look empty

    for root, dirs, files in os.walk(directory, onerror=fail):  # never follows links to directories
        rel = Path(root).relative_to(directory)
        out += [(rel / f).as_posix() for f in files]
        out += [(rel / d).as_posix() + "/" for d in dirs if (Path(root) / d).is_symlink()]
        if not dirs and not files and root != str(directory):
            out.append(rel.as_posix() + "/")
    return sorted(out)


def _refuse(path: Path, why: str) -> ToolchainError:
    return ToolchainError(
        f"--out {path} {why}; refusing to delete it",
        hint="choose a new or empty directory, or pass --force to replace it and everything in it",
    )


def check_replaceable(path: Path, force: bool = False) -> None:
    """Raise unless `path` is absent, an empty directory, or an artifact the toolchain wrote."""
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise ToolchainError(f"--out {path} exists and is not a directory", hint="choose another --out")
    if force:
        return
    try:
        entries = tree_entries(path)
    except OSError as exc:
        raise ToolchainError(f"--out {path} cannot be read: {exc.strerror}") from None
    if not entries:
        return
    marker = _read_marker(path)
    if marker is None:
        if _legacy_kind(path) is not None:
            return
        shown = ", ".join(entries[:_SHOW]) + (
            f" and {len(entries) - _SHOW} more" if len(entries) > _SHOW else ""
        )
        raise _refuse(path, f"is a non-empty directory the toolchain did not write (it holds {shown})")
    listed = set(marker["files"]) | {MARKER}
    foreign = [e for e in entries if e not in listed]
    if foreign:
        shown = ", ".join(foreign[:_SHOW]) + (
            f" and {len(foreign) - _SHOW} more" if len(foreign) > _SHOW else ""
        )
        raise _refuse(path, f"was written by the toolchain but now also holds {shown}")


def write_marker(directory: Path, kind: str) -> None:
    """List everything in `directory` (a finished artifact, before it is renamed into place)."""
    entries = [e for e in tree_entries(directory) if e != MARKER]
    data = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "kind": kind,
        "toolchain_version": __version__,
        "files": entries,
    }
    (directory / MARKER).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def register_file(path: Path) -> None:
    """Add `path` to the marker of its directory, if that directory is a toolchain artifact
    (e.g. verify.json written into a build directory), so a later rebuild may replace it."""
    directory = path.parent
    marker = _read_marker(directory)
    if marker is None or path.name in marker["files"]:
        return
    marker["files"] = sorted([*marker["files"], path.name])
    tmp = directory / f".{MARKER}.tmp"
    try:
        tmp.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, directory / MARKER)
    except OSError:
        tmp.unlink(missing_ok=True)  # the file itself is written; a later rebuild will just ask
