"""TFLite export of head + exit: structure a device needs, float32 against Keras, int8 against the
integer reference (at most 1 LSB; see toolchain/export/tflite.py check_int8 for why not 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from toolchain.bundle import load_bundle
from toolchain.cli import main
from toolchain.edge.head import LiteHead
from toolchain.errors import MismatchError, ToolchainError
from toolchain.export.tflite import convert_head, describe, export_tflite, inspect_head


@pytest.fixture(scope="module")
def heads(trained_bundle, tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("tflite")
    return {d: export_tflite(trained_bundle, out, d, data_dir=data_root) for d in ("float32", "int8")}, out


def test_static_batch_one_builtin_fully_connected_only(heads):
    hs, out = heads
    for dtype, head in hs.items():
        desc = describe((out / f"head_{dtype}.tflite").read_bytes())
        assert desc["subgraphs"] == 1
        assert [op["op"] for op in desc["ops"]] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
        assert all(op["builtin"] for op in desc["ops"])
        (inp,) = Interpreter(model_path=str(out / f"head_{dtype}.tflite")).get_input_details()
        assert list(inp["shape_signature"]) == [1, 800]
        assert inp["dtype"] == (np.int8 if dtype == "int8" else np.float32)
        meta = json.loads((out / f"head_{dtype}.json").read_text())
        assert meta["tensors"]["split"] == head.split_index != head.exit_index


def test_float32_matches_keras(heads, trained_bundle, mnist_splits):
    hs, _ = heads
    head = hs["float32"]
    assert head.check["max_abs_diff"] <= 1e-5
    x = mnist_splits.x_test[500:1500]  # other samples than the export checked
    split, logits = LiteHead(head.model, head.split_index, head.exit_index).run(x)
    model = load_bundle(trained_bundle).split_model(form="masked")
    ks, kl = (np.asarray(a) for a in model.head_exit.predict(x, verbose=0))
    assert np.max(np.abs(split - ks)) <= 1e-5 and np.max(np.abs(logits - kl)) <= 1e-5


def test_int8_within_one_lsb_of_the_integer_reference(heads, mnist_splits):
    hs, _ = heads
    head = hs["int8"]
    assert head.check["split"]["max_lsb"] <= 1 and head.check["exit"]["max_lsb"] <= 1
    ref = head.ir
    x = mnist_splits.x_test[500:2500]
    lite = LiteHead(head.model, head.split_index, head.exit_index, head.quant)
    split, logits = lite.run(lite.encode(x))
    rs, rl, _ = ref.infer(ref.encode_input(x))
    for a, b in ((split, rs), (logits, rl)):
        d = np.abs(a.astype(np.int32) - b.astype(np.int32))
        assert d.max() <= 1
        assert (d > 0).mean() < 0.01  # rounding differences are rare, a real error is not
    assert ref.exit_threshold == int(ref.exit_threshold) and ref.exit_rule["score"] == "margin_int8"


def test_per_tensor_weights_for_coral(trained_bundle, data_root):
    head = convert_head(load_bundle(trained_bundle), "int8", per_channel=False, data_dir=data_root)
    desc = head.description
    weights = [desc["tensors"][op["inputs"][1]] for op in desc["ops"]]
    assert [w["n_scales"] for w in weights] == [1, 1]


def test_inspect_rejects_a_model_that_is_not_the_head(heads, trained_bundle):
    hs, _ = heads
    bundle = load_bundle(trained_bundle)
    with pytest.raises(MismatchError, match="not all int8"):
        inspect_head(hs["float32"].model, "int8", bundle)
    bundle.config.network.neurons[0] = 784  # a bundle of another input width
    with pytest.raises(MismatchError, match=r"input shape \[1, 800\]"):
        inspect_head(hs["float32"].model, "float32", bundle)


def test_cli(trained_bundle, tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setenv("TOOLCHAIN_DATA_DIR", str(data_root))
    assert (
        main(["export", "tflite", "--bundle", str(trained_bundle), "--out", str(tmp_path), "--dtype", "int8"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["check"]["against"] == "ir.HeadIR"
    assert (tmp_path / "head_int8.tflite").is_file()
    assert (
        main(["export", "tflite", "--bundle", str(trained_bundle), "--out", str(tmp_path), "--dtype", "int4"])
        == 2
    )
    assert "not valid for TFLite" in capsys.readouterr().err
    with pytest.raises(ToolchainError):
        convert_head(load_bundle(trained_bundle), "float16")
