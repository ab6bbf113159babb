"""Runs in the tritonclient 2.51 venv (numpy 1.x, protobuf 4): Triton's own Python clients against a
server. Reads inputs from an .npz, writes what each client got to another .npz, prints what the
metadata and configuration calls returned as JSON. Used by tests/test_serve_clients.py."""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp


def main(grpc_target: str, http_target: str, inputs_npz: str, out_npz: str) -> None:
    x = np.load(inputs_npz)["split"]
    got, info = {}, {}
    g = tgrpc.InferenceServerClient(grpc_target)
    info["grpc_live"], info["grpc_ready"] = g.is_server_live(), g.is_model_ready("tail_int8")
    info["grpc_metadata"] = g.get_model_metadata("tail_int8", as_json=True)
    info["grpc_config"] = g.get_model_config("tail_int8", as_json=True)
    inp = tgrpc.InferInput("split", list(x.shape), "INT8")
    inp.set_data_from_numpy(x)
    got["grpc"] = g.infer("tail_int8", [inp]).as_numpy("logits")

    answers: queue.Queue = queue.Queue()
    g.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(len(x)):
        one = tgrpc.InferInput("split", [1, x.shape[1]], "INT8")
        one.set_data_from_numpy(x[i : i + 1])
        g.async_stream_infer("tail_int8", [one], request_id=str(i))
    rows = {}
    for _ in range(len(x)):
        result, error = answers.get(timeout=20)
        if error is not None:
            raise SystemExit(f"stream error: {error}")
        rows[int(result.get_response().id)] = result.as_numpy("logits")[0]
    g.stop_stream()
    got["grpc_stream"] = np.stack([rows[i] for i in range(len(x))])
    try:
        g.infer("nope", [inp])
    except tgrpc.InferenceServerException as exc:
        info["grpc_unknown_model"] = [exc.status(), exc.message()]

    h = thttp.InferenceServerClient(http_target)
    info["http_live"] = h.is_server_live()
    info["http_config"] = h.get_model_config("tail_int8")
    hin = thttp.InferInput("split", list(x.shape), "INT8")
    hin.set_data_from_numpy(x, binary_data=True)
    out = thttp.InferRequestedOutput("logits", binary_data=True)
    got["http"] = h.infer("tail_int8", [hin], outputs=[out]).as_numpy("logits")
    np.savez(out_npz, **got)
    print(json.dumps(info))


if __name__ == "__main__":
    main(*sys.argv[1:5])
