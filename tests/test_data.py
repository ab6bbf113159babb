"""Datasets: IDX parsing, real MNIST/Fashion-MNIST, verified downloads from a loopback mirror, bad files."""

from __future__ import annotations

import functools
import gzip
import shutil
import struct
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from toolchain.cli import main
from toolchain.data import (
    DATASETS,
    download_dataset,
    load_raw,
    load_splits,
    parse_idx,
    preprocess,
    resolve_data_dir,
)
from toolchain.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_parse_idx_round_trip_and_checks():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(arr), "x"), arr)
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        parse_idx(b"\x00\x00\x0d\x03" + idx_bytes(arr)[4:], "x")
    with pytest.raises(DataError, match="truncated or corrupt"):
        parse_idx(idx_bytes(arr)[:-1], "x")
    with pytest.raises(DataError, match="expected"):
        parse_idx(idx_bytes(arr), "x", (2, 3, 5))
    with pytest.raises(DataError, match="truncated"):
        parse_idx(b"\x00\x00", "x")


def test_real_mnist_and_fashion(data_root, fashion_root):
    for name, root in (("mnist", data_root), ("fashion-mnist", fashion_root)):
        raw = load_raw(name, root)
        assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
        assert set(np.unique(raw.y_test)) == set(range(10))
    # The two datasets really differ.
    assert not np.array_equal(load_raw("mnist", data_root).x_test[:10], raw.x_test[:10])


def test_splits_are_fixed_disjoint_and_padded(mnist_splits, data_root):
    s = mnist_splits
    assert s.x_train.shape == (55000, 800) and s.x_val.shape == (5000, 800) and s.x_test.shape == (10000, 800)
    assert s.x_train.dtype == np.float32 and s.x_train.min() >= 0.0 and s.x_train.max() <= 1.0
    assert not s.x_train[:, 784:].any()  # zero padding 784 -> 800
    # Validation rows are training images that are not in the training split.
    train_rows = {r.tobytes() for r in s.x_train[:, :784]}
    assert sum(r.tobytes() in train_rows for r in s.x_val[:200, :784]) < 5  # MNIST has a few duplicates
    again = load_splits("mnist", 800, 5000, data_root)
    assert np.array_equal(again.y_val, s.y_val)


def test_preprocess_rejects_a_too_narrow_input():
    with pytest.raises(DataError, match="at least 784"):
        preprocess(np.zeros((1, 28, 28), np.uint8), 700)


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on loopback serving <root>/<dataset>/<file>.gz."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_into_cache_with_checksums(mirror, data_root, tmp_path, monkeypatch):
    root, url = mirror
    shutil.copytree(data_root / "mnist", root / "mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TOOLCHAIN_DATA_DIR", raising=False)
    monkeypatch.setenv("TOOLCHAIN_DATA_MIRROR", url)
    cache, explicit = resolve_data_dir(None)
    assert not explicit and cache == tmp_path / "cache" / "toolchain" / "datasets"
    raw = load_raw("mnist")  # downloads all four files
    assert raw.x_train.shape == (60000, 28, 28)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(
        f"{f.name}.gz" for f in DATASETS["mnist"].files
    )
    shutil.rmtree(root / "mnist")  # the mirror is gone: the cache answers now
    assert np.array_equal(load_raw("mnist").y_test, raw.y_test)


def test_download_rejects_a_checksum_mismatch(mirror, data_root, tmp_path):
    root, url = mirror
    (root / "mnist").mkdir()
    for f in DATASETS["mnist"].files:
        src = data_root / "mnist" / f"{f.name}.gz"
        if f.name == "t10k-labels-idx1-ubyte":
            raw = gzip.decompress(src.read_bytes())
            raw = raw[:-1] + bytes([(raw[-1] + 1) % 10])  # one wrong label
            (root / "mnist" / src.name).write_bytes(gzip.compress(raw))
        else:
            shutil.copy(src, root / "mnist" / src.name)
    folder = tmp_path / "data" / "mnist"
    with pytest.raises(DataError, match="SHA-256") as exc:
        download_dataset(DATASETS["mnist"], folder, mirrors=(f"{url}/mnist/",))
    assert "t10k-labels" in str(exc.value)
    assert not (folder / "t10k-labels-idx1-ubyte.gz").exists()  # nothing half-written


def test_unreachable_mirrors_give_a_clear_error(tmp_path):
    with pytest.raises(DataError) as exc:
        download_dataset(DATASETS["mnist"], tmp_path / "mnist", mirrors=("http://127.0.0.1:9/",))
    assert "could not download" in str(exc.value) and "--data-dir" in str(exc.value)


@pytest.mark.parametrize("damage", ["truncate", "gzip", "swap"])
def test_corrupt_local_files(tmp_path, data_root, damage):
    shutil.copytree(data_root / "mnist", tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(gzip.compress(raw[: len(raw) // 2], compresslevel=1))
        expect = "truncated or corrupt"
    elif damage == "gzip":
        path.write_bytes(path.read_bytes()[:1000])
        expect = "corrupt or truncated gzip"
    else:  # right size, wrong content
        path.write_bytes(gzip.compress(raw[:16] + raw[16:][::-1], compresslevel=1))
        expect = "SHA-256 mismatch"
    with pytest.raises(DataError, match=expect) as exc:
        load_raw("mnist", tmp_path)
    assert str(path) in str(exc.value)


def test_cli_reports_data_errors_without_traceback(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "data directory" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="valid datasets: mnist, fashion-mnist"):
        load_raw("cifar10", Path("/nonexistent"))
