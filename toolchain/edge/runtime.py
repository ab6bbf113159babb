"""The edge runtime: head + exit locally, the tail on a v2 server when the exit is not confident.

Modes (the same loop, so the three pipelines are measured the same way):
- split  : head + exit on the device; not confident -> send the split tensor (int8 by default) to
           the server's tail; server unreachable -> answer from the exit, flagged `degraded`;
- device : head + exit only, every answer from the exit (all-device baseline);
- server : send the preprocessed input to the server's `full` model (all-server baseline).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.edge.client import ClientConfig, ServerRejected, Unreachable
from toolchain.edge.grpc_client import open_client
from toolchain.edge.head import ExitRule, LiteHead
from toolchain.edge.manifest import load_manifest, resolve
from toolchain.errors import ToolchainError

MODES = ("split", "device", "server")
WIRES = ("int8", "fp32")


@dataclass
class SampleResult:
    prediction: int
    exited: bool  # the exit was confident
    offloaded: bool  # the tail (or full model) on the server answered
    degraded: bool  # should have been offloaded, the server was unreachable: exit's answer
    latency_s: float
    request_bytes: int  # sent on the wire for this sample (0 when answered locally)
    body_bytes: int


@dataclass
class RunSummary:
    samples: int
    mode: str
    head_dtype: str
    wire: str
    transport: str  # rest | grpc (the persistent stream) | none (device mode)
    exit_rate: float
    offload_rate: float
    degraded: int
    bytes_per_sample: float  # mean on-the-wire request bytes over all samples
    body_bytes_per_offload: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    accuracy: float | None
    exit_accuracy: float | None  # over samples answered by a confident exit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EdgeRuntime:
    def __init__(
        self,
        build_dir: str | Path,
        server_url: str | None,
        mode: str = "split",
        head_dtype: str | None = None,
        wire: str | None = None,
        client: ClientConfig | None = None,
        delegate: str | None = None,
        check_server: bool = True,
        transport: str = "auto",
    ) -> None:
        if mode not in MODES:
            raise ToolchainError(f"mode {mode!r} is not valid", hint=f"use one of {', '.join(MODES)}")
        self.build_dir = Path(build_dir)
        self.manifest = m = load_manifest(self.build_dir)
        self.mode = mode
        self.head_dtype = head_dtype or m["head"]["default"]
        heads = m["head"]["files"]
        if self.head_dtype not in heads:
            raise ToolchainError(
                f"this build has no {self.head_dtype} head (it has {', '.join(heads)})",
                hint="rebuild with --dtype, or choose another --head-dtype",
            )
        h = heads[self.head_dtype]
        # On a Coral board the Edge TPU delegate runs the compiled model when the build has one.
        compiled = h.get("edgetpu_path") if delegate else None
        self.head = LiteHead(
            resolve(self.build_dir, compiled)
            if compiled
            else resolve(self.build_dir, h["path"], h["sha256"]),
            h["tensors"]["split"],
            h["tensors"]["exit"],
            h.get("quant"),
            delegate=delegate,
        )
        self.rule = ExitRule.from_dict(m["exit"][self.head_dtype])
        self.wire = wire or ("int8" if self.head_dtype == "int8" else "fp32")
        if self.wire not in WIRES:
            raise ToolchainError(f"wire format {self.wire!r} is not valid", hint="use int8 or fp32")
        if self.wire == "int8" and self.head_dtype != "int8":
            raise ToolchainError(
                "--wire int8 needs the int8 head", hint="use --head-dtype int8 or --wire fp32"
            )
        wire_models = m["wire"]["models"]
        self.model = wire_models["full"] if mode == "server" else wire_models[self.wire]
        use_server = server_url and mode != "device"
        self.client = open_client(server_url, client or ClientConfig(), transport) if use_server else None
        if mode != "device" and self.client is None:
            raise ToolchainError(f"mode {mode} needs --server URL")
        self.server_checked = False
        if self.client is not None and check_server:
            self.check_server()

    def check_server(self) -> bool:
        """Compare the server's model metadata with the manifest; False when it is unreachable."""
        assert self.client is not None
        name, spec = self.model["name"], self.model
        try:
            meta = self.client.model_metadata(name)
        except Unreachable:
            # Same back-off as a failed offload: do not probe a dead server on every sample.
            self.client.failures += 1
            self.client.down_until = time.monotonic() + self.client.config.cooldown
            return False
        inputs = meta.get("inputs") or []
        want = (spec["input"], spec["datatype"], spec["width"])
        got = [(i.get("name"), i.get("datatype"), (i.get("shape") or [None])[-1]) for i in inputs]
        if got != [want]:
            raise ToolchainError(
                f"server model {name} takes {got}, this build sends {[want]}",
                hint="serve the same build directory (toolchain serve --bundle DIR)",
            )
        theirs = (meta.get("parameters") or {}).get("bundle_sha256")
        if theirs and theirs != self.manifest["model"]["bundle_sha256"]:
            raise ToolchainError(
                f"server model {name} comes from another training run (bundle {theirs[:12]}, "
                f"this build {self.manifest['model']['bundle_sha256'][:12]})",
                hint="serve the same build directory the device runs",
            )
        self.server_checked = True
        return True

    # ------------------------------------------------------------------------------------------
    def _send(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        assert self.client is not None
        spec = self.model
        res = self.client.infer(spec["name"], spec["input"], x[None], spec["datatype"])
        return res.outputs[spec["output"]][0], res.request_bytes, res.body_bytes

    def infer_one(self, x: np.ndarray) -> SampleResult:
        """One preprocessed float32 sample [input_size]."""
        start = time.perf_counter()
        if self.mode == "server":
            try:
                logits, sent, body = self._send(np.asarray(x, dtype=np.float32))
            except Unreachable:
                return SampleResult(-1, False, False, True, time.perf_counter() - start, 0, 0)
            return SampleResult(
                int(np.argmax(logits)), False, True, False, time.perf_counter() - start, sent, body
            )
        split, exit_logits = self.head.run_one(self.head.encode(x[None])[0])
        exit_pred = int(np.argmax(exit_logits))
        exited = bool(self.rule.exits(exit_logits[None])[0])
        if exited or self.mode == "device":
            return SampleResult(exit_pred, exited, False, False, time.perf_counter() - start, 0, 0)
        payload = split if self.wire == "int8" else self.head.split_float(split)
        assert self.client is not None
        try:
            if not self.server_checked and (
                time.monotonic() < self.client.down_until or not self.check_server()
            ):
                raise Unreachable("server not reachable for the metadata check")
            logits, sent, body = self._send(payload)
        except Unreachable:
            return SampleResult(exit_pred, False, False, True, time.perf_counter() - start, 0, 0)
        return SampleResult(
            int(np.argmax(logits)), False, True, False, time.perf_counter() - start, sent, body
        )

    def run(self, x: np.ndarray, progress=None) -> list[SampleResult]:
        out = []
        for row in x:
            out.append(self.infer_one(row))
            if progress is not None:
                progress.update(1, degraded=sum(r.degraded for r in out))
        return out

    def summarize(self, results: list[SampleResult], labels: np.ndarray | None = None) -> RunSummary:
        transport = self.client.transport if self.client is not None else "none"
        return summarize(results, labels, self.mode, self.head_dtype, self.wire, transport)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def summarize(
    results: list[SampleResult],
    labels: np.ndarray | None,
    mode: str,
    head_dtype: str,
    wire: str,
    transport: str = "rest",
) -> RunSummary:
    n = len(results)
    lat = np.array([r.latency_s for r in results]) * 1000.0
    pred = np.array([r.prediction for r in results])
    exited = np.array([r.exited for r in results])
    offloaded = np.array([r.offloaded for r in results])
    acc = exit_acc = None
    if labels is not None:
        labels = np.asarray(labels)[:n]
        acc = float(np.mean(pred == labels))
        exit_acc = float(np.mean(pred[exited] == labels[exited])) if exited.any() else None
    return RunSummary(
        samples=n,
        mode=mode,
        head_dtype=head_dtype,
        wire=wire,
        transport=transport,
        exit_rate=float(exited.mean()) if n else 0.0,
        offload_rate=float(offloaded.mean()) if n else 0.0,
        degraded=int(sum(r.degraded for r in results)),
        bytes_per_sample=float(np.mean([r.request_bytes for r in results])) if n else 0.0,
        body_bytes_per_offload=float(np.mean([r.body_bytes for r in results if r.offloaded]))
        if offloaded.any()
        else 0.0,
        latency_p50_ms=float(np.percentile(lat, 50)) if n else 0.0,
        latency_p99_ms=float(np.percentile(lat, 99)) if n else 0.0,
        latency_mean_ms=float(lat.mean()) if n else 0.0,
        accuracy=acc,
        exit_accuracy=exit_acc,
    )


__all__ = ["ClientConfig", "EdgeRuntime", "RunSummary", "SampleResult", "ServerRejected", "summarize"]
