"""int8 quantization and the NumPy reference against TFLite Micro and Keras, on real trained bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_c import encoded_test_set, export, reference_outputs, tflm_outputs

from toolchain.calibrate import calibrate, exit_margin
from toolchain.errors import BundleError, ToolchainError
from toolchain.ir.io import load_ir
from toolchain.quantize import build_ir, calibration_inputs, head_exit_tflite, read_int8_graph


def test_float32_reference_is_bit_exact_with_tflite_micro_for_ascending_slots(
    trained_bundle, mnist_splits, data_root, tmp_root
):
    """Index tables are sorted per row and dense layers ascend, which is TFLM's float summation
    order (zeros of the dense form add exactly nothing; the bias comes last in both)."""
    ref = export(trained_bundle, "float32", data_root, tmp_root).ir
    assert [ly.kind for ly in ref.layers] == ["table", "dense"]
    assert all(np.all(np.diff(ly.idx, axis=1) > 0) for ly in ref.layers)
    x = encoded_test_set(ref, mnist_splits)
    split, logits, _ = reference_outputs(ref, mnist_splits)
    t_split, t_logits = tflm_outputs(head_exit_tflite(trained_bundle, "float32"), x)
    assert np.array_equal(split.view(np.uint32), t_split.view(np.uint32))
    assert np.array_equal(logits.view(np.uint32), t_logits.view(np.uint32))


def cm_model(bundle_path):
    from toolchain.bundle import load_bundle

    return load_bundle(bundle_path).split_model()


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module", params=["random", "affine"])
def int8_export(request, trained_bundle, trained_bundle_affine, data_root, tmp_root):
    bundle = trained_bundle if request.param == "random" else trained_bundle_affine
    return export(bundle, "int8", data_root, tmp_root)


def test_int8_reference_is_bit_exact_with_tflite_micro_on_the_whole_test_set(int8_export, mnist_splits):
    ref = int8_export.ir
    tflite = (int8_export.dir / "head_exit.tflite").read_bytes()
    x = encoded_test_set(ref, mnist_splits)
    assert x.shape == (10000, 800) and x.dtype == np.int8
    split, logits, _ = reference_outputs(ref, mnist_splits)
    t_split, t_logits = tflm_outputs(tflite, x)
    assert np.array_equal(split, t_split), f"{np.sum(split != t_split)} split values differ"
    assert np.array_equal(logits, t_logits), f"{np.sum(logits != t_logits)} logits differ"
    # A real model, not a degenerate one: the int8 exit is about as accurate as the float exit.
    acc = np.mean(logits.argmax(1) == mnist_splits.y_test)
    assert acc > 0.85
    assert len(np.unique(split)) > 50


def test_per_tensor_weights_are_bit_exact_too(trained_bundle, mnist_splits, data_root):

    buf = head_exit_tflite(trained_bundle, "int8", per_channel=False, data_dir=data_root)
    graph = read_int8_graph(buf)
    assert all(q.scale.size == 1 for q in graph.weight_quant)
    ref, _ = build_ir(trained_bundle, "int8", tflite=buf, splits=mnist_splits)
    x = ref.encode_input(mnist_splits.x_test[:2000])
    split, logits, _ = ref.infer(x)
    t_split, t_logits = tflm_outputs(buf, x)
    assert np.array_equal(split, t_split) and np.array_equal(logits, t_logits)


def test_int8_flatbuffer_is_static_builtin_fully_connected(int8_export):
    from ai_edge_litert import schema_py_generated as schema

    buf = (int8_export.dir / "head_exit.tflite").read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = model.subgraphs[0]
    codes = {max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes}
    assert codes == {9}  # FULLY_CONNECTED only, no custom or Flex ops
    assert list(sg.tensors[sg.inputs[0]].shape) == [1, 800]
    assert all(sg.tensors[t].type == 9 for t in [*sg.inputs, *sg.outputs])  # int8 in and out
    graph = read_int8_graph(buf)
    assert [q.scale.size for q in graph.weight_quant] == [40, 10]  # per-channel by default


def test_packed_int8_weights_hold_every_nonzero_weight(int8_export):
    """The packed arrays are the FC tensors gathered at idx; nothing outside idx was dropped."""
    ref = int8_export.ir
    graph = read_int8_graph((int8_export.dir / "head_exit.tflite").read_bytes())
    for layer, dense in zip(ref.layers, graph.weights, strict=True):
        rebuilt = np.zeros_like(dense)
        np.put_along_axis(rebuilt, layer.idx.astype(np.int64), layer.w, axis=1)
        assert np.array_equal(rebuilt, dense)


def test_input_quantization_is_pixel_minus_128(int8_export, mnist_splits):
    ref = int8_export.ir
    q = ref.quant["input"]
    assert q["zero_point"] == -128 and abs(q["scale"] - 1 / 255) < 1e-6
    raw = np.rint(mnist_splits.x_test[:100, :784] * 255).astype(np.int32)
    assert np.array_equal(ref.encode_input(mnist_splits.x_test[:100])[:, :784], raw - 128)
    # Shorter (unpadded) inputs are zero-padded to the network width.
    assert np.array_equal(
        ref.encode_input(mnist_splits.x_test[:5, :784]), ref.encode_input(mnist_splits.x_test[:5])
    )


def test_float32_reference_matches_keras_closely(trained_bundle, mnist_splits, data_root, tmp_root):
    cm = export(trained_bundle, "float32", data_root, tmp_root)
    ref = cm.ir
    x = mnist_splits.x_test[:2000]
    split, logits, _ = ref.infer(ref.encode_input(x))
    k_split, k_logits = (np.asarray(a) for a in cm_model(trained_bundle).head_exit(x, training=False))
    # Different summation order than Keras' matmul: float32 rounding differences only.
    assert np.max(np.abs(split - k_split)) < 1e-4
    assert np.max(np.abs(logits - k_logits)) < 1e-4


def test_float32_tflite_is_float_and_close_to_the_reference(trained_bundle, mnist_splits):
    from ai_edge_litert.interpreter import Interpreter

    buf = head_exit_tflite(trained_bundle, "float32")
    it = Interpreter(model_content=buf)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.float32 and list(inp["shape"]) == [1, 800]
    it.set_tensor(inp["index"], mnist_splits.x_test[:1])
    it.invoke()
    outs = sorted((o["shape"][-1], it.get_tensor(o["index"])) for o in it.get_output_details())
    logits = outs[0][1]
    k_logits = np.asarray(cm_model(trained_bundle).head_exit(mnist_splits.x_test[:1])[1])
    assert np.max(np.abs(logits - k_logits)) < 1e-4


def test_calibration_inputs_are_a_fixed_subset_of_the_training_split(trained_bundle, data_root, mnist_splits):
    a = calibration_inputs(trained_bundle, data_root, n=50)
    b = calibration_inputs(trained_bundle, data_root, n=50)
    assert a.shape == (50, 800) and a.dtype == np.float32
    assert np.array_equal(a, b)
    rows = {r.tobytes() for r in mnist_splits.x_train}
    assert all(r.tobytes() in rows for r in a)
    with pytest.raises(ToolchainError, match="calibration needs"):
        calibration_inputs(trained_bundle, data_root, n=0)


def test_integer_exit_rule_is_calibrated_with_the_projects_rule(int8_export, trained_bundle, mnist_splits):
    """The threshold is what toolchain.calibrate picks on integer margins of the validation split."""
    ref = int8_export.ir
    rule = ref.exit_rule
    from toolchain.bundle import load_bundle

    cfg = load_bundle(trained_bundle).config
    assert rule["rule"] == cfg.exit.rule and rule["score"] == "margin_int8"
    assert isinstance(ref.exit_threshold, int)
    split, logits = ref.forward(ref.encode_input(mnist_splits.x_val))
    tail = cm_model(trained_bundle).tail
    final = np.asarray(tail(ref.decode_split(split), training=False)).argmax(1)
    cal = calibrate(
        exit_margin(logits),
        logits.argmax(1) == mnist_splits.y_val,
        final == mnist_splits.y_val,
        cfg.exit.rule,
        cfg.exit.max_accuracy_drop,
    )
    assert ref.exit_threshold == int(np.ceil(cal.threshold))
    val = rule["validation"]
    assert val["accuracy_at_threshold"] >= val["final_accuracy"] - cfg.exit.max_accuracy_drop - 1e-12
    assert 0 < val["exit_rate"] <= 1
    # The decision is exactly margin >= T.
    _, t_logits, taken = ref.infer(encoded_test_set(ref, mnist_splits))
    assert np.array_equal(taken, exit_margin(t_logits) >= ref.exit_threshold)


def test_load_ir_round_trips_and_detects_tampering(int8_export, mnist_splits, tmp_path):
    import shutil

    ref = load_ir(int8_export.dir)
    assert ref.model_hash == int8_export.model_hash
    x = mnist_splits.x_test[:500]
    for a, b in zip(ref.infer(ref.encode_input(x)), int8_export.ir.infer(ref.encode_input(x)), strict=True):
        assert np.array_equal(a, b)
    bad = tmp_path / "tampered"
    shutil.copytree(int8_export.dir, bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["exit_threshold"] = int(meta["exit_threshold"]) + 1
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ToolchainError, match="does not match"):
        load_ir(bad)
    meta["version"] = 99
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ToolchainError, match="version 99"):
        load_ir(bad)
    with pytest.raises(ToolchainError, match="not a C export"):
        load_ir(tmp_path)


def test_bad_inputs_give_clear_errors(trained_bundle, tmp_path):
    with pytest.raises(ToolchainError, match="unsupported dtype 'int4'"):
        head_exit_tflite(trained_bundle, "int4")
    with pytest.raises(BundleError, match="does not exist"):
        head_exit_tflite(tmp_path / "nope")


def test_reference_rejects_wrongly_encoded_input(int8_export, mnist_splits):
    ref = int8_export.ir
    with pytest.raises(ToolchainError, match="encoded input must be int8"):
        ref.infer(mnist_splits.x_test[:3])  # float pixels instead of encode_input()
    with pytest.raises(ToolchainError, match="does not fit"):
        ref.encode_input(np.zeros((2, 801), dtype=np.float32))
