"""End to end over the MNIST test set: all-device, all-server and split pipelines through the real
edge runtime and a real v2 server on loopback: accuracy, exit rate, bytes sent per sample, latency.

- all-device : int8 head + exit on LiteRT, every answer from the exit (nothing sent);
- all-server : the preprocessed image (800 float32) to the server's `full` model for every sample;
- split      : head + exit on the device, the split tensor to the tail when the exit is not
               confident; int8 on the wire (default), fp32 on the wire, and the float32 head.

Latency is per sample as the device sees it (head, exit, and for offloads the HTTP round trip), on
loopback with device and server sharing 2 cores, so it has no radio in it: bytes per sample is the
number that carries over to a real link. With `--pytriton PYTHON` (a Python that has nvidia-pytriton
and onnxruntime; it cannot share the project's venv, see docs/serving.md) the split pipeline also runs
against Triton's own HTTP front end serving the build's tail models.

    python benchmarks/edge_e2e.py --build build/server [--samples 10000] [--pytriton /opt/pt/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from toolchain.data import load_raw, preprocess
from toolchain.edge.client import wait_until_ready
from toolchain.edge.runtime import EdgeRuntime
from toolchain.progress import markdown_table

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"

PYTRITON_SERVER = r"""
import sys, numpy as np, onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

repo, port = sys.argv[1], int(sys.argv[2])

def bind(name, inp, dtype, width):
    sess = ort.InferenceSession(f"{repo}/{name}/1/model.onnx")

    @batch
    def infer(**kw):
        return {"logits": sess.run(["logits"], {inp: kw[inp]})[0]}

    batcher = DynamicBatcher(max_queue_delay_microseconds=500)
    return dict(model_name=name, infer_func=infer, inputs=[Tensor(name=inp, dtype=dtype, shape=(width,))],
                outputs=[Tensor(name="logits", dtype=np.float32, shape=(10,))],
                config=ModelConfig(max_batch_size=64, batcher=batcher))

with Triton(config=TritonConfig(http_port=port, grpc_port=port + 1, metrics_port=port + 2)) as t:
    t.bind(**bind("tail_int8", "split", np.int8, 40))
    t.bind(**bind("tail", "split", np.float32, 40))
    print("READY", flush=True)
    t.serve()
"""


def wait_ready(port: int, timeout: float = 120.0) -> None:
    wait_until_ready(f"http://127.0.0.1:{port}", timeout, interval=0.2)


def start_toolchain_server(build: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "toolchain", "serve", "--bundle", str(build), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    m = re.search(r":(\d+) ", proc.stdout.readline())
    if m is None:
        proc.kill()
        raise SystemExit(f"server did not start: {proc.stderr.read()}")
    wait_ready(int(m.group(1)))
    return proc, f"http://127.0.0.1:{m.group(1)}"


def start_pytriton(python: str, build: Path, port: int) -> tuple[subprocess.Popen, str, float]:
    script = Path(tempfile.mkdtemp()) / "pytriton_tail.py"
    script.write_text(PYTRITON_SERVER)
    env = dict(os.environ)
    # PyTriton's Python-backend stub must load the same libpython as the interpreter (pyenv builds).
    libdir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    env["LD_LIBRARY_PATH"] = libdir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, str(script), str(build / "model_repository"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        if "READY" in line:
            break
    wait_ready(port)
    return proc, f"http://127.0.0.1:{port}", time.monotonic() - t0


def run_pipeline(build: Path, url: str | None, x, y, **kw) -> dict:
    rt = EdgeRuntime(build, url, **kw)
    t0 = time.perf_counter()
    results = rt.run(x)
    wall = time.perf_counter() - t0
    rt.close()
    s = rt.summarize(results, y).as_dict()
    s["wall_s"] = round(wall, 2)
    return s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True, help="build directory (server target for --pytriton)")
    p.add_argument("--data-dir")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--pytriton", metavar="PYTHON", help="python with nvidia-pytriton + onnxruntime")
    args = p.parse_args()
    build = Path(args.build)
    raw = load_raw("mnist", args.data_dir)
    x = preprocess(raw.x_test[: args.samples], 800)
    y = raw.y_test[: args.samples].astype(np.int64)
    rows = []
    proc, url = start_toolchain_server(build)
    try:
        pipelines = [
            ("all-device (int8 head)", None, {"mode": "device"}),
            ("all-server (full model, fp32 input)", url, {"mode": "server"}),
            ("split, int8 head, int8 wire", url, {}),
            ("split, int8 head, fp32 wire", url, {"wire": "fp32"}),
            ("split, float32 head, fp32 wire", url, {"head_dtype": "float32"}),
        ]
        for name, u, kw in pipelines:
            s = run_pipeline(build, u, x, y, **kw)
            s.update(pipeline=name, server="toolchain serve" if u else "-")
            rows.append(s)
            print(json.dumps(s), flush=True)
    finally:
        proc.terminate()
        proc.wait(15)
    pytriton = None
    if args.pytriton:
        tproc, turl, startup = start_pytriton(args.pytriton, build, 18500)
        try:
            s = run_pipeline(build, turl, x, y)
            s.update(pipeline="split, int8 head, int8 wire", server="PyTriton 0.7.0 (Triton 2.51)")
            rows.append(s)
            pytriton = {"startup_s": round(startup, 1)}
            ref = next(r for r in rows if r["pipeline"] == s["pipeline"] and r["server"] == "toolchain serve")
            pytriton["same_accuracy_as_toolchain_serve"] = s["accuracy"] == ref["accuracy"]
            print(json.dumps(s), flush=True)
        finally:
            tproc.terminate()
            tproc.wait(30)
    manifest = json.loads((build / "manifest.json").read_text())
    meta = {
        "command": "python benchmarks/edge_e2e.py " + " ".join(sys.argv[1:]),
        "samples": len(x),
        "model": f"{manifest['model']['name']} {manifest['model']['bundle_sha256'][:12]}, final accuracy "
        f"{manifest['model']['accuracy']['final_accuracy']}",
        "exit rules": {k: (v["rule"], v["threshold"]) for k, v in manifest["exit"].items()},
        "link": "loopback, device and server processes on the same 2 cores",
        "pytriton": pytriton,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "edge_e2e.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown_table(
        [
            "pipeline",
            "server",
            "accuracy",
            "exit rate",
            "offload rate",
            "bytes/sample",
            "p50 ms",
            "p99 ms",
            "mean ms",
        ],
        [
            [
                r["pipeline"],
                r["server"],
                f"{r['accuracy']:.4f}",
                f"{r['exit_rate']:.4f}",
                f"{r['offload_rate']:.4f}",
                f"{r['bytes_per_sample']:.1f}",
                f"{r['latency_p50_ms']:.3f}",
                f"{r['latency_p99_ms']:.3f}",
                f"{r['latency_mean_ms']:.3f}",
            ]
            for r in rows
        ],
    )
    text = "# edge_e2e: all-device, all-server and split over the MNIST test set\n\n"
    text += "".join(f"- {k}: {v}\n" for k, v in meta.items())
    text += (
        "\n"
        + table
        + "\n\nbytes/sample: HTTP request bytes (request line, headers, v2 body) averaged over all "
    )
    text += "samples, 0 for answers given on the device.\n"
    (RESULTS / "edge_e2e.md").write_text(text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
