"""`toolchain export c`: generated C compiled for the host and run over the whole MNIST test set."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from helpers_c import deep_bundle, encoded_test_set, export, reference_outputs, tflm_outputs

from toolchain.cli import main
from toolchain.errors import BundleError, ToolchainError
from toolchain.mcu.cexport import export_c, load_cmodel
from toolchain.mcu.runner import compile_model_host, run_model_host

CASES = ["random", "affine", "deep_cyclic", "deep_random"]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


def _bundle(case, request, mnist_splits, tmp_root):
    if case == "random":
        return request.getfixturevalue("trained_bundle")
    if case == "affine":
        return request.getfixturevalue("trained_bundle_affine")
    return deep_bundle(tmp_root, mnist_splits, case.split("_", 1)[1])


@pytest.fixture(scope="module", params=[(c, d) for c in CASES for d in ("int8", "float32")], ids=str)
def case(request, mnist_splits, data_root, tmp_root):
    name, dtype = request.param
    return name, export(_bundle(name, request, mnist_splits, tmp_root), dtype, data_root, tmp_root)


def test_host_c_is_bit_exact_with_the_reference_on_the_whole_test_set(case, mnist_splits, tmp_path):
    name, cm = case
    ref = cm.ir
    exe = compile_model_host(cm, tmp_path / "head")
    x = encoded_test_set(ref, mnist_splits)
    out = run_model_host(exe, ref, x, tmp_path)
    split, logits, flag, argmax, stdout = out.split, out.exit_logits, out.exit_flag, out.argmax, out.text
    r_split, r_logits, r_flag = reference_outputs(ref, mnist_splits)
    # Bitwise comparison (float32 too: -0.0 vs 0.0 or NaN would count as differences).
    assert np.array_equal(split.view(np.uint8), r_split.view(np.uint8)), f"{name}: split differs"
    assert np.array_equal(logits.view(np.uint8), r_logits.view(np.uint8)), f"{name}: logits differ"
    assert np.array_equal(flag.astype(bool), r_flag), f"{name}: exit decisions differ"
    assert np.array_equal(argmax, r_logits.argmax(axis=1)), f"{name}: tc_argmax differs"
    assert 0.05 < r_flag.mean() <= 1.0  # the rule really decides
    assert f"hash {cm.model_hash}" in stdout and "samples 10000" in stdout
    if ref.dtype == "int8":
        t_split, t_logits = tflm_outputs((cm.dir / "head_exit.tflite").read_bytes(), x)
        assert np.array_equal(split, t_split) and np.array_equal(logits, t_logits)


def test_layers_use_the_kernels_each_pattern_needs(case):
    name, cm = case
    src = (cm.dir / "model_data.c").read_text()
    hdr = (cm.dir / "model_data.h").read_text()
    kinds = {ly.name: ly.kind for ly in cm.ir.layers}
    if name == "random":
        assert kinds == {"junction_1": "table", "exit_logits": "dense"}
        assert "const uint16_t tc_junction_1_idx[1600]" in src  # 800 inputs need 16 bits
    elif name == "affine":
        assert kinds == {"junction_1": "affine", "exit_logits": "dense"}
        assert "_idx" not in src  # index-free: only a and b are stored
        a, b = (cm.ir.layers[0].params[k] for k in ("a", "b"))
        assert re.search(rf"800, 40, 40, {a}, {b}, 20, 2, 800, TC_LAYER_AFFINE", src)
        assert "#define TC_XBUF_SIZE 800" in hdr
    elif name == "deep_cyclic":
        assert [k for k in kinds.values()] == ["affine", "affine", "dense", "dense"]
        # 800 -> 40 reads the input in place; 40 -> 40 with in-degree 9 wraps: the last window starts
        # at 39, so the permuted, extended buffer holds 39 + 9 = 48 elements.
        assert "800, 40, 40, 1, 0, 20, 2, 0, TC_LAYER_AFFINE" in src
        assert "#define TC_XBUF_SIZE 48" in hdr
        assert "#define TC_MAX_HIDDEN 40" in hdr
    else:
        assert "const uint8_t tc_junction_2_idx[360]" in src  # 40 inputs fit 8 bits
    dtype_macros = re.findall(r"#define TC_DTYPE_(\w+) 1", hdr)
    assert dtype_macros == [cm.dtype.upper()]
    for macro in ("TC_INPUT_SIZE 800", "TC_NUM_CLASSES 10", "TC_MODEL_HASH_LEN 8", "TC_EXIT_THRESHOLD"):
        assert f"#define {macro}" in hdr
    if cm.dtype == "int8":
        assert "#define TC_INPUT_ZERO_POINT (-128)" in hdr and "TC_SPLIT_SCALE" in hdr
        assert f"#define TC_EXIT_THRESHOLD ({cm.ir.exit_threshold})" in hdr


def test_model_json_describes_the_export(case):
    _, cm = case
    meta = json.loads((cm.dir / "model.json").read_text())
    assert meta["model_hash"] == cm.model_hash and meta["dtype"] == cm.dtype
    assert meta["memory"]["flash"]["model_data"] == sum(meta["memory"]["flash"]["arrays"].values())
    assert meta["exit_rule"]["threshold"] == cm.ir.exit_threshold
    again = load_cmodel(cm.dir)
    assert again.model_hash == cm.model_hash and again.memory == cm.memory


def test_cli_exports_and_reports(trained_bundle, data_root, tmp_path, capsys):
    out = tmp_path / "c"
    rc = main(["export", "c", "--bundle", str(trained_bundle), "--out", str(out), "--dtype", "float32",
               "--data-dir", str(data_root)])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dtype"] == "float32" and (out / "model_data.h").is_file()
    assert report["model_hash"] == load_cmodel(out).model_hash
    assert not (out / "head_exit.tflite").exists()


def test_cli_bad_inputs_fail_cleanly(trained_bundle, tmp_path, capsys):
    def run(*args):
        rc = main(["export", "c", *args])
        return rc, capsys.readouterr().err

    rc, err = run("--bundle", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "does not exist" in err and "Traceback" not in err
    rc, err = run("--bundle", str(trained_bundle), "--out", str(tmp_path / "o"), "--dtype", "int16")
    assert rc == 2 and "unsupported dtype 'int16'" in err and "int8, float32" in err
    old = tmp_path / "old_bundle"
    shutil.copytree(trained_bundle, old)
    meta = json.loads((old / "bundle.json").read_text())
    meta["version"] = 99
    (old / "bundle.json").write_text(json.dumps(meta))
    rc, err = run("--bundle", str(old), "--out", str(tmp_path / "o"))
    assert rc == 2 and "version 99 is not supported" in err
    assert not (tmp_path / "o").exists()


def test_export_refuses_to_replace_a_directory_with_other_files(trained_bundle, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "main.c").write_text("int main(void) { return 0; }\n")
    with pytest.raises(ToolchainError, match="already holds other files"):
        export_c(trained_bundle, busy, "float32")
    assert (busy / "main.c").is_file()
    with pytest.raises(BundleError):
        export_c(tmp_path / "nothing", tmp_path / "x")
    with pytest.raises(ToolchainError, match="unsupported dtype"):
        export_c(trained_bundle, tmp_path / "x", "bfloat16")


def test_export_refuses_accumulators_the_int8_kernels_cannot_requantize_exactly(int8_case_ref):
    import copy

    from toolchain.mcu.cgen import check_limits, header_text

    ref = copy.deepcopy(int8_case_ref)
    check_limits(ref)  # the real model is fine
    ref.layers[0].bias = ref.layers[0].bias.copy()
    ref.layers[0].bias[3] = 2**30
    with pytest.raises(ValueError, match="2\\^30"):
        header_text(ref, "test")


@pytest.fixture
def int8_case_ref(trained_bundle, data_root, tmp_root):
    return export(trained_bundle, "int8", data_root, tmp_root).ir
