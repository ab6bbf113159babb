"""Atomic file and directory writes: an artifact is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolchain import outdir
from toolchain.errors import ToolchainError

MAX_DESCRIPTOR_BYTES = 16 << 20  # bundle.json, firmware.json, manifest.json: a few kB in practice


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _unwritable(directory: Path, exc: OSError) -> ToolchainError:
    return ToolchainError(
        f"output directory {directory} is not writable: {exc.strerror or exc}",
        hint="choose an output location you can write to (e.g. --out ./build)",
    )


def ensure_parent_writable(path: Path) -> None:
    """Fail early, before long work, when `path` could not be written.

    Creates the parent directories, then really creates (and removes) a file there: permission bits
    and os.access() say nothing for root, read-only mounts or pseudo file systems such as /sys."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolchainError(
            f"output directory {parent} cannot be created: {exc.strerror or exc}",
            hint="choose an output location you can write to",
        ) from None
    if not parent.is_dir():
        raise ToolchainError(f"output directory {parent} is not a directory", hint="choose another output")
    try:
        fd, probe = tempfile.mkstemp(prefix=".toolchain-probe.", dir=parent)
    except OSError as exc:
        raise _unwritable(parent, exc) from None
    os.close(fd)
    os.unlink(probe)


def prepare_output_dir(path: str | Path, force: bool = False) -> Path:
    """Check an `--out` directory before long work: a path atomic_directory() may replace
    (toolchain.outdir), in a writable parent. Returns the absolute path."""
    out = outdir.output_path(path)
    outdir.check_replaceable(out, force)
    ensure_parent_writable(out)
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None
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
    outdir.register_file(path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: JSON has no NaN (Python writes the
    non-standard token `NaN`, which other readers reject), and null says "not a finite number"."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path, kind: str = "artifact", force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path`, on error it vanishes.

    `path` may already exist only as an empty directory or an artifact the toolchain wrote
    (toolchain.outdir; `force` skips that check). It is swapped out only after the new directory is
    complete, so a failed or interrupted run never destroys the previous artifacts. The finished
    directory carries a marker listing its files (`kind`: bundle, build, c-export).
    """
    path = prepare_output_dir(path, force)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should look like a normal mkdir
    try:
        yield tmp
        outdir.write_marker(tmp, kind)
        outdir.check_replaceable(path, force)  # again: someone may have used it during the work
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(path):
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the regular files and directories below `src` to `dst` (which must not exist).

    Symbolic links are refused, not followed: a link inside a bundle could otherwise pull any file
    or directory of this machine into a build directory, and from there onto a device image or a
    server. Devices, sockets and FIFOs are refused too (reading a FIFO would block forever).
    """
    src, dst = Path(src), Path(dst)
    dst.mkdir()
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        here = Path(entry.path)
        if entry.is_symlink():
            raise _link_error(here, src)
        if entry.is_dir(follow_symlinks=False):
            copy_tree(here, dst / entry.name)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(here, dst / entry.name, follow_symlinks=False)
        else:
            raise ToolchainError(
                f"{here} is not a regular file (a device, socket or FIFO): refusing to copy it",
                hint=f"remove it from {src}",
            )


def _link_error(link: Path, root: Path) -> ToolchainError:
    target = os.readlink(link)
    try:
        resolved = link.resolve(strict=True)
    except RuntimeError:
        why = f"a symbolic link that loops ({target})"
    except OSError:
        why = f"a dangling symbolic link (to {target}, which does not exist)"
    else:
        inside = resolved.is_relative_to(root.resolve())
        why = f"a symbolic link to {resolved}" + ("" if inside else f", outside {root}")
    return ToolchainError(
        f"{link} is {why}: the toolchain copies only regular files and refuses links",
        hint="replace the link with a copy of the file it points to, or remove it",
    )


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
    if path.stat().st_size > MAX_DESCRIPTOR_BYTES:
        raise error(f"{path}: {path.stat().st_size:,} bytes is too large for {what} descriptor")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read (not {what})") from None
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
