"""Load on the KServe v2 tail server over loopback: requests/s and latency p50/p99 at concurrency 1, 8
and 32, JSON vs binary tensors, dynamic batching on vs off, and bytes per request.

The server is a real `toolchain serve` process; the load generator runs client threads, each with one
keep-alive connection (the standard-library client the device uses), sending one int8 split tensor
[1, 40] per request to `tail_int8` (what a device sends). Every configuration is bounded by a request
count and a time limit. Client and server share this machine's 2 cores, so the absolute numbers are
a lower bound for a separate server; the ratios between configurations are measured side by side.

    python benchmarks/serve_load.py --build build/rpi            # an rpi/server build directory
    python benchmarks/serve_load.py --bundle bundle --data-dir DIR  # builds rpi into a temp dir first
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _results import output_path  # benchmarks/ is sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toolchain.edge.client import (  # noqa: E402
    HEADER_LENGTH,
    decode_response,
    encode_request,
    wait_until_ready,
)
from toolchain.fsutil import atomic_write_text  # noqa: E402
from toolchain.progress import markdown_table  # noqa: E402


def start_server(build: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "toolchain", "serve", "--bundle", str(build), "--port", "0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    m = re.search(r":(\d+) ", proc.stdout.readline())
    if m is None:
        proc.kill()
        raise SystemExit(f"server did not start: {proc.stderr.read()}")
    port = int(m.group(1))
    wait_until_ready(f"http://127.0.0.1:{port}", timeout=10.0)
    return proc, port


def load(port: int, concurrency: int, binary: bool, n: int, max_seconds: float, x: np.ndarray) -> dict:
    lat: list[float] = []
    sent: list[int] = []
    received: list[int] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(n))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        my_lat, my_sent, my_recv = [], [], []
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, hdrs = encode_request("split", x[i % len(x)][None], "INT8", binary)
            head = f"POST /v2/models/tail_int8/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            head += "Accept-Encoding: identity\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
            head += f"Content-Length: {len(body)}\r\n\r\n"  # what http.client sends
            t0 = time.perf_counter()
            c.request("POST", "/v2/models/tail_int8/infer", body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            my_lat.append(time.perf_counter() - t0)
            if r.status != 200:
                errors[0] += 1
                continue
            decode_response(data, r.getheader(HEADER_LENGTH))
            my_sent.append(len(head) + len(body))
            my_recv.append(len(data))
        with lock:
            lat.extend(my_lat)
            sent.extend(my_sent)
            received.extend(my_recv)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "requests": len(lat),
        "errors": errors[0],
        "seconds": round(wall, 3),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "request_bytes": round(float(np.mean(sent)), 1),
        "request_body_bytes": len(encode_request("split", x[0][None], "INT8", binary)[0]),
        "response_body_bytes": round(float(np.mean(received)), 1),
    }


def stats(port: int) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/v2/models/tail_int8/stats")
    return json.loads(c.getresponse().read())["model_stats"][0]


def ensure_build(args: argparse.Namespace) -> Path:
    if args.build:
        return Path(args.build)
    from toolchain.pipeline import BuildOptions, build
    from toolchain.targets import load_target

    out = Path(tempfile.mkdtemp(prefix="serve-load-")) / "rpi"
    build(
        load_target("rpi"),
        out=out,
        bundle=args.bundle,
        options=BuildOptions(data_dir=args.data_dir, quiet=True),
    )
    return out


def request_bytes(port: int, model: str, x: np.ndarray, datatype: str, binary: bool) -> dict:
    """Bytes of one request and its response (measured on one real request)."""
    body, hdrs = encode_request("split", x, datatype, binary)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", f"/v2/models/{model}/infer", body=body, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    assert r.status == 200, data
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: identity\r\n"
    )
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + f"Content-Length: {len(body)}\r\n\r\n"
    return {"request_body": len(body), "request_total": len(head) + len(body), "response_body": len(data)}


def median_row(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k in ("requests_per_s", "p50_ms", "p99_ms", "mean_rows_per_run"):
        out[k] = round(float(np.median([r[k] for r in runs])), 3)
    out["requests_per_s_all_rounds"] = [r["requests_per_s"] for r in runs]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--build", help="rpi/server build directory")
    src.add_argument("--bundle", help="trained bundle (an rpi build is made in a temp dir)")
    p.add_argument("--data-dir")
    p.add_argument("--requests", type=int, default=2000, help="per configuration and round")
    p.add_argument("--max-seconds", type=float, default=15.0, help="per configuration and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; configurations interleaved in each")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument(
        "--out",
        help="results directory (default: benchmarks/results for the full run, "
        "build/benchmarks for a reduced one)",
    )
    args = p.parse_args()
    out = output_path(p, args, "", neutral={"build", "bundle"})
    build_dir = ensure_build(args)
    x = np.random.default_rng(0).integers(-128, 128, (4096, 40)).astype(np.int8)
    servers = {True: start_server(build_dir), False: start_server(build_dir, "--no-batching")}
    configs = [
        (batching, conc, binary)
        for conc in (int(c) for c in args.concurrency.split(","))
        for binary in (False, True)
        for batching in (True, False)
    ]
    measured: dict[tuple, list[dict]] = {c: [] for c in configs}
    try:
        for port in (pp for _, pp in servers.values()):
            load(port, 4, True, 300, 5, x)  # warm-up
        for rnd in range(args.rounds):
            for batching, conc, binary in configs:
                port = servers[batching][1]
                before = stats(port)
                r = load(port, conc, binary, args.requests, args.max_seconds, x)
                after = stats(port)
                runs = after["runs"] - before["runs"]
                r.update(
                    batching=batching,
                    concurrency=conc,
                    encoding="binary" if binary else "json",
                    mean_rows_per_run=round((after["rows"] - before["rows"]) / max(runs, 1), 2),
                    round=rnd,
                )
                measured[batching, conc, binary].append(r)
                print(json.dumps(r), flush=True)
        port = servers[True][1]
        sizes = [
            {"payload": f"{dt} [1, 40] to {model}", "tensors": "binary" if b else "json"}
            | request_bytes(port, model, (x[:1] if dt == "INT8" else x[:1].astype(np.float32) / 7), dt, b)
            for model, dt in (("tail_int8", "INT8"), ("tail", "FP32"))
            for b in (False, True)
        ]
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(15)
    rows = [median_row(measured[c]) for c in configs]
    meta = {
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "machine": "2 vCPU shared by client and server (and other work on the machine), loopback",
        "payload": "one int8 split tensor [1, 40] per request to tail_int8",
        "server": "toolchain serve (Starlette + uvicorn h11, onnxruntime, 1 intra-op thread); batching on: "
        "max batch 64 rows, max queue delay 0.5 ms, waits only while more requests are arriving",
        "client": "Python threads, one keep-alive http.client connection each (the client is GIL-bound)",
        "requests": f"{args.requests} per config and round; {args.rounds} rounds, interleaved; medians",
    }
    atomic_write_text(
        out / "serve_load.json",
        json.dumps(
            {
                "meta": meta,
                "rows": rows,
                "bytes": sizes,
                "all_rounds": [r for rs in measured.values() for r in rs],
            },
            indent=2,
        )
        + "\n",
    )
    headers = ["concurrency", "tensors", "batching", "req/s", "p50 ms", "p99 ms", "rows/run", "bytes/request"]
    table = markdown_table(
        headers,
        [
            [
                r["concurrency"],
                r["encoding"],
                "on" if r["batching"] else "off",
                r["requests_per_s"],
                r["p50_ms"],
                r["p99_ms"],
                r["mean_rows_per_run"],
                r["request_bytes"],
            ]
            for r in rows
        ],
    )
    size_table = markdown_table(
        ["payload", "tensors", "request body", "request incl. HTTP headers", "response body"],
        [
            [z["payload"], z["tensors"], z["request_body"], z["request_total"], z["response_body"]]
            for z in sizes
        ],
    )
    text = "# serve_load: KServe v2 tail server on loopback\n\n" + "".join(
        f"- {k}: {v}\n" for k, v in meta.items()
    )
    text += "\n" + table + "\n\n## Bytes per request\n\n" + size_table + "\n"
    atomic_write_text(out / "serve_load.md", text)
    print(table)
    print(size_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
