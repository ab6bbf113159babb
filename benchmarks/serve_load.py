"""The tail server at the limit: `toolchain serve` (REST and v2 gRPC, batching on and off) side by
side with KServe, MLServer and PyTriton serving the same ONNX tail, one server at a time, rounds
interleaved; plus the in-process onnxruntime floor and the bytes on the wire per offload.

Load: perf_analyzer (Triton's C++ load generator, tritonclient 2.51.0) over gRPC (unary and
streaming) and HTTP wherever the server answers Triton's model configuration request; wrk (C,
HTTP/1.1 keep-alive, JSON tensors) for REST on every server; benchmarks/_grpc_load.py (grpc.aio,
2 processes) for gRPC on every server, because KServe's and MLServer's gRPC servers lack ModelConfig.
Every request is one int8 split [1, 40] to tail_int8, as a device sends it. Client and server share
the machine's 2 cores: each row shows the load generator's and the server's CPU use (100 % = one
core) over the measurement, so a saturated load generator is visible.

    python benchmarks/serve_load.py --build build/rpi             # full run (writes benchmarks/results/)
    python benchmarks/serve_load.py --bundle bundle --data-dir D   # builds rpi into a temp dir first
    python benchmarks/serve_load.py --build build/rpi --quick      # smoke run -> build/benchmarks/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _serve_compare as sc  # the sibling scripts (benchmarks/ is sys.path[0])
import _wire_bytes
import numpy as np
from _results import out_help, output_path

from toolchain.progress import markdown_table

ROOT = Path(__file__).resolve().parent.parent

BODY = json.dumps(
    {"inputs": [{"name": "split", "datatype": "INT8", "shape": [1, 40], "data": list(range(-20, 20))}]},
    separators=(",", ":"),
)


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


def tail_onnx(build: Path) -> Path:
    manifest = json.loads((build / "manifest.json").read_text())
    return build / manifest["tail"]["models"]["tail_int8"]["path"]


def ort_floor(onnx: Path, calls: int = 20000) -> dict:
    """onnxruntime alone, in this process, one intra-op thread: µs per run at batch 1 and 64."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    out = {}
    for rows in (1, 64):
        x = np.random.default_rng(rows).integers(-128, 128, (rows, 40)).astype(np.int8)
        for _ in range(500):
            sess.run(["logits"], {"split": x})
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(["logits"], {"split": x})
        us = (time.perf_counter() - t0) / calls * 1e6
        out[f"batch_{rows}_us"] = round(us, 2)
        out[f"batch_{rows}_us_per_row"] = round(us / rows, 3)
    out["infer_per_s_at_batch_64"] = round(64 / (out["batch_64_us"] / 1e6))
    return out


def grpc_load(server: sc.Server, concurrency: int, seconds: float, streaming: bool = False) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "_grpc_load.py"),
        "--target",
        f"127.0.0.1:{server.grpc_port}",
    ]
    cmd += ["--concurrency", str(concurrency), "--seconds", f"{seconds:g}", "--processes", "2"]
    if streaming:
        cmd.append("--streaming")
    row, usage = sc._measured(cmd, server, dict(os.environ))
    if row["returncode"] != 0:
        return row | {"error": row["output"][-300:]}
    res = json.loads(row["output"].strip().splitlines()[-1])
    return row | usage | res | {"unstable": False}


def measure_server(
    server: sc.Server, kind: str, concs: list[int], seconds: float, workdir: Path
) -> list[dict]:
    """Every load generator this server supports, at every concurrency."""
    pa = sc.run_perf_analyzer
    rows = []
    for c in concs:
        plans = [("wrk", "REST (JSON)", lambda c=c: sc.run_wrk(server, c, seconds, BODY, workdir))]
        plans.append(("grpc_load", "gRPC", lambda c=c: grpc_load(server, c, seconds)))
        if server.triton_config:
            plans.append(("perf_analyzer", "gRPC", lambda c=c: pa(server, "grpc", c, seconds)))
            if server.streaming:
                plans.append(
                    ("perf_analyzer", "gRPC stream", lambda c=c: pa(server, "grpc", c, seconds, True))
                )
            plans.append(("perf_analyzer", "HTTP (binary)", lambda c=c: pa(server, "http", c, seconds)))
        for generator, protocol, run in plans:
            r = run()
            r.pop("output", None)
            r |= {
                "server": server.name,
                "kind": kind,
                "generator": generator,
                "protocol": protocol,
                "concurrency": c,
            }
            print(
                json.dumps(
                    {
                        k: r.get(k)
                        for k in (
                            "server",
                            "kind",
                            "generator",
                            "protocol",
                            "concurrency",
                            "infer_per_s",
                            "p50_ms",
                            "p99_ms",
                            "client_cpu_pct",
                            "server_cpu_pct",
                            "error",
                        )
                    }
                ),
                flush=True,
            )
            rows.append(r)
    return rows


def median_rows(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(
            (r["server"], r["kind"], r["generator"], r["protocol"], r["concurrency"]), []
        ).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        m = dict(zip(("server", "kind", "generator", "protocol", "concurrency"), key, strict=True))
        if not ok:
            out.append(m | {"error": rs[-1]["error"]})
            continue
        for k in ("infer_per_s", "p50_ms", "p99_ms", "client_cpu_pct", "server_cpu_pct"):
            m[k] = round(float(np.median([r[k] for r in ok])), 2)
        m["rounds"] = len(ok)
        m["infer_per_s_all_rounds"] = [r["infer_per_s"] for r in ok]
        m["command"] = ok[0]["command"]
        out.append(m)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers(build: Path, onnx: Path, names: list[str], workdir: Path):
    """(label, kind, start()) for every server of the run, each started only while it is measured."""
    plan = [
        ("toolchain", "batching on", lambda h, g: sc.start_toolchain(build, h, g, workdir=workdir)),
        (
            "toolchain",
            "batching off",
            lambda h, g: sc.start_toolchain(build, h, g, "--no-batching", workdir=workdir),
        ),
        (
            "toolchain",
            "batching on, 2 workers",
            lambda h, g: sc.start_toolchain(build, h, g, "--workers", "2", workdir=workdir),
        ),
        ("kserve", "-", lambda h, g: sc.start_kserve(onnx, h, g, workdir)),
        ("mlserver", "adaptive batching", lambda h, g: sc.start_mlserver(onnx, h, g, workdir)),
        ("pytriton", "dynamic batching", lambda h, g: sc.start_pytriton(onnx, h, g, workdir)),
    ]
    return [p for p in plan if p[0] in names]


def fmt(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def report(meta: dict, rows: list[dict], floor: dict, wire: list[dict]) -> str:
    table = markdown_table(
        [
            "server",
            "batching",
            "load generator",
            "protocol",
            "conc.",
            "infer/s",
            "p50 ms",
            "p99 ms",
            "client CPU %",
            "server CPU %",
        ],
        [
            [
                r["server"],
                r["kind"],
                r["generator"],
                r["protocol"],
                r["concurrency"],
                fmt(r.get("infer_per_s")),
                fmt(r.get("p50_ms"), 2),
                fmt(r.get("p99_ms"), 2),
                fmt(r.get("client_cpu_pct")),
                fmt(r.get("server_cpu_pct")),
            ]
            if "error" not in r
            else [
                r["server"],
                r["kind"],
                r["generator"],
                r["protocol"],
                r["concurrency"],
                "failed: " + r["error"].strip().splitlines()[-1][:80],
                "",
                "",
                "",
                "",
            ]
            for r in rows
        ],
    )
    top = max(r["concurrency"] for r in rows)
    ours = {
        (r["generator"], r["protocol"]): r
        for r in rows
        if r["server"] == "toolchain serve"
        and r["kind"] == "batching on"
        and r["concurrency"] == top
        and "error" not in r
    }
    side = [
        [
            r["server"],
            r["generator"],
            r["protocol"],
            fmt(r["infer_per_s"]),
            fmt(r["p99_ms"], 2),
            f"{ours[r['generator'], r['protocol']]['infer_per_s'] / r['infer_per_s']:.2f}x",
        ]
        for r in rows
        if r["server"] != "toolchain serve"
        and r["concurrency"] == top
        and "error" not in r
        and (r["generator"], r["protocol"]) in ours
    ]
    side_table = markdown_table(
        [
            "other server",
            "load generator",
            "protocol",
            "its infer/s",
            "its p99 ms",
            "toolchain serve (batching on) / it",
        ],
        side,
    )
    floor_table = markdown_table(
        ["rows per run", "µs per run", "µs per row"],
        [
            [1, floor["batch_1_us"], floor["batch_1_us_per_row"]],
            [64, floor["batch_64_us"], floor["batch_64_us_per_row"]],
        ],
    )
    wire_table = markdown_table(
        [
            "transport",
            "first offload: request B",
            "response B",
            "steady state: request B / offload",
            "response B",
        ],
        [
            [
                w["transport"],
                w["first_request_bytes"],
                w["first_response_bytes"],
                w["steady_request_bytes"],
                w["steady_response_bytes"],
            ]
            for w in wire
        ],
    )
    text = "# serve_load: the tail server at the limit, side by side\n\n"
    text += "".join(f"- {k}: {v}\n" for k, v in meta.items())
    if meta.get("busy"):
        text += (
            f"\n**The machine was busy** (load average above its {os.cpu_count()} cores before or after "
            "the run: other jobs shared the cores). Server and client CPU shares below 100 % with "
            "millisecond p99s mean the processes waited for a core; absolute numbers and p99s are then "
            "far below what the server does on a quiet machine. Ratios within one run are still side "
            "by side. Re-run on a quiet machine before quoting absolute figures.\n"
        )
    text += f"\n## Throughput and latency (medians of {meta['rounds']} interleaved rounds)\n\n" + table
    text += f"\n\n## Side by side at concurrency {top}, same load generator and protocol\n\n" + side_table
    text += "\n\n## The limit: onnxruntime alone, in process (1 intra-op thread)\n\n" + floor_table
    best = floor["infer_per_s_at_batch_64"]
    text += f"\n\nAt 64 rows per run onnxruntime alone would answer {best:,} inferences/s.\n"
    text += (
        "\n## Bytes on the wire per offload (counting TCP proxy on loopback; edge client)\n\n"
        + wire_table
        + "\n"
    )
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--build", help="rpi/server build directory")
    src.add_argument("--bundle", help="trained bundle (an rpi build is made in a temp dir)")
    p.add_argument("--data-dir")
    p.add_argument("--rounds", type=int, default=2, help="rounds; servers interleaved in each")
    p.add_argument("--seconds", type=float, default=4.0, help="per measurement window (perf_analyzer: 3+)")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--servers", default="toolchain,kserve,mlserver,pytriton")
    p.add_argument(
        "--quick", action="store_true", help="1 round, concurrency 32, 2 s; writes build/benchmarks/"
    )
    p.add_argument("--out", help="results directory; " + out_help(""))
    args = p.parse_args()
    if args.quick:
        args.rounds, args.concurrency, args.seconds = 1, "32", 2.0
    # Only the full run writes benchmarks/results/ (a --quick or otherwise reduced run writes elsewhere).
    out_dir = output_path(p, args, "", neutral={"build", "bundle"})
    build = ensure_build(args)
    onnx = tail_onnx(build)
    concs = [int(c) for c in args.concurrency.split(",")]
    load_before = os.getloadavg()
    floor = ort_floor(onnx)
    print(json.dumps({"onnxruntime_floor": floor}), flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        workdir = Path(tmp)
        plan = servers(build, onnx, args.servers.split(","), workdir)
        for _ in range(args.rounds):
            for _, kind, start in plan:
                server = start(free_port(), free_port())
                try:
                    rows += measure_server(server, kind, concs, args.seconds, workdir)
                finally:
                    server.stop()
        server = sc.start_toolchain(build, free_port(), free_port(), workdir=workdir)
        try:
            wire = _wire_bytes.measure(server.http_port, server.grpc_port)
        finally:
            server.stop()
    meta = {
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} vCPU shared by load generator, server (and other work); loopback",
        "load average (1, 5, 15 min) before / after": f"{' '.join(f'{v:.2f}' for v in load_before)} / "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "payload": "one int8 split tensor [1, 40] per request to tail_int8 (the device's offload)",
        "toolchain serve": "REST (uvicorn + httptools on uvloop) and v2 gRPC (grpc.aio) in one process, "
        "onnxruntime 1 intra-op thread; batching on: max 64 rows, max queue delay 0.5 ms",
        "other servers": "same ONNX file, onnxruntime 1 intra-op thread, each in its own venv under "
        "benchmarks/.venvs/ (their pins clash with ours); "
        + "; ".join(f"{k}: {' '.join(v)}" for k, v in sc.PACKAGES.items() if k != "tritonclient"),
        "perf_analyzer": f"tritonclient 2.51.0, -b 1, {args.seconds:g} s windows, 3+ windows averaged "
        "(--stability-percentage 999: this shared machine is too noisy for its 10 % default)",
        "wrk": f"wrk 4.1 -t 1, {args.seconds:g} s, JSON tensors (216-byte body)",
        "grpc_load": f"benchmarks/_grpc_load.py: 2 grpc.aio processes, {args.seconds:g} s after 1 s warm-up",
        "rounds": args.rounds,
        "busy": max(*load_before, *os.getloadavg()[:1]) > (os.cpu_count() or 1),
    }
    merged = median_rows(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "rows": merged,
        "onnxruntime_floor": floor,
        "wire_bytes": wire,
        "all_rounds": rows,
    }
    (out_dir / "serve_load.json").write_text(json.dumps(payload, indent=2) + "\n")
    text = report(meta, merged, floor, wire)
    (out_dir / "serve_load.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
