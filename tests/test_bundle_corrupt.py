"""A damaged or hostile bundle is a BundleError naming the file and what is wrong, never a traceback,
and loading it costs memory bounded by the config, whatever the archives declare (issue 13: 8)."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest

from toolchain.bundle import load_bundle
from toolchain.cli import main
from toolchain.errors import BundleError


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_npz(path, edit):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(path, **arrays)


def _set(d, k, v):
    d[k] = v


def _conn0(key, value):
    return lambda d: _set(d["connectivity"][0], key, value)


CASES = {
    "truncated weights": (
        lambda b: (b / "weights.npz").write_bytes((b / "weights.npz").read_bytes()[:500]),
        r"weights\.npz: not a readable \.npz archive",
    ),
    "connectivity not a list": (
        lambda b: _edit_json(b / "bundle.json", lambda d: _set(d, "connectivity", "random")),
        r"bundle\.json: connectivity must be a list of 3 junctions.*got str",
    ),
    "connectivity entry not a table": (
        lambda b: _edit_json(b / "bundle.json", lambda d: _set(d, "connectivity", [1, 2, 3])),
        r"connectivity\[0\]: pattern 1 is not one of",
    ),
    "params a list": (
        lambda b: _edit_json(b / "bundle.json", _conn0("params", [1, 2])),
        r"connectivity\[0\]\.params must be a table of integers",
    ),
    "params of floats": (
        lambda b: _edit_json(b / "bundle.json", _conn0("params", {"a": 1.5})),
        r"params must be a table of integers",
    ),
    "deeply nested bundle.json": (
        lambda b: (b / "bundle.json").write_text("[" * 100_000 + "]" * 100_000),
        r"bundle\.json: JSON nested too deeply",
    ),
    "deeply nested config.toml": (
        lambda b: (b / "config.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
        r"config\.toml: invalid TOML: values nested too deeply",
    ),
    "deeply nested metrics.json": (
        lambda b: (b / "metrics.json").write_text("[" * 100_000 + "]" * 100_000),
        r"metrics\.json: not valid JSON",
    ),
    "missing weight": (
        lambda b: _edit_npz(b / "weights.npz", lambda a: a.pop("junction_2/w")),
        r"weights\.npz: junction_2/w: missing",
    ),
    "mis-shaped weight": (
        lambda b: _edit_npz(b / "weights.npz", lambda a: _set(a, "junction_2/w", a["junction_2/w"][:, :3])),
        r"junction_2/w has shape \[40, 3\], expected \[40, 9\]",
    ),
    "integer weight": (
        lambda b: _edit_npz(b / "weights.npz", lambda a: _set(a, "exit_logits/bias", np.arange(10))),
        r"exit_logits/bias has dtype int64, expected a floating-point array",
    ),
    "NaN weight": (
        lambda b: _edit_npz(b / "weights.npz", lambda a: a["junction_1/w"].__setitem__((0, 0), np.nan)),
        r"weights\.npz: junction_1/w has 1 NaN or infinite values",
    ),
    "pickled connectivity": (
        lambda b: _edit_npz(
            b / "connectivity.npz", lambda a: _set(a, "junction_1/idx", np.array([{"x": 1}], dtype=object))
        ),
        r"junction_1/idx holds Python objects \(a pickle\)",
    ),
    "connectivity out of range": (
        lambda b: _edit_npz(b / "connectivity.npz", lambda a: a["junction_1/idx"].__setitem__((0, 0), 10**6)),
        r"junction 1 connectivity is invalid: index out of range",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_bundle_is_a_clear_error(case, trained_bundle, tmp_path):
    damage, message = CASES[case]
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    damage(bundle)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_the_cli_reports_a_corrupt_bundle_without_a_traceback(trained_bundle, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    CASES["truncated weights"][0](bundle)
    assert main(["export", "c", "--bundle", str(bundle), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "\nerror: corrupt bundle:" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def _zip_member_of_zeros(zf: zipfile.ZipFile, name: str, count: int) -> None:
    """A float32 .npy member of `count` zeros, streamed (the test itself never holds it)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    chunk = bytes(1 << 20)
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        fh.write(header.getvalue())
        for start in range(0, count * 4, len(chunk)):
            fh.write(chunk[: min(len(chunk), count * 4 - start)])


def test_unused_and_oversized_members_are_never_decompressed(trained_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    with np.load(trained_bundle / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    with zipfile.ZipFile(bundle / "weights.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as fh:
                np.lib.format.write_array(fh, v)
        _zip_member_of_zeros(zf, "junk", 100_000_000)  # 400 MB of zeros in a ~400 kB archive
    assert (bundle / "weights.npz").stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        b = load_bundle(bundle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"loading the bundle allocated {peak:,} bytes"
    assert set(b.weights) == set(arrays)
    for k, v in arrays.items():
        assert np.array_equal(b.weights[k], v)
