"""Shared helpers for the server / edge / deploy tests: builds cached per session, real servers.

Builds are cached in a module-level dict (this module is imported once per session), so the rpi
build of the session bundle is made once for every test file that needs it. Servers are real
`toolchain serve` processes on loopback with a free port chosen by the server itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
_BUILDS: dict[tuple[str, str], Path] = {}

# Modules the device runtime must never load (TensorFlow and every server-side stack).
FORBIDDEN = (
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "starlette",
    "uvicorn",
    "httpx",
    "matplotlib",
)

GUARD = f"""
import importlib.abc, sys
FORBIDDEN = {FORBIDDEN!r}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"device runtime tried to import {{name}}")
sys.meta_path.insert(0, _Block())
def _report():
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(FORBIDDEN))
    print("FORBIDDEN_LOADED=" + ",".join(loaded), file=sys.stderr)
import atexit; atexit.register(_report)
"""


def build_target(name: str, bundle: Path, tmp_root: Path, data_root: Path) -> Path:
    """`toolchain build --target NAME --bundle BUNDLE`, once per session for each pair."""
    key = (name, str(bundle))
    if key not in _BUILDS:
        from toolchain.pipeline import BuildOptions, build
        from toolchain.targets import load_target

        out = tmp_root / f"build-{name}-{bundle.name}"
        build(
            load_target(name),
            out=out,
            bundle=bundle,
            options=BuildOptions(data_dir=str(data_root), quiet=True),
        )
        _BUILDS[key] = out
    return _BUILDS[key]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    return e


class ServerProcess:
    """`toolchain serve` in a subprocess; `url` once it listens. Stop with stop() (SIGTERM, then wait)."""

    def __init__(self, source: Path, *extra: str, port: int = 0) -> None:
        self.args = [
            sys.executable,
            "-m",
            "toolchain",
            "serve",
            "--bundle",
            str(source),
            "--port",
            str(port),
            *extra,
        ]
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO
        )
        line = self.proc.stdout.readline()
        m = re.search(r"http://[\d.]+:(\d+)", line)
        if m is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {err}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(self.url)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_ready(url: str, timeout: float = 20.0) -> None:
    from toolchain.edge.client import wait_until_ready

    wait_until_ready(url, timeout)


def mnist_test(data_root: Path, n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from toolchain.data import load_raw, preprocess

    raw = load_raw("mnist", data_root)
    sl = slice(offset, offset + n)
    return preprocess(raw.x_test[sl], 800), raw.y_test[sl].astype(np.int64)


def host_pipeline(
    build_dir: Path, x: np.ndarray, data_root: Path, head_dtype: str = "int8"
) -> dict[str, np.ndarray]:
    """The all-host pipeline for a build: the integer reference of the head (toolchain.ir.HeadIR on
    the build's own int8 flatbuffer) or the Keras float head, the exit rule from the manifest, and the
    Keras tail on the (dequantized) split activation. No LiteRT, no server, no network."""
    import json

    from toolchain.bundle import load_bundle
    from toolchain.calibrate import softmax_confidence

    manifest = json.loads((build_dir / "manifest.json").read_text())
    bundle = load_bundle(build_dir / "bundle")
    model = bundle.split_model(form="masked")
    rule = manifest["exit"][head_dtype]
    if head_dtype == "int8":
        from toolchain.quantize import build_ir

        tfl = (build_dir / manifest["head"]["files"]["int8"]["path"]).read_bytes()
        per_channel = manifest["head"]["files"]["int8"]["per_channel"]
        ref, _ = build_ir(bundle, "int8", data_dir=data_root, per_channel=per_channel, tflite=tfl)
        split, logits = ref.forward(ref.encode_input(x))
        margin = np.sort(logits.astype(np.int32), axis=1)
        exited = (margin[:, -1] - margin[:, -2]) >= rule["threshold"]
        split_f = ref.decode_split(split)
    else:
        split_f, logits = (np.asarray(a) for a in model.head_exit(x, training=False))
        exited = softmax_confidence(logits) >= rule["threshold"]
    final = np.asarray(model.tail(split_f, training=False)).argmax(1)
    return {
        "prediction": np.where(exited, logits.argmax(1), final),
        "exited": exited,
        "exit_pred": logits.argmax(1),
    }
