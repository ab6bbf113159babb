"""`toolchain run` (and `python -m toolchain.edge` on a board): the edge runtime, head + exit on LiteRT,
offload to a v2 server (REST or gRPC).

Imports only the device side (toolchain.edge and the TensorFlow-free modules it needs): the rpi target
copies this module into the build's `device/` folder, where `python -m toolchain.edge` runs it with
only ai-edge-litert and numpy installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toolchain.edge.client import ClientConfig
from toolchain.edge.inputs import dataset_inputs, file_inputs
from toolchain.edge.runtime import EdgeRuntime
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_write_json
from toolchain.progress import Progress, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, metavar="DIR", help="build directory with manifest.json")
    p.add_argument(
        "--server",
        metavar="URL",
        help="v2 server: http://HOST:8000 (REST, gRPC if offered) or grpc://HOST:8001",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input", metavar="FILE.npy", help="uint8 images [N,28,28] / [N,784] or float [N,inputs]"
    )
    src.add_argument("--dataset", help="run on a dataset's test split (e.g. mnist)")
    p.add_argument("--labels", metavar="FILE.npy", help="labels for --input (reports accuracy)")
    p.add_argument("--samples", type=int, default=1000, help="with --dataset: how many test samples")
    p.add_argument("--offset", type=int, default=0, help="with --dataset: first test sample")
    p.add_argument(
        "--data-dir", metavar="DIR", help="dataset directory (default: $TOOLCHAIN_DATA_DIR or cache)"
    )
    p.add_argument("--mode", choices=["split", "device", "server"], default="split")
    p.add_argument("--head-dtype", choices=["int8", "float32"], help="default: the build's")
    p.add_argument("--wire", choices=["int8", "fp32"], help="split tensor on the wire (default int8)")
    p.add_argument("--json-tensors", action="store_true", help="JSON tensors instead of binary (REST)")
    p.add_argument(
        "--transport",
        choices=["auto", "rest", "grpc"],
        default="auto",
        help="auto (default): gRPC when the server advertises it and grpcio is installed, else REST; "
        "a grpc://HOST:PORT --server is always gRPC",
    )
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per request attempt")
    p.add_argument("--retries", type=int, default=2, help="retries after a failed attempt")
    p.add_argument("--cooldown", type=float, default=1.0, help="seconds to stay local after a failure")
    p.add_argument("--delegate", help="LiteRT delegate library, e.g. libedgetpu.so.1 on a Coral board")
    p.add_argument("--out", metavar="FILE.json", help="write per-sample results and the summary")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    client = ClientConfig(
        timeout=args.timeout, retries=args.retries, cooldown=args.cooldown, binary=not args.json_tensors
    )
    rt = EdgeRuntime(
        args.bundle,
        args.server,
        args.mode,
        args.head_dtype,
        args.wire,
        client,
        delegate=args.delegate,
        transport=args.transport,
    )
    size = rt.manifest["model"]["input_size"]
    if args.dataset:
        x, labels = dataset_inputs(args.dataset, size, args.samples, args.offset, args.data_dir)
    else:
        x, labels = file_inputs(args.input, size, args.labels)
    if rt.client is not None and not rt.server_checked and not args.quiet:
        print(
            f"warning: {args.server} is not reachable; answering from the exit until it is", file=sys.stderr
        )
    try:
        with Progress(len(x), "run", quiet=args.quiet) as progress:
            results = rt.run(x, progress)
    finally:
        rt.close()
    summary = rt.summarize(results, labels)
    if args.out:
        atomic_write_json(
            Path(args.out),
            {
                "summary": summary.as_dict(),
                "predictions": [r.prediction for r in results],
                "exited": [r.exited for r in results],
                "offloaded": [r.offloaded for r in results],
                "degraded": [r.degraded for r in results],
                "latency_ms": [round(r.latency_s * 1000, 4) for r in results],
            },
        )
    s = summary
    rows = [
        ["samples", s.samples],
        ["mode / head / wire / transport", f"{s.mode} / {s.head_dtype} / {s.wire} / {s.transport}"],
        ["exit rate", f"{s.exit_rate:.4f}"],
        ["offload rate", f"{s.offload_rate:.4f}"],
        ["degraded answers", s.degraded],
        ["bytes sent per sample", f"{s.bytes_per_sample:.1f}"],
        ["latency p50 / p99 [ms]", f"{s.latency_p50_ms:.3f} / {s.latency_p99_ms:.3f}"],
    ]
    if s.accuracy is not None:
        rows.append(["accuracy", f"{s.accuracy:.4f}"])
    print(table(["metric", "value"], rows))
    if args.quiet:
        print(json.dumps(s.as_dict()))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolchain.edge", description="edge runtime (toolchain run)")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except ToolchainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
