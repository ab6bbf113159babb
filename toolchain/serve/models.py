"""The models a tail server hosts: ONNX files on onnxruntime, described from the files themselves.

`--bundle DIR` accepts a build directory (rpi, coral or server target: its manifest.json lists the
ONNX models and their SHA-256) or a trained bundle (the ONNX models are exported first; the int8
tail needs the int8 head's split quantization, so that path imports TensorFlow once at start-up).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import ToolchainError
from toolchain.serve.batcher import BatchConfig, Batcher
from toolchain.serve.protocol import InferRequest, ProtocolError

_ORT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
}


@dataclass
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]  # -1 = variable (the batch dimension)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass
class Model:
    name: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameters: dict[str, Any] = field(default_factory=dict)
    version: str = "1"
    session: Any = None
    batcher: Batcher | None = None

    @classmethod
    def load(cls, name: str, path: Path, parameters: dict[str, Any] | None = None, threads: int = 1) -> Model:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # The tail is tiny: more threads cost more in hand-offs than they win in arithmetic.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ToolchainError(f"onnxruntime cannot load {path}: {exc}") from None

        def spec(t) -> TensorSpec:
            if t.type not in _ORT_TYPES:
                raise ToolchainError(f"{path}: tensor {t.name} has unsupported type {t.type}")
            dims = [d if isinstance(d, int) else -1 for d in t.shape]
            return TensorSpec(t.name, _ORT_TYPES[t.type], dims)

        inputs = [spec(t) for t in sess.get_inputs()]
        outputs = [spec(t) for t in sess.get_outputs()]
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[0] != -1:
            raise ToolchainError(f"{path}: the server hosts models with one [batch, features] input")
        return cls(name, Path(path), inputs, outputs, dict(parameters or {}), session=sess)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "parameters": self.parameters,
        }

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run([o.name for o in self.outputs], {self.inputs[0].name: x})

    def validate(self, req: InferRequest, max_rows: int) -> np.ndarray:
        """The request's input as the array the model takes, or ProtocolError (400)."""
        spec = self.inputs[0]
        if len(req.inputs) != 1:
            raise ProtocolError(
                f"model {self.name} takes 1 input ({spec.name}), the request has {len(req.inputs)}"
            )
        inp = req.inputs[0]
        if inp.name != spec.name:
            raise ProtocolError(f"model {self.name} has no input {inp.name!r} (its input is {spec.name!r})")
        if inp.datatype != spec.datatype:
            raise ProtocolError(
                f"input {spec.name} has datatype {inp.datatype}, model {self.name} expects {spec.datatype}"
            )
        width = spec.shape[1]
        if len(inp.shape) != 2 or inp.shape[1] != width or inp.shape[0] < 1:
            raise ProtocolError(
                f"input {spec.name} has shape {inp.shape}, model {self.name} expects [n, {width}]"
            )
        if inp.shape[0] > max_rows:
            raise ProtocolError(
                f"input {spec.name} has {inp.shape[0]} rows, the server runs at most {max_rows} per request"
            )
        if req.outputs is not None:
            known = {o.name for o in self.outputs}
            unknown = [o for o in req.outputs if o not in known]
            if unknown:
                raise ProtocolError(
                    f"model {self.name} has no output {unknown[0]!r} (outputs: {sorted(known)})"
                )
        return np.ascontiguousarray(inp.data)

    def select(self, req: InferRequest, outs: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
        named = [(o.name, a) for o, a in zip(self.outputs, outs, strict=True)]
        if req.outputs is None:
            return named
        return [(n, a) for n, a in named if n in req.outputs]

    async def start(self, config: BatchConfig) -> None:
        self.batcher = Batcher(self.run, config)
        await self.batcher.start()


def _from_manifest(build_dir: Path, threads: int) -> list[Model]:
    from toolchain.edge.manifest import load_manifest, resolve

    manifest = load_manifest(build_dir)
    entries = manifest.get("tail", {}).get("models", {})
    if not entries:
        raise ToolchainError(f"{build_dir}/manifest.json lists no tail models to serve")
    models = []
    for name, e in entries.items():
        path = resolve(build_dir, e["path"], e.get("sha256"))
        params = {k: v for k, v in e.items() if k in ("split_quant", "bundle_sha256", "role")}
        models.append(Model.load(name, path, params, threads))
    return models


def _from_bundle(bundle_dir: Path, threads: int, data_dir: str | None, workdir: Path) -> list[Model]:
    # The server side of the stack (TensorFlow for the int8 conversion): only for a raw bundle.
    from toolchain.bundle import bundle_sha256, load_bundle
    from toolchain.export.onnx import export_onnx
    from toolchain.quantize import int8_conversion

    bundle = load_bundle(bundle_dir)
    q = int8_conversion(bundle, data_dir).split_quant
    result = export_onnx(bundle, workdir, split_quant=q, data_dir=data_dir)
    bhash = bundle_sha256(bundle_dir)
    models = []
    for name, path in result.files.items():
        params: dict[str, Any] = {"bundle_sha256": bhash}
        if name == "tail_int8":
            params["split_quant"] = q.as_dict()
        models.append(Model.load(name, path, params, threads))
    return models


def load_models(source: str | Path, threads: int = 1, data_dir: str | None = None) -> list[Model]:
    source = Path(source)
    if (source / "manifest.json").is_file():
        return _from_manifest(source, threads)
    if (source / "bundle.json").is_file():
        with tempfile.TemporaryDirectory(prefix="toolchain-serve-") as tmp:
            # onnxruntime reads the files when the session is created, so they may go afterwards.
            return _from_bundle(source, threads, data_dir, Path(tmp))
    raise ToolchainError(
        f"{source} is neither a build directory (manifest.json) nor a trained bundle (bundle.json)",
        hint="pass `toolchain build --target server` output, or a `toolchain train` bundle",
    )
