"""Triton's clients against `toolchain serve`: tritonclient's gRPC and HTTP Python clients, and
perf_analyzer over gRPC (unary and streaming) and HTTP. They run from the tritonclient venv made
by scripts/install.sh (their pins clash with ours: numpy<2, protobuf<5)."""

from __future__ import annotations

import csv
import http.client
import json
import subprocess

import numpy as np
import pytest
from helpers_serve import REPO, TRITON_VENV, ServerProcess, build_target, triton_venv


@pytest.fixture(scope="module")
def rpi(trained_bundle, tmp_path_factory, data_root):
    return build_target("rpi", trained_bundle, tmp_path_factory.mktemp("clients"), data_root)


@pytest.fixture(scope="module")
def server(rpi):
    with ServerProcess(rpi) as s:
        yield s


def stats(server) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    c.request("GET", "/v2/models/tail_int8/stats")
    return json.loads(c.getresponse().read())["model_stats"][0]


def test_tritonclient_grpc_and_http_clients(server, rpi, tmp_path):
    import onnxruntime as ort

    python, e = triton_venv()
    x = np.random.default_rng(5).integers(-128, 128, (16, 40)).astype(np.int8)
    np.savez(tmp_path / "in.npz", split=x)
    script = REPO / "tests" / "triton_clients.py"
    args = [server.grpc_target, f"127.0.0.1:{server.port}", tmp_path / "in.npz", tmp_path / "out.npz"]
    proc = subprocess.run(
        [str(python), str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["grpc_live"] and info["grpc_ready"] and info["http_live"]
    assert info["grpc_metadata"]["inputs"] == [{"name": "split", "datatype": "INT8", "shape": ["-1", "40"]}]
    assert info["grpc_config"]["config"]["max_batch_size"] == 64
    assert info["http_config"]["input"] == [{"name": "split", "data_type": "TYPE_INT8", "dims": [40]}]
    assert info["grpc_unknown_model"][0] == "StatusCode.NOT_FOUND" and "nope" in info["grpc_unknown_model"][1]
    want = ort.InferenceSession(str(rpi / "tail_int8.onnx")).run(None, {"split": x})[0]
    got = np.load(tmp_path / "out.npz")
    for client in ("grpc", "grpc_stream", "http"):
        np.testing.assert_allclose(got[client], want, rtol=0, atol=1e-5, err_msg=client)


def perf_analyzer(server, protocol: str, *extra: str, out) -> dict:
    _, e = triton_venv()
    url = server.grpc_target if protocol == "grpc" else f"127.0.0.1:{server.port}"
    cmd = [str(TRITON_VENV / "bin" / "perf_analyzer"), "-m", "tail_int8", "-u", url, "-i", protocol]
    cmd += ["--concurrency-range", "4", "--measurement-mode", "count_windows"]
    cmd += ["--measurement-request-count", "200", "--shape", "split:40", "-f", str(out), *extra]
    # This checks that perf_analyzer works with the server, not its numbers (benchmarks/serve_load.py
    # measures): on a shared 2-core machine, windows may differ by more than the default 10 %.
    cmd += ["--stability-percentage", "999"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    return row


@pytest.mark.parametrize(
    "protocol, extra",
    [("grpc", ()), ("grpc", ("--streaming",)), ("http", ())],
    ids=["grpc", "grpc-streaming", "http"],
)
def test_perf_analyzer_runs_against_toolchain_serve(server, protocol, extra, tmp_path):
    before = stats(server)
    row = perf_analyzer(server, protocol, *extra, out=tmp_path / "pa.csv")
    after = stats(server)
    assert float(row["Inferences/Second"]) > 0 and float(row["p99 latency"]) > 0
    # perf_analyzer's requests really reached the model: at least 3 windows of 200.
    assert after["requests"] - before["requests"] >= 600
