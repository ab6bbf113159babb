"""ONNX export of the tail (FP32 and INT8 input) and the full network: onnx.checker and onnxruntime
against Keras on real MNIST activations."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toolchain.bundle import load_bundle
from toolchain.errors import ToolchainError
from toolchain.export.onnx import IR_VERSION, OPSET, TOLERANCE, export_onnx, tail_model
from toolchain.ir.fixedpoint import dequantize, quantize
from toolchain.ir.head import SplitQuant


@pytest.fixture(scope="module")
def exported(trained_bundle, tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("onnx")
    q = SplitQuant(0.0219, -128)
    return export_onnx(trained_bundle, out, split_quant=q, data_dir=data_root), q


@pytest.fixture(scope="module")
def keras_ref(trained_bundle, mnist_splits):
    model = load_bundle(trained_bundle).split_model(form="masked")
    x = mnist_splits.x_test[:2000]
    split, exit_logits = (np.asarray(a) for a in model.head_exit.predict(x, batch_size=1000, verbose=0))
    final = np.asarray(model.tail.predict(split, batch_size=1000, verbose=0))
    return {"x": x, "split": split, "exit": exit_logits, "final": final, "model": model}


def run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_files_pass_the_checker_with_opset_17(exported):
    result, _ = exported
    assert set(result.files) == {"tail", "tail_int8", "full"}
    for name, path in result.files.items():
        m = onnx.load(str(path))
        onnx.checker.check_model(m, full_check=True)
        assert [o.version for o in m.opset_import if o.domain == ""] == [OPSET] and m.ir_version == IR_VERSION
        batch = m.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param == "batch"  # dynamic batch for the server's batcher
        assert result.max_abs_diff[name] <= TOLERANCE
    report = json.loads((result.out / "onnx_report.json").read_text())
    assert report["models"]["tail_int8"]["input_dtype"] == "INT8"


def test_tail_and_full_match_keras_on_mnist(exported, keras_ref):
    result, _ = exported
    (y,) = run(result.files["tail"], {"split": keras_ref["split"]})
    assert np.max(np.abs(y - keras_ref["final"])) <= TOLERANCE
    y, e = run(result.files["full"], {"input": keras_ref["x"]})
    assert np.max(np.abs(y - keras_ref["final"])) <= TOLERANCE
    assert np.max(np.abs(e - keras_ref["exit"])) <= TOLERANCE
    assert np.mean(y.argmax(1) == keras_ref["final"].argmax(1)) == 1.0


def test_int8_tail_dequantizes_with_the_split_scale(exported, keras_ref):
    result, q = exported
    m = onnx.load(str(result.files["tail_int8"]))
    assert m.graph.node[0].op_type == "DequantizeLinear"
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT8
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    assert inits["split/scale"] == np.float32(q.scale) and inits["split/zero_point"] == q.zero_point
    sq = quantize(keras_ref["split"], q.scale, q.zero_point)
    want = np.asarray(keras_ref["model"].tail.predict(dequantize(sq, q.scale, q.zero_point), verbose=0))
    (y,) = run(result.files["tail_int8"], {"split": sq})
    assert np.max(np.abs(y - want)) <= TOLERANCE
    # The int8 split costs little accuracy against the float split.
    assert np.mean(y.argmax(1) == keras_ref["final"].argmax(1)) > 0.98


def test_graph_is_built_from_the_packed_weights(trained_bundle):
    """A changed weight changes the exported tail: the graph really comes from the bundle."""
    b = load_bundle(trained_bundle)
    h = np.ones((1, b.config.split_width), np.float32)
    before = ort.InferenceSession(tail_model(b).SerializeToString()).run(None, {"split": h})[0]
    b.weights["junction_3/b"] = b.weights["junction_3/b"] + 1.0
    after = ort.InferenceSession(tail_model(b).SerializeToString()).run(None, {"split": h})[0]
    np.testing.assert_allclose(after - before, 1.0, atol=1e-5)


def test_cli_writes_all_three_models(trained_bundle, tmp_path, data_root, monkeypatch):
    from toolchain.cli import main

    monkeypatch.setenv("TOOLCHAIN_DATA_DIR", str(data_root))
    assert main(["export", "onnx", "--bundle", str(trained_bundle), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "onnx_report.json").read_text())
    assert set(report["models"]) == {"tail", "tail_int8", "full"}
    # The int8 tail dequantizes with the int8 head's own split quantization.
    from ai_edge_litert.interpreter import Interpreter

    from toolchain.export.tflite import convert_head

    head = convert_head(load_bundle(trained_bundle), "int8", data_dir=data_root)
    scale, zp = {d["index"]: d for d in Interpreter(model_content=head.model).get_output_details()}[
        head.split_index
    ]["quantization"]
    assert report["split_quant"] == {"scale": pytest.approx(scale), "zero_point": zp}


def test_bad_split_quantization_is_refused():
    with pytest.raises(ToolchainError, match="positive finite"):
        SplitQuant(0.0, 0)
    with pytest.raises(ToolchainError, match="outside the int8 range"):
        SplitQuant(0.1, 200)


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.int8, st.tuples(st.integers(1, 5), st.just(6))),
    st.floats(0.0009765625, 1.0, width=32),
    st.integers(-128, 127),
)
def test_dequantize_linear_matches_numpy(q, scale, zp):
    """onnxruntime's DequantizeLinear == the (q - zp) * scale the tests and the runtime use."""
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "dq",
        [helper.make_tensor_value_info("q", TensorProto.INT8, [None, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6])],
        [
            numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(zp, np.int8), "z"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    (y,) = ort.InferenceSession(m.SerializeToString()).run(None, {"q": q})
    sq = SplitQuant(float(scale), zp)
    back = dequantize(q, sq.scale, sq.zero_point)
    np.testing.assert_array_equal(y, back)
    np.testing.assert_array_equal(quantize(back, sq.scale, sq.zero_point), q)
