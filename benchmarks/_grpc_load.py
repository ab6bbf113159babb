"""A v2 gRPC load generator for servers perf_analyzer cannot drive (KServe's and MLServer's gRPC
servers do not implement Triton's ModelConfig, which perf_analyzer asks for before it starts).

Closed loop like perf_analyzer: `--concurrency` requests in flight, each sent again as soon as its
answer arrives, spread over `--processes` processes running grpc.aio (one channel each); unary
ModelInfer with raw_input_contents, or one ModelStreamInfer stream per in-flight slot with
`--streaming`. Prints one JSON line: inferences/s, p50/p99 latency, errors.

    python benchmarks/_grpc_load.py --target 127.0.0.1:8001 --concurrency 32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _request(model: str, i: int):
    from toolchain.edge.v2grpc import grpc_predict_v2_pb2 as pb

    rng = np.random.default_rng(i)
    raw = rng.integers(-128, 128, (1, 40)).astype(np.int8).tobytes()
    req = pb.ModelInferRequest(model_name=model, raw_input_contents=[raw])
    t = req.inputs.add()
    t.name, t.datatype = "split", "INT8"
    t.shape.extend([1, 40])
    return req


async def _run(target: str, model: str, slots: int, warmup: float, seconds: float, streaming: bool) -> dict:
    import grpc

    from toolchain.edge.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    lat: list[float] = []
    errors = [0]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        start = time.perf_counter()
        t_measure, t_end = start + warmup, start + warmup + seconds

        async def unary(k: int) -> None:
            req = _request(model, k)
            while (t0 := time.perf_counter()) < t_end:
                try:
                    await stub.ModelInfer(req, timeout=10)
                except grpc.aio.AioRpcError:
                    errors[0] += 1
                if t0 >= t_measure:
                    lat.append(time.perf_counter() - t0)

        async def stream(k: int) -> None:
            req = _request(model, k)
            call = stub.ModelStreamInfer()
            while (t0 := time.perf_counter()) < t_end:
                await call.write(req)
                resp = await call.read()
                if resp.error_message:
                    errors[0] += 1
                if t0 >= t_measure:
                    lat.append(time.perf_counter() - t0)
            await call.done_writing()

        await asyncio.gather(*((stream if streaming else unary)(k) for k in range(slots)))
    return {"latencies": lat, "errors": errors[0]}


def _worker(args: tuple) -> dict:
    return asyncio.run(_run(*args))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the v2 gRPC server")
    p.add_argument("--model", default="tail_int8")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--streaming", action="store_true")
    a = p.parse_args()
    procs = max(1, min(a.processes, a.concurrency))
    slots = [a.concurrency // procs + (k < a.concurrency % procs) for k in range(procs)]
    jobs = [(a.target, a.model, n, a.warmup, a.seconds, a.streaming) for n in slots]
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_worker, jobs)
    lat = np.array([x for part in parts for x in part["latencies"]]) * 1000
    print(
        json.dumps(
            {
                "infer_per_s": round(len(lat) / a.seconds, 1),
                "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
                "errors": sum(part["errors"] for part in parts),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
