"""The servers, venvs and load generators of benchmarks/serve_load.py.

Comparison servers run the same ONNX tail (the build's tail_int8: int8 split [n, 40] -> logits) on
onnxruntime with one intra-op thread, each in its own venv under benchmarks/.venvs/ (git-ignored),
because their pins clash with the project's (numpy<2, protobuf<5/6, ml-dtypes, uvicorn):

- KServe 0.21.0: its Python model server (kserve.ModelServer, REST + gRPC) with a kserve.Model;
- MLServer 1.7.1: a custom MLModel runtime on onnxruntime, parallel workers off (in-process);
- PyTriton 0.7.0: Triton 2.51's C++ front ends and dynamic batcher, a Python callable on onnxruntime.

Load generators: perf_analyzer (tritonclient 2.51.0, C++) wherever the server answers Triton's model
configuration request, and wrk (C, HTTP/1.1 keep-alive, one thread) for REST on every server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "benchmarks" / ".venvs"
PACKAGES = {
    "tritonclient": ["tritonclient[grpc,http]==2.51.0", "nvidia-cuda-runtime-cu12==12.9.79"],
    "kserve": ["kserve==0.21.0", "onnxruntime==1.32.0"],
    "mlserver": ["mlserver==1.7.1", "onnxruntime==1.32.0"],
    "pytriton": ["nvidia-pytriton==0.7.0", "onnxruntime==1.32.0"],
}


def ensure_venv(name: str) -> Path:
    """benchmarks/.venvs/NAME with its pinned packages (made on first use); its python."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists() or marker.read_text() != "\n".join(PACKAGES[name]):
        print(f"== venv {venv}: {' '.join(PACKAGES[name])}", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES[name]], check=True)
        marker.write_text("\n".join(PACKAGES[name]))
    return python


def triton_env() -> dict[str, str]:
    """perf_analyzer's environment: libcudart from the nvidia-cuda-runtime-cu12 wheel (needed on CPU)."""
    ensure_venv("tritonclient")
    (lib,) = VENVS.glob("tritonclient/lib/python3*/site-packages/nvidia/cuda_runtime/lib")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


# ------------------------------------------------------------------------------------------------
# CPU accounting: the whole process tree (MLServer and PyTriton start children)
# ------------------------------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK  # ppid, utime + stime


def tree_cpu_seconds(root: int) -> float:
    stats = {
        int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))
    }
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


# ------------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    model: str = "tail_int8"
    triton_config: bool = True  # answers Triton's model configuration request (perf_analyzer)
    streaming: bool = True  # perf_analyzer --streaming is measured
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/v2/models/tail_int8/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} was not ready within {timeout:g} s")


def _popen(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    # A process group of its own, so that stop() ends the server's children too.
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, **kw)


def start_toolchain(build: Path, http_port: int, grpc_port: int, *extra: str, workdir: Path) -> Server:
    cmd = [sys.executable, "-m", "toolchain", "serve", "--bundle", str(build), "--port", str(http_port)]
    cmd += ["--grpc-port", str(grpc_port), *extra]
    log = workdir / f"toolchain{http_port}.log"
    proc = _popen(cmd, log, cwd=ROOT)
    _wait_http(http_port, proc)
    while "serving" not in log.read_text():  # with --workers: printed once every worker serves
        if proc.poll() is not None:
            raise SystemExit(f"toolchain serve exited: {log.read_text()[-500:]}")
        time.sleep(0.1)
    return Server("toolchain serve", proc, http_port, grpc_port)


KSERVE = """
import sys, onnxruntime as ort
from kserve import Model, ModelServer
from kserve.protocol.infer_type import InferOutput, InferResponse

class Tail(Model):
    def __init__(self, name, path):
        super().__init__(name)
        o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        y = self.sess.run(["logits"], {"split": payload.inputs[0].as_numpy()})[0]
        out = InferOutput(name="logits", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out])

ModelServer(workers=1).start([Tail("tail_int8", sys.argv[1])])
"""


def start_kserve(onnx: Path, http_port: int, grpc_port: int, workdir: Path) -> Server:
    python = ensure_venv("kserve")
    script = workdir / "kserve_tail.py"
    script.write_text(KSERVE)
    cmd = [str(python), str(script), str(onnx), "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    cmd += ["--enable_latency_logging", "false"]  # a log line per request otherwise
    proc = _popen(cmd, workdir / "kserve.log")
    _wait_http(http_port, proc)
    return Server("KServe 0.21.0", proc, http_port, grpc_port, triton_config=False)


MLSERVER_RUNTIME = """
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

class TailRuntime(MLModel):
    async def load(self) -> bool:
        o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(self.settings.parameters.uri, o, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self.sess.run(["logits"], {"split": x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", y)])
"""


def start_mlserver(onnx: Path, http_port: int, grpc_port: int, workdir: Path) -> Server:
    import json

    python = ensure_venv("mlserver")
    d = workdir / "mlserver"
    d.mkdir(exist_ok=True)
    (d / "tail_runtime.py").write_text(MLSERVER_RUNTIME)
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": http_port + 2}
    settings |= {"parallel_workers": 0, "debug": False, "metrics_endpoint": None}
    (d / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "tail_int8",
        "implementation": "tail_runtime.TailRuntime",
        "parameters": {"uri": str(onnx)},
    }
    model |= {"max_batch_size": 64, "max_batch_time": 0.0005}
    (d / "model-settings.json").write_text(json.dumps(model))
    cmd = [str(Path(python).parent / "mlserver"), "start", str(d)]
    proc = _popen(cmd, workdir / "mlserver.log", cwd=d)
    _wait_http(http_port, proc)
    return Server(
        "MLServer 1.7.1",
        proc,
        http_port,
        grpc_port,
        triton_config=False,
        notes=["custom onnxruntime MLModel, in-process (parallel_workers 0), adaptive batching 64 / 0.5 ms"],
    )


PYTRITON = """
import sys, numpy as np, onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

onnx, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
sess = ort.InferenceSession(onnx, o, providers=["CPUExecutionProvider"])

@batch
def infer(split):
    return {"logits": sess.run(["logits"], {"split": split})[0]}

config = TritonConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=http_port + 2)
# No token-restricted endpoints: perf_analyzer reads Triton's statistics.
with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as t:
    t.bind(model_name="tail_int8", infer_func=infer,
           inputs=[Tensor(name="split", dtype=np.int8, shape=(40,))],
           outputs=[Tensor(name="logits", dtype=np.float32, shape=(10,))],
           config=ModelConfig(max_batch_size=64,
                              batcher=DynamicBatcher(max_queue_delay_microseconds=500)))
    t.serve()
"""


def start_pytriton(onnx: Path, http_port: int, grpc_port: int, workdir: Path) -> Server:
    python = ensure_venv("pytriton")
    script = workdir / "pytriton_tail.py"
    script.write_text(PYTRITON)
    env = dict(os.environ)
    # The Python-backend stub must load the interpreter's own libpython (pyenv builds).
    libdir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env["LD_LIBRARY_PATH"] = libdir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    cmd = [str(python), str(script), str(onnx), str(http_port), str(grpc_port)]
    proc = _popen(cmd, workdir / "pytriton.log", env=env)
    _wait_http(http_port, proc, timeout=180)
    return Server(
        "PyTriton 0.7.0 (Triton 2.51)",
        proc,
        http_port,
        grpc_port,
        # In a trial run here, perf_analyzer --streaming stalled and PyTriton's server process died.
        streaming=False,
        notes=["Triton's C++ HTTP/gRPC front ends and dynamic batcher; the model is a Python callable"],
    )


# ------------------------------------------------------------------------------------------------
# Load generators
# ------------------------------------------------------------------------------------------------
def run_perf_analyzer(
    server: Server, protocol: str, concurrency: int, seconds: float, streaming: bool = False
) -> dict:
    env = triton_env()
    port = server.grpc_port if protocol == "grpc" else server.http_port
    cmd = [
        str(VENVS / "tritonclient" / "bin" / "perf_analyzer"),
        "-m",
        server.model,
        "-u",
        f"127.0.0.1:{port}",
    ]
    cmd += ["-i", protocol, "--concurrency-range", str(concurrency), "--shape", "split:40", "-b", "1"]
    cmd += ["--measurement-interval", str(int(seconds * 1000)), "--stability-percentage", "999"]
    if streaming:
        cmd.append("--streaming")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pa.csv"
        cmd += ["-f", str(out)]
        row, usage = _measured(cmd, server, env)
        if row["returncode"] != 0 and not out.exists():
            return row | {"error": row["output"][-300:]}
        import csv

        with out.open() as f:
            (r,) = list(csv.DictReader(f))
    return (
        row
        | usage
        | {
            "infer_per_s": float(r["Inferences/Second"]),
            "p50_ms": float(r["p50 latency"]) / 1000,
            "p99_ms": float(r["p99 latency"]) / 1000,
            "unstable": row["returncode"] != 0,
        }
    )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""


def run_wrk(server: Server, concurrency: int, seconds: float, body: str, workdir: Path) -> dict:
    script = workdir / "wrk_post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    url = f"http://127.0.0.1:{server.http_port}/v2/models/{server.model}/infer"
    cmd = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(concurrency),
        "-d",
        f"{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    row, usage = _measured(cmd, server, dict(os.environ))
    text = row["output"]
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if row["returncode"] != 0 or m is None:
        return row | {"error": text[-300:]}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    lat = {p: _duration_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
    return (
        row
        | usage
        | {
            "infer_per_s": float(m.group(1)),
            "p50_ms": lat["50"],
            "p99_ms": lat["99"],
            "non_2xx": int(bad.group(1)) if bad else 0,
            "unstable": False,
        }
    )


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def _measured(
    cmd: list[str], server: Server, env: dict[str, str], timeout: float = 180.0
) -> tuple[dict, dict]:
    """Run a load generator; its own CPU time and the server's (whole tree) over the same wall time."""
    server_before, client_before = tree_cpu_seconds(server.proc.pid), _children_cpu()
    t0 = time.perf_counter()
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = client.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        client.kill()
        out = client.communicate()[0] + f"\ntimed out after {timeout:g} s"
    wall = time.perf_counter() - t0
    server_cpu = tree_cpu_seconds(server.proc.pid) - server_before
    client_cpu = _children_cpu() - client_before  # the load generator, now exited and waited for
    usage = {
        "wall_s": round(wall, 2),
        "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
    }
    return {"returncode": client.returncode, "output": out, "command": " ".join(cmd)}, usage


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
