"""The v2 gRPC endpoint of `toolchain serve` on loopback: the proto, the RPCs, errors, limits, and
third-party clients (tritonclient's gRPC and HTTP clients, perf_analyzer) against it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from helpers_serve import REPO, ServerProcess, build_target, triton_venv

from toolchain.edge.v2grpc import grpc_predict_v2_pb2 as pb
from toolchain.edge.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

MAX_BODY = 65536


@pytest.fixture(scope="module")
def rpi(trained_bundle, tmp_path_factory, data_root):
    return build_target("rpi", trained_bundle, tmp_path_factory.mktemp("grpc"), data_root)


@pytest.fixture(scope="module")
def server(rpi):
    with ServerProcess(rpi, "--max-body-bytes", str(MAX_BODY)) as s:
        assert s.grpc_target is not None
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(rpi):
    import onnxruntime as ort

    return {n: ort.InferenceSession(str(rpi / f"{n}.onnx")) for n in ("tail", "tail_int8", "full")}


def request(model: str, x: np.ndarray, datatype: str, name: str = "split", **kw) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(
        model_name=model, raw_input_contents=[x.astype(x.dtype.newbyteorder("<")).tobytes()], **kw
    )
    t = req.inputs.add()
    t.name, t.datatype = name, datatype
    t.shape.extend(x.shape)
    return req


def logits(resp: pb.ModelInferResponse) -> np.ndarray:
    (out,) = [i for i, o in enumerate(resp.outputs) if o.name == "logits"]
    o = resp.outputs[out]
    assert o.datatype == "FP32"
    return np.frombuffer(resp.raw_output_contents[out], "<f4").reshape(list(o.shape))


# -- the proto ---------------------------------------------------------------------------------------
def test_generated_modules_match_the_proto():
    proc = subprocess.run(
        [sys.executable, "-m", "toolchain.edge.v2grpc.generate", "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_proto_agrees_with_tritonclient_descriptors():
    """Every message, field (number, type, label), enum value and RPC we declare is Triton's."""
    from proto_descriptors import describe

    python, e = triton_venv()
    script = str(REPO / "tests" / "proto_descriptors.py")
    proc = subprocess.run([str(python), script], capture_output=True, text=True, env=e, timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    ours = describe([pb.DESCRIPTOR])
    assert len(ours["messages"]) >= 25 and len(ours["rpcs"]) == 8
    for name, fields in ours["messages"].items():
        assert name in theirs["messages"], f"message {name} is not in Triton's protocol"
        for field, spec in fields.items():
            assert theirs["messages"][name].get(field) == spec, (name, field, spec)
    for name, values in ours["enums"].items():
        assert values.items() <= theirs["enums"][name].items(), name
    for name, rpc in ours["rpcs"].items():
        assert theirs["rpcs"][name] == rpc, name


# -- the RPCs ----------------------------------------------------------------------------------------
def test_health_metadata_and_config(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert "binary_tensor_data" in meta.extensions and "statistics" not in meta.extensions
    assert stub.ModelReady(pb.ModelReadyRequest(name="tail_int8")).ready
    m = stub.ModelMetadata(pb.ModelMetadataRequest(name="tail_int8", version="1"))
    assert (m.name, list(m.versions), m.platform) == ("tail_int8", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("split", "INT8", [-1, 40])]
    assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [("logits", "FP32", [-1, 10])]
    c = stub.ModelConfig(pb.ModelConfigRequest(name="tail_int8")).config
    assert (c.name, c.platform, c.max_batch_size) == ("tail_int8", "onnxruntime_onnx", 64)
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in c.input] == [
        ("split", "TYPE_INT8", [40])
    ]
    assert c.dynamic_batching.max_queue_delay_microseconds == 500
    assert set(json.loads(c.parameters["split_quant"].string_value)) == {"scale", "zero_point"}
    assert len(c.parameters["bundle_sha256"].string_value) == 64
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "tail_int8" in err.value.details()


def test_rest_config_endpoint_is_the_same_configuration(server, stub):
    import http.client

    from google.protobuf import json_format

    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    c.request("GET", "/v2/models/tail/config")
    rest = json.loads(c.getresponse().read())
    grpc_config = stub.ModelConfig(pb.ModelConfigRequest(name="tail")).config
    assert json_format.ParseDict(rest, pb.ModelConfig()) == grpc_config
    assert rest["input"] == [{"name": "split", "data_type": "TYPE_FP32", "dims": [40]}]


def test_infer_raw_and_typed_contents_match_onnxruntime(stub, sessions):
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (5, 40)).astype(np.int8)
    f = np.abs(rng.normal(size=(3, 40))).astype(np.float32)
    resp = stub.ModelInfer(request("tail_int8", q, "INT8", id="r1"))
    assert (resp.model_name, resp.model_version, resp.id) == ("tail_int8", "1", "r1")
    np.testing.assert_allclose(
        logits(resp), sessions["tail_int8"].run(None, {"split": q})[0], rtol=0, atol=1e-5
    )
    typed = pb.ModelInferRequest(model_name="tail")
    t = typed.inputs.add()
    t.name, t.datatype = "split", "FP32"
    t.shape.extend(f.shape)
    t.contents.fp32_contents.extend(f.ravel().tolist())
    np.testing.assert_allclose(
        logits(stub.ModelInfer(typed)), sessions["tail"].run(None, {"split": f})[0], atol=1e-5
    )
    full = np.abs(rng.normal(size=(2, 800))).astype(np.float32)
    req = request("full", full, "FP32", name="input")
    req.outputs.add().name = "exit_logits"
    resp = stub.ModelInfer(req)
    assert [o.name for o in resp.outputs] == ["exit_logits"]
    got = np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(2, 10)
    np.testing.assert_allclose(got, sessions["full"].run(None, {"input": full})[1], atol=1e-5)


def test_stream_answers_every_request_and_reports_errors_in_band(stub, sessions):
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (40, 40)).astype(np.int8)
    reqs = [request("tail_int8", q[i : i + 1], "INT8", id=str(i)) for i in range(40)]
    reqs[7] = request("tail_int8", q[:1].astype(np.int16), "INT16", id="7")  # a bad one mid-stream
    answers = {r.infer_response.id: r for r in stub.ModelStreamInfer(iter(reqs))}
    assert set(answers) == {str(i) for i in range(40)}
    assert "expects INT8" in answers["7"].error_message
    assert (
        answers["7"].infer_response.parameters["status_code"].int64_param
        == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    want = sessions["tail_int8"].run(None, {"split": q})[0]
    for i in range(40):
        if i != 7:
            assert answers[str(i)].error_message == ""
            np.testing.assert_allclose(logits(answers[str(i)].infer_response)[0], want[i], atol=1e-5)


def _raw(
    model: str, datatype: str, shape: list[int], raw: bytes, name: str = "split"
) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, raw_input_contents=[raw])
    t = req.inputs.add()
    t.name, t.datatype = name, datatype
    t.shape.extend(shape)
    return req


MALFORMED = {
    "wrong dtype": (_raw("tail", "FP64", [1, 40], bytes(320)), "INVALID_ARGUMENT", "expects FP32"),
    "unknown dtype": (_raw("tail", "FP8", [1, 40], bytes(40)), "INVALID_ARGUMENT", "FP8"),
    "shape mismatch": (_raw("tail", "FP32", [1, 41], bytes(164)), "INVALID_ARGUMENT", "expects [n, 40]"),
    "length mismatch": (_raw("tail", "FP32", [1, 40], bytes(100)), "INVALID_ARGUMENT", "needs 160"),
    "negative dim": (_raw("tail", "FP32", [-1, 40], bytes(160)), "INVALID_ARGUMENT", "negative"),
    "wrong input name": (
        _raw("tail", "FP32", [1, 40], bytes(160), name="x"),
        "INVALID_ARGUMENT",
        "no input 'x'",
    ),
    "no inputs": (pb.ModelInferRequest(model_name="tail"), "INVALID_ARGUMENT", "non-empty"),
    "raw count": (
        pb.ModelInferRequest(
            model_name="tail",
            raw_input_contents=[b"", b""],
            inputs=[pb.ModelInferRequest.InferInputTensor(name="split", datatype="FP32", shape=[1, 40])],
        ),
        "INVALID_ARGUMENT",
        "one per input",
    ),
    "typed count": (
        pb.ModelInferRequest(
            model_name="tail",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="split",
                    datatype="FP32",
                    shape=[1, 40],
                    contents=pb.InferTensorContents(fp32_contents=[1.0]),
                )
            ],
        ),
        "INVALID_ARGUMENT",
        "has 1 values",
    ),
    "int8 range": (
        pb.ModelInferRequest(
            model_name="tail_int8",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="split",
                    datatype="INT8",
                    shape=[1, 40],
                    contents=pb.InferTensorContents(int_contents=[300] * 40),
                )
            ],
        ),
        "INVALID_ARGUMENT",
        "outside the INT8 range",
    ),
    "non-finite": (
        _raw("tail", "FP32", [1, 40], np.full(40, np.nan, "<f4").tobytes()),
        "INVALID_ARGUMENT",
        "non-finite",
    ),
    "too many rows": (_raw("tail", "FP32", [65, 40], bytes(65 * 160)), "INVALID_ARGUMENT", "at most 64"),
    "unknown output": (
        pb.ModelInferRequest(
            model_name="tail",
            raw_input_contents=[bytes(160)],
            inputs=[pb.ModelInferRequest.InferInputTensor(name="split", datatype="FP32", shape=[1, 40])],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="z")],
        ),
        "INVALID_ARGUMENT",
        "no output 'z'",
    ),
    "unknown model": (_raw("nope", "FP32", [1, 40], bytes(160)), "NOT_FOUND", "unknown model 'nope'"),
    "unknown version": (
        pb.ModelInferRequest(
            model_name="tail",
            model_version="7",
            raw_input_contents=[bytes(160)],
            inputs=[pb.ModelInferRequest.InferInputTensor(name="split", datatype="FP32", shape=[1, 40])],
        ),
        "NOT_FOUND",
        "no version '7'",
    ),
    "oversize": (
        _raw("tail", "FP32", [1, 40], bytes(MAX_BODY + 1000)),
        "RESOURCE_EXHAUSTED",
        "larger than max",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_a_status_and_a_message(stub, case):
    req, code, msg = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req)
    assert err.value.code().name == code, err.value.details()
    assert msg in err.value.details()
    assert stub.ServerReady(pb.ServerReadyRequest()).ready  # the same channel still works


def test_reliability_10000_requests_with_5_percent_malformed(server, stub, sessions):
    """Unary and streamed: every malformed request is refused with a message, every valid one gets
    the right answer, and nothing is an internal error."""
    rng = np.random.default_rng(7)
    n, bad_every = 10_000, 20
    q = rng.integers(-128, 128, (n, 40)).astype(np.int8)
    want = sessions["tail_int8"].run(None, {"split": q})[0]
    kinds = list(MALFORMED)
    reqs = []
    for i in range(n):
        if i % bad_every == 0:
            r = pb.ModelInferRequest()
            r.CopyFrom(MALFORMED[kinds[(i // bad_every) % len(kinds)]][0])
            r.id = str(i)
        else:
            r = request("tail_int8", q[i : i + 1], "INT8", id=str(i))
        reqs.append(r)
    # The first half goes unary over 6 threads, the second half over one stream; an oversize
    # message ends a stream (gRPC refuses it before the handler), so those go unary too.
    oversize = {i for i in range(n // 2, n) if reqs[i].ByteSize() > MAX_BODY}
    unary_idx = [*range(n // 2), *sorted(oversize)]
    results: dict[int, tuple[str, str, np.ndarray | None]] = {}
    names = {c.value[0]: c.name for c in grpc.StatusCode}

    def unary(idx: list[int]) -> None:
        for i in idx:
            try:
                results[i] = ("OK", "", logits(stub.ModelInfer(reqs[i], timeout=10))[0])
            except grpc.RpcError as exc:
                results[i] = (exc.code().name, exc.details(), None)

    threads = [threading.Thread(target=unary, args=(unary_idx[k::6],)) for k in range(6)]
    for t in threads:
        t.start()
    window = threading.Semaphore(32)  # requests in flight on the stream (the queue holds 256)

    def streamed():
        for i in range(n // 2, n):
            if i not in oversize:
                window.acquire()
                yield reqs[i]

    for msg in stub.ModelStreamInfer(streamed(), timeout=120):
        window.release()
        i = int(msg.infer_response.id)
        if msg.error_message:
            code = names[msg.infer_response.parameters["status_code"].int64_param]
            results[i] = (code, msg.error_message, None)
        else:
            results[i] = ("OK", "", logits(msg.infer_response)[0])
    for t in threads:
        t.join(120)
    assert len(results) == n
    bad = good = 0
    for i, (code, message, out) in results.items():
        if i % bad_every == 0:
            assert code in ("INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED") and message, (i, code)
            bad += 1
        else:
            assert code == "OK", (i, code, message)
            np.testing.assert_allclose(out, want[i], rtol=0, atol=1e-5)
            good += 1
    assert (bad, good) == (500, 9500)
    assert stub.ServerReady(pb.ServerReadyRequest()).ready and server.proc.poll() is None


def test_full_queue_answers_unavailable(rpi):
    """A model whose worker is held busy: one request runs, one waits, the next gets UNAVAILABLE."""
    from toolchain.serve import ServerConfig, ServerState, load_models
    from toolchain.serve.batcher import BatchConfig
    from toolchain.serve.grpc_server import create_grpc_server

    models = [m for m in load_models(rpi) if m.name == "tail"]
    gate = threading.Event()
    real_run = models[0].run
    models[0].run = lambda x: (gate.wait(10), real_run(x))[1]  # hold the worker until released
    state = ServerState(ServerConfig(batch=BatchConfig(max_queue=1, max_queue_delay_ms=0)))
    req = request("tail", np.zeros((1, 40), np.float32), "FP32")

    async def scenario() -> None:
        await models[0].start(state.config.batch)
        server, port = create_grpc_server(models, state, "127.0.0.1", 0)
        await server.start()
        state.ready = True
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                s = pb_grpc.GRPCInferenceServiceStub(ch)
                first = asyncio.ensure_future(s.ModelInfer(req, timeout=20))
                await asyncio.sleep(0.3)  # running (held)
                second = asyncio.ensure_future(s.ModelInfer(req, timeout=20))
                await asyncio.sleep(0.3)  # waiting in the queue of 1
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await s.ModelInfer(req, timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "queue is full" in err.value.details()
                gate.set()
                assert len((await first).outputs) == len((await second).outputs) == 1
        finally:
            gate.set()
            await server.stop(0)
            await models[0].batcher.close()

    asyncio.run(scenario())
    assert models[0].batcher.stats.rejected == 1


def test_workers_share_both_ports_and_stop_together(rpi, sessions):
    """--workers 2: two processes answer on the same REST and gRPC ports; SIGTERM stops both."""
    import http.client
    import signal

    with ServerProcess(rpi, "--workers", "2") as s:
        children = [
            int(p) for p in Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
        ]
        assert len(children) >= 2  # the workers (spawn may add its resource tracker)
        q = np.random.default_rng(2).integers(-128, 128, (64, 40)).astype(np.int8)
        want = sessions["tail_int8"].run(None, {"split": q})[0]
        with grpc.insecure_channel(s.grpc_target) as ch:  # one connection: one worker
            st = pb_grpc.GRPCInferenceServiceStub(ch)
            for i in range(64):
                got = logits(st.ModelInfer(request("tail_int8", q[i : i + 1], "INT8")))[0]
                np.testing.assert_allclose(got, want[i], atol=1e-5)
        counts = set()
        for _ in range(40):  # new REST connections: the kernel spreads them over the workers
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            c.request("GET", "/v2/models/tail_int8/stats")
            r = c.getresponse()
            assert r.status == 200
            counts.add(json.loads(r.read())["model_stats"][0]["requests"])
            c.close()
        assert counts == {0, 64}  # both workers answered REST; only one served the gRPC channel
        assert s.stop() in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 10  # spawn's resource tracker leaves when the parent's pipe closes
    while [pid for pid in children if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_bytes_on_the_wire_per_offload_at_the_socket(server):
    """benchmarks/_wire_bytes.py's counting proxy: the steady-state gRPC stream offload stays within
    120 bytes upstream, over 3x fewer than REST with binary tensors (the device's radio pays them)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import _wire_bytes

    rows = {r["transport"]: r for r in _wire_bytes.measure(server.port, server.grpc_port, n=200)}
    grpc_row, rest = rows["gRPC, one ModelStreamInfer stream"], rows["REST, binary tensors"]
    assert all(r["connections"] == 1 for r in rows.values())  # one persistent connection each
    assert grpc_row["steady_request_bytes"] <= 120
    assert rest["steady_request_bytes"] > 3 * grpc_row["steady_request_bytes"]
    # The first offload carries the connection set-up (HTTP/2 preface, SETTINGS, stream HEADERS).
    assert grpc_row["first_request_bytes"] > grpc_row["steady_request_bytes"] + 100
