"""`toolchain build --target rpi|coral|server`: manifest, Edge TPU report, Triton repository."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from helpers_serve import build_target
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.bundle import bundle_sha256
from toolchain.deploy.coral import compatibility, parse_compiler_output
from toolchain.deploy.server import TritonConfigError, parse_pbtxt, validate_repository
from toolchain.edge.manifest import load_manifest
from toolchain.fsutil import file_sha256


@pytest.fixture(scope="module")
def builds(trained_bundle, tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("deploy")
    return {t: build_target(t, trained_bundle, root, data_root) for t in ("rpi", "coral", "server")}


def test_rpi_manifest_describes_the_artifacts(builds, trained_bundle):
    d = builds["rpi"]
    m = load_manifest(d)
    assert m["target"] == "rpi" and m["kind"] == "linux" and m["head"]["default"] == "int8"
    assert (
        m["model"]["bundle_sha256"] == bundle_sha256(trained_bundle) and len(m["model"]["model_hash"]) >= 16
    )
    for entry in list(m["head"]["files"].values()) + list(m["tail"]["models"].values()):
        assert file_sha256(d / entry["path"]) == entry["sha256"]
    # The split quantization in the manifest is the int8 head's output quantization.
    h8 = m["head"]["files"]["int8"]
    out = {o["index"]: o for o in Interpreter(model_path=str(d / h8["path"])).get_output_details()}
    scale, zp = out[h8["tensors"]["split"]]["quantization"]
    assert (m["split"]["scale"], m["split"]["zero_point"]) == (pytest.approx(scale), zp)
    assert m["tail"]["models"]["tail_int8"]["split_quant"] == {"scale": m["split"]["scale"], "zero_point": zp}
    assert m["split"]["shape"] == [1, 40] and m["split"]["dtype"] == "int8"
    assert m["exit"]["int8"]["rule"] == "int_margin" and isinstance(m["exit"]["int8"]["threshold"], int)
    metrics = json.loads((trained_bundle / "metrics.json").read_text())
    assert m["exit"]["float32"] == {
        "rule": "max_softmax",
        "threshold": pytest.approx(metrics["exit_threshold"]),
        "calibration": metrics["exit_rule"],  # the training-time calibration, on the validation split
    }
    assert metrics["exit_rule"] == {"confidence": "max_softmax", "rule": "max_accuracy_drop", "target": 0.002}
    assert m["wire"]["models"]["int8"] == {
        "name": "tail_int8",
        "input": "split",
        "datatype": "INT8",
        "width": 40,
        "output": "logits",
    }
    for rel in ("device/toolchain/edge/runtime.py", "device/toolchain/data.py", "device/requirements.txt"):
        assert (d / rel).is_file()
    assert "ai-edge-litert" in (d / "device/requirements.txt").read_text()
    assert "python -m toolchain.edge" in (d / "README.txt").read_text()


def test_a_modified_artifact_is_detected(builds, tmp_path):
    from toolchain.edge.runtime import EdgeRuntime
    from toolchain.errors import ToolchainError

    d = tmp_path / "rpi"
    shutil.copytree(builds["rpi"], d)
    raw = bytearray((d / "head_int8.tflite").read_bytes())
    raw[-1] ^= 1
    (d / "head_int8.tflite").write_bytes(bytes(raw))
    with pytest.raises(ToolchainError, match="does not match the SHA-256"):
        EdgeRuntime(d, None, mode="device")


def test_coral_report_and_compiler_step(builds):
    d = builds["coral"]
    m = load_manifest(d)
    assert list(m["head"]["files"]) == ["int8"] and m["head"]["files"]["int8"]["per_channel"] is False
    rep = json.loads((d / "edgetpu_report.json").read_text())
    report, compiler = rep["report"], rep["compiler"]
    assert [o["op"] for o in report["ops"]] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert (
        report["compatible"] and all(report["checks"].values()) and report["mapped"] == report["total"] == 2
    )
    if shutil.which("edgetpu_compiler") is None:
        # Not installable here: the build says so and never claims a compiled model.
        assert compiler["available"] is False and compiler["compiled"] is False
        assert "not installed" in compiler["message"]
        assert compiler["command"] == "edgetpu_compiler -s -m 13 -o . head_int8.tflite"
        assert not list(d.glob("*_edgetpu.tflite")) and m["edgetpu"]["compiled"] is False
    else:
        assert compiler["compiled"] and (d / compiler["output"]).is_file()
    md = (d / "edgetpu_report.md").read_text()
    assert "| 0 | FULLY_CONNECTED |" in md and compiler["command"] in md


def test_compatibility_flags_ops_the_edge_tpu_cannot_run(builds):
    from toolchain.export.tflite import describe

    desc = describe((builds["coral"] / "head_int8.tflite").read_bytes())
    desc["ops"][0] = {**desc["ops"][0], "op": "GATHER"}  # what the packed form would produce
    desc["tensors"][desc["ops"][1]["inputs"][1]]["n_scales"] = 10  # per-channel weights
    rep = compatibility(desc, ["FULLY_CONNECTED"])
    assert rep["ops"][0]["edgetpu"] is False and "not an Edge TPU op" in rep["ops"][0]["why"]
    assert rep["ops"][1]["edgetpu"] is True
    assert not rep["checks"]["only_allowed_ops"] and not rep["checks"]["per_tensor_weights"]
    assert not rep["compatible"]
    fdesc = describe((builds["rpi"] / "head_float32.tflite").read_bytes())
    frep = compatibility(fdesc, ["FULLY_CONNECTED"])
    assert not frep["checks"]["int8_input_output"] and all("not fully int8" in o["why"] for o in frep["ops"])


def test_parse_compiler_summary():
    text = (
        "Edge TPU Compiler version 16.0.384591198\n\nModel compiled successfully in 12 ms.\n\n"
        "Number of operations that will run on Edge TPU: 2\nNumber of operations that will run on CPU: 0\n"
    )
    assert parse_compiler_output(text) == {"edgetpu_ops": 2, "cpu_ops": 0}
    assert parse_compiler_output("error: bad model") == {}


def test_triton_repository_is_valid(builds):
    d = builds["server"]
    checked = validate_repository(d / "model_repository")
    assert set(checked) == {"tail", "tail_int8", "full"}
    cfg = checked["tail_int8"]["config"]
    assert cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] == 64
    assert cfg["input"] == [{"name": "split", "data_type": "TYPE_INT8", "dims": [40]}]
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert len(checked["full"]["config"]["output"]) == 2
    m = load_manifest(d)
    assert m["tail"]["models"]["tail"]["path"] == "model_repository/tail/1/model.onnx"
    assert "tritonserver --model-repository=/models" in (d / "README.txt").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('name: "tail"', 'name: "other"'), "must equal the directory name"),
        (lambda t: t.replace("dims: [ 40 ]", "dims: [ 41 ]"), "dims"),
        (lambda t: t.replace("TYPE_FP32", "TYPE_INT8", 1), "data_type"),
        (lambda t: t.replace("dynamic_batching", "sequence_batching"), "dynamic_batching is missing"),
        (lambda t: t.replace("max_batch_size: 64", "max_batch_size: 0"), "max_batch_size"),
        (lambda t: t.replace('name: "logits"', 'name: "probs"'), "not declared"),
        (lambda t: t + "input [", "unexpected end"),
    ],
)
def test_broken_triton_configs_are_rejected(builds, tmp_path, edit, message):
    repo = tmp_path / "repo"
    shutil.copytree(builds["server"] / "model_repository", repo)
    cfg = repo / "tail" / "config.pbtxt"
    cfg.write_text(edit(cfg.read_text()))
    with pytest.raises(TritonConfigError, match=message):
        validate_repository(repo)


def test_missing_model_file_is_rejected(builds, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(builds["server"] / "model_repository", repo)
    (repo / "full" / "1" / "model.onnx").unlink()
    with pytest.raises(TritonConfigError, match=r"model\.onnx is missing"):
        validate_repository(repo)


names = st.text("abcdefgh_", min_size=1, max_size=8)
scalars = st.one_of(
    st.integers(-(2**40), 2**40), st.text("abc xyz/.-", max_size=10), st.sampled_from(["TYPE_FP32", "true"])
)


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        names,
        st.one_of(
            scalars, st.lists(st.integers(0, 99), max_size=4), st.dictionaries(names, scalars, max_size=3)
        ),
        max_size=5,
    )
)
def test_pbtxt_parser_round_trips(d):
    def fmt(v):
        if isinstance(v, dict):
            return "{ " + " ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[ " + ", ".join(fmt(x) for x in v) + " ]"
        if isinstance(v, str) and not (v.startswith("TYPE_") or v == "true"):
            return json.dumps(v)
        return str(v)

    text = "\n".join(f"{k}: {fmt(v)}  # comment" for k, v in d.items())
    assert parse_pbtxt(text) == d


def test_builds_are_reproducible(builds):
    """Two separate builds of one bundle (rpi, server) give identical models: same conversion, same
    calibration samples, so a device and a server built apart still agree on the split tensor."""
    a, b = load_manifest(builds["rpi"]), load_manifest(builds["server"])
    assert a["head"]["files"]["int8"]["sha256"] == b["head"]["files"]["int8"]["sha256"]
    assert a["tail"]["models"]["tail_int8"]["sha256"] == b["tail"]["models"]["tail_int8"]["sha256"]
    assert np.isclose(a["split"]["scale"], b["split"]["scale"])


def test_coral_refuses_float32(trained_bundle, tmp_path, capsys):
    from toolchain.cli import main

    args = [
        "build",
        "--target",
        "coral",
        "--bundle",
        str(trained_bundle),
        "--out",
        str(tmp_path / "c"),
        "--dtype",
    ]
    assert main([*args, "float32"]) == 2
    assert "supports --dtype int8, not float32" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing half-built is left behind
