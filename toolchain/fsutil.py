"""Atomic file and directory writes: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolchain.errors import ToolchainError


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ensure_parent_writable(path: Path) -> None:
    """Fail early, before long work, when `path` could not be written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolchainError(
            f"output directory {parent} cannot be created: {exc.strerror}",
            hint="choose an output location you can write to",
        ) from None
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ToolchainError(
            f"output directory {parent} is not writable",
            hint="choose an output location you can write to (e.g. --out ./build)",
        )


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    ensure_parent_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path`, on error it vanishes.

    An existing directory at `path` is swapped out only after the new one is complete, so a failed
    run never destroys the previous artifacts.
    """
    path = Path(path)
    ensure_parent_writable(path)
    if path.exists() and not path.is_dir():
        raise ToolchainError(f"{path} exists and is not a directory", hint="choose another --out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should look like a normal mkdir
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_versioned_json(
    path: Path,
    fmt: str,
    version: int,
    *,
    what: str,
    missing: str,
    missing_hint: str,
    error: type[ToolchainError] = ToolchainError,
) -> dict[str, Any]:
    """Read an artifact's JSON descriptor and check its `format` name and `version`."""
    if not path.is_file():
        raise error(missing, hint=missing_hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != fmt:
        raise error(f"{path}: not {what} (format {found!r}, expected {fmt!r})")
    if data.get("version") != version:
        raise error(
            f"{path}: {what} version {data.get('version')!r} is not supported "
            f"(this toolchain reads version {version})",
            hint="rebuild it with this toolchain version, or use the toolchain version that wrote it",
        )
    return data
