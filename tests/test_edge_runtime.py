"""The edge runtime against a real `toolchain serve` on loopback: same predictions as the all-host
pipeline, no TensorFlow on the device side, degradation when the server dies and recovery after."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from helpers_serve import (
    GUARD,
    REPO,
    ServerProcess,
    build_target,
    env,
    host_pipeline,
    mnist_test,
    wait_ready,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toolchain.edge.client import ClientConfig, V2Client
from toolchain.edge.head import ExitRule
from toolchain.edge.runtime import EdgeRuntime
from toolchain.errors import ToolchainError
from toolchain.ir.fixedpoint import dequantize, quantize, round_half_away


@pytest.fixture(scope="module")
def rpi(trained_bundle, tmp_path_factory, data_root):
    return build_target("rpi", trained_bundle, tmp_path_factory.mktemp("edge"), data_root)


@pytest.fixture(scope="module")
def server(rpi):
    with ServerProcess(rpi) as s:
        yield s


def _guarded(code: str, *args: str, cwd=REPO, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    e = env()
    if pythonpath is not None:
        e["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-c", GUARD + code, *args],
        capture_output=True,
        text=True,
        env=e,
        cwd=cwd,
        timeout=120,
    )


def test_toolchain_run_matches_all_host_pipeline_without_tensorflow(rpi, server, data_root, tmp_path):
    """`toolchain run` over 1,000 MNIST test samples == head reference + exit rule + Keras tail on host."""
    out = tmp_path / "run.json"
    code = "import sys; from toolchain.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", "--bundle", str(rpi), "--server", server.url, "--dataset", "mnist", "--samples", "1000"]
    args += ["--data-dir", str(data_root), "--out", str(out), "--quiet"]
    proc = _guarded(code, *args)
    assert proc.returncode == 0, proc.stderr
    assert "FORBIDDEN_LOADED=\n" in proc.stderr or proc.stderr.rstrip().endswith("FORBIDDEN_LOADED=")
    res = json.loads(out.read_text())
    x, y = mnist_test(data_root, 1000)
    host = host_pipeline(rpi, x, data_root)
    pred = np.array(res["predictions"])
    np.testing.assert_array_equal(np.array(res["exited"]), host["exited"])
    np.testing.assert_array_equal(pred, host["prediction"])
    s = res["summary"]
    assert s["degraded"] == 0
    assert s["exit_rate"] == pytest.approx(host["exited"].mean())
    assert s["offload_rate"] == pytest.approx(1 - host["exited"].mean())  # every non-exit went to the server
    assert 0 < s["offload_rate"] < 1
    assert s["accuracy"] == pytest.approx(float(np.mean(pred == y)))
    # An int8 offload carries 40 bytes of tensor plus the v2 JSON header and the HTTP header.
    assert 40 < s["body_bytes_per_offload"] < 400
    # On the wire: the v2 body plus the request line and headers, only for offloaded samples.
    per_offload = s["bytes_per_sample"] / s["offload_rate"]
    assert s["body_bytes_per_offload"] < per_offload < s["body_bytes_per_offload"] + 300
    assert s["latency_p99_ms"] >= s["latency_p50_ms"] > 0


def test_device_copy_runs_with_only_litert_and_numpy(rpi, server, data_root, tmp_path):
    """The build's device/ directory runs `python -m toolchain.edge` on its own (as on a Raspberry Pi)."""
    board = tmp_path / "board"
    shutil.copytree(rpi, board, ignore=shutil.ignore_patterns("bundle", "*.onnx"))
    images = mnist_test(data_root, 50)[0][:, :784]
    raw = np.round(images * 255).astype(np.uint8).reshape(-1, 28, 28)
    np.save(tmp_path / "images.npy", raw)
    code = (
        "import sys, runpy; sys.path.insert(0, sys.argv[1]); import toolchain;"
        "assert toolchain.__file__.startswith(sys.argv[1]), toolchain.__file__;"
        "sys.argv = ['edge'] + sys.argv[2:]; runpy.run_module('toolchain.edge', run_name='__main__')"
    )
    proc = _guarded(
        code,
        str(board / "device"),
        *["--bundle", str(board), "--server", server.url, "--input", str(tmp_path / "images.npy")],
        *["--out", str(tmp_path / "r.json"), "--quiet"],
        cwd=tmp_path,
        pythonpath="",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.rstrip().endswith("FORBIDDEN_LOADED="), proc.stderr
    got = json.loads((tmp_path / "r.json").read_text())["predictions"]
    np.testing.assert_array_equal(got, host_pipeline(rpi, images, data_root)["prediction"])


def test_server_killed_mid_run_degrades_then_recovers(rpi, data_root):
    x, _ = mnist_test(data_root, 2000)
    host = host_pipeline(rpi, x, data_root)
    need = np.flatnonzero(~host["exited"])  # samples the device must offload
    assert len(need) >= 30
    kill_at, restart_at = need[8], need[16]
    srv = ServerProcess(rpi)
    port = srv.port
    rt = EdgeRuntime(rpi, srv.url, client=ClientConfig(timeout=1.0, retries=1, backoff=0.01, cooldown=0.05))
    results = []
    try:
        for i, row in enumerate(x):
            if i == kill_at:
                assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
            if i == restart_at:
                srv = ServerProcess(rpi, port=port)  # back on the same address
            results.append(rt.infer_one(row))
    finally:
        rt.close()
        srv.stop()
    deg = np.array([r.degraded for r in results])
    pred = np.array([r.prediction for r in results])
    off = np.array([r.offloaded for r in results])
    # While the server was down every offload degraded to the exit's answer, and only those.
    assert deg[need[(need >= kill_at) & (need < restart_at)]].all()
    np.testing.assert_array_equal(pred[deg], host["exit_pred"][deg])
    assert not deg[:kill_at].any()
    # After the restart it recovered: (almost) every later offload reached the server again.
    later = need[need >= restart_at]
    assert off[later].sum() >= len(later) - 1
    ok = ~deg
    np.testing.assert_array_equal(pred[ok], host["prediction"][ok])


def test_unreachable_server_answers_from_the_exit_and_flags_it(rpi, data_root, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there now
    out = tmp_path / "r.json"
    args = ["-m", "toolchain", "run", "--bundle", str(rpi), "--server", dead, "--dataset", "mnist"]
    args += ["--samples", "100", "--data-dir", str(data_root), "--out", str(out), "--timeout", "0.5"]
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env(), cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "not reachable" in proc.stderr
    res = json.loads(out.read_text())
    s_ = res["summary"]
    assert s_["degraded"] == 100 - round(s_["exit_rate"] * 100) > 0
    assert s_["offload_rate"] == 0 and s_["bytes_per_sample"] == 0


def test_server_from_another_build_is_refused(rpi, server, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(rpi, other, ignore=shutil.ignore_patterns("bundle", "device"))
    m = json.loads((other / "manifest.json").read_text())
    m["model"]["bundle_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ToolchainError, match="another training run"):
        EdgeRuntime(other, server.url)


def test_wire_formats_and_modes_agree(rpi, server, data_root):
    x, _ = mnist_test(data_root, 200)
    preds, sizes = {}, {}
    for wire, binary in (("int8", True), ("fp32", True), ("int8", False)):
        rt = EdgeRuntime(rpi, server.url, wire=wire, client=ClientConfig(binary=binary))
        rs = rt.run(x)
        rt.close()
        preds[wire, binary] = [r.prediction for r in rs]
        sizes[wire, binary] = {r.body_bytes for r in rs if r.offloaded}
    assert preds["int8", True] == preds["fp32", True] == preds["int8", False]
    # Binary bodies have a fixed size: 40 int8 vs 40 float32 values (+3 bytes each) after a header
    # that differs only in binary_data_size (40 vs 160: one digit). JSON text is bigger.
    (b8,), (b32,) = sizes["int8", True], sizes["fp32", True]
    assert b32 - b8 == 40 * 3 + 1
    assert min(sizes["int8", False]) > b8
    dev = EdgeRuntime(rpi, None, mode="device")
    srv = EdgeRuntime(rpi, server.url, mode="server")
    d, s = dev.run(x), srv.run(x)
    srv.close()
    assert not any(r.offloaded for r in d) and all(r.offloaded for r in s)
    assert np.mean(np.array([r.prediction for r in d]) == np.array(preds["int8", True])) > 0.9


def test_float32_head(rpi, server, data_root):
    x, _ = mnist_test(data_root, 300)
    rt = EdgeRuntime(rpi, server.url, head_dtype="float32")
    got = np.array([r.prediction for r in rt.run(x)])
    rt.close()
    assert rt.wire == "fp32" and rt.rule.kind == "max_softmax"
    np.testing.assert_array_equal(got, host_pipeline(rpi, x, data_root, head_dtype="float32")["prediction"])


def test_bad_usage_is_a_clear_error(rpi, tmp_path):
    with pytest.raises(ToolchainError, match="needs the int8 head"):
        EdgeRuntime(rpi, None, mode="device", head_dtype="float32", wire="int8")
    with pytest.raises(ToolchainError, match="needs --server"):
        EdgeRuntime(rpi, None, mode="split")
    with pytest.raises(ToolchainError, match=r"no manifest\.json"):
        EdgeRuntime(tmp_path, None, mode="device")
    with pytest.raises(ToolchainError, match="cannot load the LiteRT delegate"):
        EdgeRuntime(rpi, None, mode="device", delegate="libdoes-not-exist.so.1")
    with pytest.raises(ToolchainError, match="is not http"):
        V2Client("ftp://x")
    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.zeros((3, 900), np.float32))
    proc = subprocess.run(
        [sys.executable, "-m", "toolchain", "run", "--bundle", str(rpi), "--mode", "device", "--input", bad],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
    )
    assert proc.returncode == 2 and "is not an input batch" in proc.stderr and "Traceback" not in proc.stderr


def test_client_retries_transient_failures(server):
    """A connection that the server closed (restart, keep-alive timeout) is reopened transparently."""
    c = V2Client(server.url, ClientConfig(retries=1))
    assert c.model_metadata("tail_int8")["inputs"][0]["datatype"] == "INT8"
    c._conn.sock.close()  # the kept-alive socket dies under the client
    x = np.zeros((1, 40), np.int8)
    res = c.infer("tail_int8", "split", x, "INT8")
    assert res.outputs["logits"].shape == (1, 10) and res.attempts == 2
    c.close()
    wait_ready(server.url)


# ----------------------------------------------------------------------------------------------
# Properties of the device-side math
# ----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 8), st.integers(2, 12))), st.integers(-5, 260))
def test_int_margin_rule_matches_the_reference(logits, threshold):
    from toolchain.calibrate import exit_margin

    rule = ExitRule("int_margin", threshold)
    np.testing.assert_array_equal(rule.exits(logits), exit_margin(logits) >= threshold)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32, st.tuples(st.integers(1, 8), st.integers(2, 12)), elements=st.floats(-30, 30, width=32)
    )
)
def test_softmax_rule_matches_calibration(logits):
    from toolchain.calibrate import softmax_confidence

    np.testing.assert_allclose(
        ExitRule("max_softmax", 0.5).scores(logits), softmax_confidence(logits), rtol=1e-12
    )


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 50)), elements=st.floats(0, 1, width=32)),
    st.floats(1e-4, 0.1),
    st.integers(-128, 127),
)
def test_input_quantization_matches_the_reference(x, scale, zp):
    """The device and the IR encode inputs as TFLite's QUANTIZE: x / scale in float32, rounded half
    away from zero, plus the zero point, saturated (an independent element-by-element definition)."""
    from toolchain.ir.head import HeadIR

    # encode_input reads only the input quantization and input_size (= layers[0].n_in).
    ref = HeadIR("int8", [SimpleNamespace(n_in=x.shape[1])], 1, {"input": {"scale": scale, "zero_point": zp}})
    q = quantize(x, np.float32(scale), zp)
    want = np.array(
        [
            [min(127, max(-128, round_half_away(float(np.float32(v) / np.float32(scale))) + zp)) for v in row]
            for row in x
        ],
        dtype=np.int8,
    )
    np.testing.assert_array_equal(q, want)
    np.testing.assert_array_equal(ref.encode_input(x), want)
    back = dequantize(q, np.float32(scale), zp)
    inside = (q > -128) & (q < 127)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 * 1.0001)


def test_no_tensorflow_in_edge_modules_source():
    """Belt and braces for the subprocess checks: the device package never names the server stack."""
    for path in (REPO / "toolchain" / "edge").glob("*.py"):
        text = path.read_text()
        for name in ("tensorflow", "keras", "onnxruntime", "starlette", "uvicorn"):
            assert f"import {name}" not in text and f"from {name}" not in text, (path, name)
