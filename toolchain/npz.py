"""Reading `.npz` archives from files nobody vouched for: only the named members, each checked
(shape, dtype, size) before its data is read, never a pickle.

`np.load(...)[name]` for every member would decompress whatever the archive holds: a 200 kB file
can declare gigabytes. Here a member's `.npy` header is read first and must match what the caller
expects; members nobody asked for are never decompressed.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import ToolchainError


@dataclass(frozen=True)
class Expect:
    """What one member must be: its shape, and the kind of its dtype ('f' float, 'i'/'u' integer)."""

    shape: tuple[int, ...]
    kinds: str = "f"


def _header(fh, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
        raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise ToolchainError(f"{where} is not a NumPy array ({exc})") from None


def read_member(zf: zipfile.ZipFile, name: str, expect: Expect, where: str) -> np.ndarray:
    """The member `name` (without `.npy`), refused unless it has exactly `expect`'s shape and kind."""
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise ToolchainError(f"{where}: missing") from None
    with zf.open(info) as fh:
        shape, fortran, dtype = _header(fh, where)
        if dtype.hasobject:
            raise ToolchainError(f"{where} holds Python objects (a pickle): refusing to load it")
        if dtype.kind not in expect.kinds or dtype.itemsize > 8:
            raise ToolchainError(f"{where} has dtype {dtype}, expected a {_kind_name(expect.kinds)} array")
        if tuple(shape) != tuple(expect.shape):
            raise ToolchainError(f"{where} has shape {list(shape)}, expected {list(expect.shape)}")
        count = int(np.prod(shape, dtype=np.int64))
        data = fh.read(count * dtype.itemsize)  # bounded by the expected shape, whatever follows
    if len(data) != count * dtype.itemsize:
        raise ToolchainError(f"{where} is truncated ({len(data)} of {count * dtype.itemsize} bytes)")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_npz(path: Path, expected: Mapping[str, Expect]) -> dict[str, np.ndarray]:
    """Exactly the `expected` members of the archive at `path` (others are ignored, never read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {name: read_member(zf, name, e, f"{path}: {name}") for name, e in expected.items()}
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise ToolchainError(f"{path}: not a readable .npz archive ({exc or type(exc).__name__})") from None
    except (OSError, ValueError, zlib.error) as exc:  # bad compression data, unreadable file
        raise ToolchainError(f"{path}: corrupt .npz archive ({exc})") from None


def _kind_name(kinds: str) -> str:
    return "floating-point" if kinds == "f" else "integer"
