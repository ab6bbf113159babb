"""Datasets: IDX reader, data-directory resolution, verified downloads into a cache, fixed splits.

A data directory holds one folder per dataset, named like the dataset (`mnist/`, `fashion-mnist/`),
each with the four IDX files, gzip-compressed or raw. Checksums are SHA-256 over the *decompressed*
IDX bytes, so a re-compressed copy of the same data verifies too.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import struct
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import DataError
from toolchain.fsutil import atomic_write_bytes

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class IdxFile:
    name: str  # stem, e.g. "train-images-idx3-ubyte"
    shape: tuple[int, ...]
    sha256: str  # of the decompressed bytes


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mirrors: tuple[str, ...]
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    n_classes: int = 10

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.train_images.shape[1:]))


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        train_images=IdxFile(
            "train-images-idx3-ubyte",
            (60000, 28, 28),
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        train_labels=IdxFile(
            "train-labels-idx1-ubyte",
            (60000,),
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        test_images=IdxFile(
            "t10k-images-idx3-ubyte",
            (10000, 28, 28),
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        test_labels=IdxFile(
            "t10k-labels-idx1-ubyte",
            (10000,),
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        train_images=IdxFile(
            "train-images-idx3-ubyte",
            (60000, 28, 28),
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        train_labels=IdxFile(
            "train-labels-idx1-ubyte",
            (60000,),
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        test_images=IdxFile(
            "t10k-images-idx3-ubyte",
            (10000, 28, 28),
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        test_labels=IdxFile(
            "t10k-labels-idx1-ubyte",
            (10000,),
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}", hint=f"valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


# ----------------------------------------------------------------------------------------------
# IDX parsing
# ----------------------------------------------------------------------------------------------
def parse_idx(raw: bytes, source: str, expect_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Parse an IDX (unsigned byte) file; check magic, dimension count, sizes and length."""
    if len(raw) < 4:
        raise DataError(f"{source}: file is truncated ({len(raw)} bytes, no IDX header)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _IDX_UBYTE or ndim < 1:
        raise DataError(
            f"{source}: not an unsigned-byte IDX file (magic {raw[:4].hex()}, expected 0000 08 0N)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: file is truncated inside the IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if expect_shape is not None and tuple(dims) != tuple(expect_shape):
        raise DataError(f"{source}: IDX dimensions {dims}, expected {expect_shape}")
    need = header + int(np.prod(dims))
    if len(raw) != need:
        raise DataError(
            f"{source}: {len(raw)} bytes, expected {need} for dimensions {dims} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"{path}: corrupt or truncated gzip file ({exc})",
                hint="delete it and let the toolchain download it again, or copy a good one",
            ) from None
    return data


@functools.lru_cache(maxsize=16)
def _load_idx(path: str, mtime_ns: int, size: int, f: IdxFile, dataset: str, verify: bool) -> np.ndarray:
    """Read, verify and parse one file; cached per (path, mtime, size) as decoding costs ~0.5 s."""
    del mtime_ns, size  # cache key only: a changed file is read again
    raw = _read_bytes(Path(path))
    if verify and hashlib.sha256(raw).hexdigest() != f.sha256:
        # Shape checks first: they give the more useful message for truncated files.
        parse_idx(raw, path, f.shape)
        raise DataError(
            f"{path}: contents do not match the published {dataset} data (SHA-256 mismatch)",
            hint="the file is corrupt or a different dataset; delete it to re-download",
        )
    arr = parse_idx(raw, path, f.shape)
    arr.flags.writeable = False
    return arr


def _find_file(folder: Path, f: IdxFile) -> Path | None:
    for cand in (folder / f"{f.name}.gz", folder / f.name):
        if cand.is_file():
            return cand
    return None


# ----------------------------------------------------------------------------------------------
# Data directory and downloads
# ----------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "toolchain" / "datasets"


def resolve_data_dir(data_dir: str | Path | None) -> tuple[Path, bool]:
    """--data-dir, else $TOOLCHAIN_DATA_DIR, else the user cache. Returns (dir, chosen_explicitly)."""
    if data_dir is not None:
        return Path(data_dir), True
    env = os.environ.get("TOOLCHAIN_DATA_DIR")
    if env:
        return Path(env), True
    return default_cache_dir(), False


def mirrors_for(spec: DatasetSpec) -> tuple[str, ...]:
    """$TOOLCHAIN_DATA_MIRROR (a base URL holding <dataset>/<file>.gz) first, then the canonical ones."""
    own = os.environ.get("TOOLCHAIN_DATA_MIRROR")
    return ((own.rstrip("/") + f"/{spec.name}/",) if own else ()) + spec.mirrors


def download_dataset(spec: DatasetSpec, folder: Path, mirrors: tuple[str, ...] | None = None) -> None:
    """Fetch every missing file from the mirrors in turn, verify its SHA-256, write it atomically."""
    mirrors = mirrors or mirrors_for(spec)
    for f in spec.files:
        if _find_file(folder, f) is not None:
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{f.name}.gz"
            print(f"downloading {url}", file=sys.stderr)
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    blob = resp.read()
                raw = gzip.decompress(blob)
            except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest != f.sha256:
                errors.append(f"{url}: SHA-256 {digest[:16]}… does not match {f.sha256[:16]}…")
                continue
            atomic_write_bytes(folder / f"{f.name}.gz", blob)
            break
        else:
            raise DataError(
                f"could not download {spec.name} file {f.name}: " + "; ".join(errors),
                hint=f"copy the four IDX files into {folder}/ or pass --data-dir (or set "
                f"TOOLCHAIN_DATA_DIR) to a directory that holds a {spec.name}/ folder",
            )


@dataclass(frozen=True)
class RawDataset:
    x_train: np.ndarray  # uint8 [n, 28, 28]
    y_train: np.ndarray  # uint8 [n]
    x_test: np.ndarray
    y_test: np.ndarray


def load_raw(name: str, data_dir: str | Path | None = None, verify: bool = True) -> RawDataset:
    spec = get_spec(name)
    root, explicit = resolve_data_dir(data_dir)
    if explicit and not root.is_dir():
        raise DataError(
            f"data directory {root} does not exist",
            hint=f"pass --data-dir (or TOOLCHAIN_DATA_DIR) pointing at a directory with a {name}/ "
            "folder of IDX files",
        )
    folder = root / name
    if any(_find_file(folder, f) is None for f in spec.files):
        download_dataset(spec, folder)
    arrays = []
    for f in spec.files:
        path = _find_file(folder, f)
        assert path is not None
        st = path.stat()
        arrays.append(_load_idx(str(path), st.st_mtime_ns, st.st_size, f, name, verify))
    xtr, ytr, xte, yte = arrays
    if ytr.max() >= spec.n_classes or yte.max() >= spec.n_classes:
        raise DataError(f"{folder}: labels outside 0..{spec.n_classes - 1}")
    return RawDataset(xtr, ytr, xte, yte)


# ----------------------------------------------------------------------------------------------
# Splits and preprocessing
# ----------------------------------------------------------------------------------------------
# The validation split is fixed (independent of the training seed) so that exit calibration of
# different runs is comparable; the test set is never used for any choice.
VALIDATION_SEED = 20240722


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray  # float32 [n, input_width], in [0, 1], zero-padded
    y_train: np.ndarray  # int32
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def preprocess(images: np.ndarray, input_width: int) -> np.ndarray:
    """Flatten, scale to [0, 1] and zero-pad to the network's input width (784 -> 800 in the paper)."""
    flat = images.reshape(len(images), -1)
    if input_width < flat.shape[1]:
        raise DataError(
            f"the network has {input_width} inputs but the images have {flat.shape[1]} pixels",
            hint=f"set network.neurons[0] to at least {flat.shape[1]}",
        )
    out = np.zeros((len(flat), input_width), dtype=np.float32)
    out[:, : flat.shape[1]] = flat.astype(np.float32) / 255.0
    return out


def load_splits(
    name: str, input_width: int, validation_size: int, data_dir: str | Path | None = None
) -> Splits:
    raw = load_raw(name, data_dir)
    n = len(raw.x_train)
    if not 0 < validation_size < n:
        raise DataError(f"validation_size = {validation_size} must be between 1 and {n - 1}")
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    tr, va = np.sort(order[validation_size:]), np.sort(order[:validation_size])
    x = preprocess(raw.x_train, input_width)
    y = raw.y_train.astype(np.int32)
    return Splits(
        x_train=x[tr],
        y_train=y[tr],
        x_val=x[va],
        y_val=y[va],
        x_test=preprocess(raw.x_test, input_width),
        y_test=raw.y_test.astype(np.int32),
    )


def subsample_train(splits: Splits, fraction: float, seed: int) -> Splits:
    """The training split cut to `fraction` (a seeded subset, in the original order); validation and
    test stay whole, so accuracies of different fractions are comparable."""
    n = len(splits.x_train)
    keep = max(1, round(fraction * n))
    if keep >= n:
        return splits
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:keep])
    return dataclasses.replace(splits, x_train=splits.x_train[idx], y_train=splits.y_train[idx])
