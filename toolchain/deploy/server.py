"""`server` targets: a Triton model repository for the tail, plus what `toolchain serve` needs.

build/server/
  model_repository/<model>/config.pbtxt     ONNX Runtime backend, dynamic batching, CPU instances
  model_repository/<model>/1/model.onnx     tail (FP32 split), tail_int8 (INT8 split), full
  manifest.json                             the same manifest as the edge targets (paths into the repo)
  README.txt                                the `tritonserver` container command

Triton and `toolchain serve` expose the same model names, tensor names and datatypes over KServe v2,
so the edge runtime works unchanged against either. `validate_repository` checks a repository's
layout and every config.pbtxt against its ONNX model (structure only; Triton itself is not run).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import onnx

from toolchain.bundle import Bundle
from toolchain.deploy.edge_bundle import build_edge
from toolchain.dtypes import DType
from toolchain.edge.manifest import MANIFEST
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_write_json, file_sha256
from toolchain.progress import log
from toolchain.targets import BuildOptions, Target

REPOSITORY = "model_repository"
_TRITON_TYPES = {"FP32": "TYPE_FP32", "INT8": "TYPE_INT8", "FP16": "TYPE_FP16", "UINT8": "TYPE_UINT8"}
_ONNX_TYPES = {1: "FP32", 3: "INT8", 2: "UINT8", 10: "FP16"}  # onnx.TensorProto element types


class TritonConfigError(ToolchainError):
    """A Triton model repository is malformed."""


# ----------------------------------------------------------------------------------------------
# config.pbtxt
# ----------------------------------------------------------------------------------------------
def onnx_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs of an ONNX model: name, v2 datatype, dims (batch dimension as -1)."""
    model = onnx.load(str(path))

    def info(v) -> dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return {"name": v.name, "datatype": _ONNX_TYPES.get(t.elem_type, str(t.elem_type)), "dims": dims}

    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [info(v) for v in model.graph.input if v.name not in inits],
        "outputs": [info(v) for v in model.graph.output],
    }


def config_pbtxt(name: str, io: dict[str, list[dict[str, Any]]], triton: dict[str, Any]) -> str:
    def tensors(items: list[dict[str, Any]]) -> str:
        blocks = [
            f'  {{\n    name: "{t["name"]}"\n    data_type: {_TRITON_TYPES[t["datatype"]]}\n'
            f"    dims: [ {', '.join(str(d) for d in t['dims'][1:])} ]\n  }}"
            for t in items
        ]
        return "[\n" + ",\n".join(blocks) + "\n]"

    preferred = ", ".join(str(int(b)) for b in triton.get("preferred_batch_size", []))
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {int(triton.get('max_batch_size', 64))}\n"
        f"input {tensors(io['inputs'])}\n"
        f"output {tensors(io['outputs'])}\n"
        "dynamic_batching {\n"
        + (f"  preferred_batch_size: [ {preferred} ]\n" if preferred else "")
        + f"  max_queue_delay_microseconds: {int(triton.get('max_queue_delay_microseconds', 500))}\n"
        "}\n"
        "instance_group [\n  {\n"
        f"    count: {int(triton.get('instance_count', 1))}\n"
        f"    kind: {triton.get('instance_kind', 'KIND_CPU')}\n"
        "  }\n]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"#]+))')


def parse_pbtxt(text: str) -> dict[str, Any]:
    """Protobuf text format (the subset Triton configs use) -> dict; repeated fields become lists."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise TritonConfigError(f"config.pbtxt: cannot parse near {text[pos : pos + 30]!r}")
            break
        pos = m.end()
        if m.group(1) is None and m.group(0).strip():
            tokens.append(m.group(2) or m.group(3) or m.group(4))

    def value(i: int) -> tuple[Any, int]:
        tok = tokens[i]
        if tok == "{":
            return message(i + 1, "}")
        if tok == "[":
            items, i = [], i + 1
            while tokens[i] != "]":
                v, i = value(i)
                items.append(v)
                if tokens[i] == ",":
                    i += 1
            return items, i + 1
        if tok.startswith('"'):
            return tok[1:-1], i + 1
        try:
            return int(tok), i + 1
        except ValueError:
            return tok, i + 1  # enum or bool

    def message(i: int, end: str | None) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        while i < len(tokens) and tokens[i] != end:
            key = tokens[i]
            i += 1
            if tokens[i] == ":":
                i += 1
            v, i = value(i)
            if key in out:
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + (v if isinstance(v, list) else [v])
            else:
                out[key] = v
            if i < len(tokens) and tokens[i] in (",", ";"):
                i += 1
        if end is not None and i >= len(tokens):
            raise TritonConfigError("config.pbtxt: unbalanced braces")
        return out, i + 1

    try:
        result, _ = message(0, None)
    except IndexError:
        raise TritonConfigError("config.pbtxt: unexpected end of file") from None
    return result


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def validate_model_dir(model_dir: Path) -> dict[str, Any]:
    """Layout, config fields and agreement with the ONNX file; raises TritonConfigError."""
    name = model_dir.name
    cfg_path = model_dir / "config.pbtxt"
    if not cfg_path.is_file():
        raise TritonConfigError(f"{model_dir}: missing config.pbtxt")
    cfg = parse_pbtxt(cfg_path.read_text())
    problems = []
    if cfg.get("name") != name:
        problems.append(f"name {cfg.get('name')!r} must equal the directory name {name!r}")
    if cfg.get("platform") != "onnxruntime_onnx" and cfg.get("backend") != "onnxruntime":
        problems.append("platform must be onnxruntime_onnx (ONNX Runtime backend)")
    mbs = cfg.get("max_batch_size")
    if not isinstance(mbs, int) or mbs < 1:
        problems.append("max_batch_size must be a positive integer (the batch dimension is implicit)")
    if not isinstance(cfg.get("dynamic_batching"), dict):
        problems.append("dynamic_batching is missing")
    versions = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        problems.append("no numeric version directory (e.g. 1/)")
    elif not (model_dir / versions[-1] / "model.onnx").is_file():
        problems.append(f"{versions[-1]}/model.onnx is missing")
    if problems:
        raise TritonConfigError(f"{model_dir}: " + "; ".join(problems))
    io = onnx_io(model_dir / versions[-1] / "model.onnx")
    for kind, key in (("inputs", "input"), ("outputs", "output")):
        declared = {t.get("name"): t for t in _as_list(cfg.get(key, []))}
        for t in io[kind]:
            d = declared.get(t["name"])
            if d is None:
                problems.append(f"ONNX {kind[:-1]} {t['name']!r} is not declared in config.pbtxt")
                continue
            if d.get("data_type") != _TRITON_TYPES.get(t["datatype"]):
                problems.append(f"{t['name']}: data_type {d.get('data_type')} but ONNX has {t['datatype']}")
            if [int(x) for x in _as_list(d.get("dims", []))] != t["dims"][1:]:
                problems.append(
                    f"{t['name']}: dims {d.get('dims')} but ONNX has {t['dims'][1:]} after the batch"
                )
            if t["dims"][0] != -1:
                problems.append(f"{t['name']}: the ONNX batch dimension must be dynamic for dynamic batching")
        extra = set(declared) - {t["name"] for t in io[kind]}
        if extra:
            problems.append(f"config.pbtxt declares {kind} {sorted(extra)} that the ONNX model lacks")
    if problems:
        raise TritonConfigError(f"{model_dir}: " + "; ".join(problems))
    return {"name": name, "versions": versions, "config": cfg, "io": io}


def validate_repository(repo: str | Path) -> dict[str, Any]:
    repo = Path(repo)
    models = sorted(p for p in repo.iterdir() if p.is_dir()) if repo.is_dir() else []
    if not models:
        raise TritonConfigError(f"{repo} holds no model directories")
    return {m.name: validate_model_dir(m) for m in models}


# ----------------------------------------------------------------------------------------------
# Builder
# ----------------------------------------------------------------------------------------------
def docker_command(target: Target) -> str:
    """Run from the build directory; CPU only (add `--gpus all` on a GPU host)."""
    image = target.section("triton").get("image", "nvcr.io/nvidia/tritonserver:24.08-py3")
    return (
        f'docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v "$PWD/{REPOSITORY}:/models" {image} '
        "tritonserver --model-repository=/models --strict-model-config=true"
    )


def build(target: Target, bundle: Bundle, out: Path, options: BuildOptions) -> None:
    out = Path(out)
    triton = target.section("triton")
    manifest = build_edge(target, bundle, out, options, (DType.INT8, DType.FLOAT32))
    repo = out / REPOSITORY
    for name, entry in manifest["tail"]["models"].items():
        src = out / entry["path"]
        dst = repo / name / "1" / "model.onnx"
        dst.parent.mkdir(parents=True)
        shutil.move(src, dst)
        (repo / name / "config.pbtxt").write_text(config_pbtxt(name, onnx_io(dst), triton))
        entry["path"] = dst.relative_to(out).as_posix()
        entry["sha256"] = file_sha256(dst)
    checked = validate_repository(repo)
    manifest["triton"] = {
        "repository": REPOSITORY,
        "models": sorted(checked),
        "docker": docker_command(target),
    }
    atomic_write_json(out / MANIFEST, manifest)
    for path in out.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    with (out / "README.txt").open("a") as fh:
        fh.write(
            "\nWith Docker, the same models on Triton (same KServe v2 API on port 8000), from this "
            f"directory:\n  {docker_command(target)}\n"
        )
    log(f"Triton repository {REPOSITORY}/ ({', '.join(sorted(checked))}) validated", options.quiet)
