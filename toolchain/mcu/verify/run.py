"""`verify`: stream test samples through a device and compare every output with the host reference."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bundle import load_bundle
from toolchain.errors import MismatchError, ToolchainError
from toolchain.ir.io import load_ir
from toolchain.mcu.device import DeviceError, open_port, start_device
from toolchain.mcu.manifest import MANIFEST, McuBuild
from toolchain.mcu.protocol import Link, LinkError
from toolchain.mcu.target import McuTarget, mcu_target
from toolchain.mcu.verify.host import Tail, float_head, select_samples
from toolchain.mcu.verify.report import build_report, print_report, write_report
from toolchain.progress import Progress, log
from toolchain.targets import load_target


@dataclass
class VerifyOptions:
    target: str
    build: Path | None = None  # default build/<target>
    port: str | None = None
    url: str | None = None
    samples: int | None = 200  # None = the whole test set
    report: Path | None = None  # default <build>/verify.json
    data_dir: str | None = None
    quiet: bool = False
    connect_timeout: float = 10.0
    reply_timeout: float | None = None  # default: the target's [serial] reply_timeout_s
    retries: int = 4
    baud: int | None = None


@dataclass
class DeviceRun:
    split: np.ndarray
    exit_logits: np.ndarray
    exit_taken: np.ndarray
    exit_class: np.ndarray
    counts: np.ndarray
    seconds: float


def identity_check(manifest: dict[str, Any], target: str):
    """on_hello callback: refuse a device that runs other firmware than this build."""
    want_hash = manifest["model"]["hash"]

    def check(info) -> None:
        problems = []
        if info.target != target:
            problems.append(f"firmware for target {info.target!r} (expected {target!r})")
        if info.model_hash != want_hash:
            problems.append(f"a model with hash {info.model_hash} (this build: {want_hash})")
        if info.dtype != manifest["model"]["dtype"]:
            problems.append(f"a {info.dtype} model (this build: {manifest['model']['dtype']})")
        if problems:
            raise MismatchError(
                "the device runs " + " and ".join(problems) + ": refusing to compare",
                hint=f"flash this build (`toolchain flash --target {target} --build DIR`) or pass the "
                "build directory of the firmware that is on the device",
            )

    return check


def run_device(link, x_enc: np.ndarray, quiet: bool, label: str) -> DeviceRun:
    n = len(x_enc)
    info = link.info
    split = np.zeros((n, info.split_size), dtype=info.np_dtype)
    logits = np.zeros((n, info.n_classes), dtype=info.np_dtype)
    taken = np.zeros(n, dtype=bool)
    cls = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    start = last = time.monotonic()
    shown = 0
    with Progress(n, label, quiet=quiet) as progress:
        for i in range(n):
            try:
                r = link.infer(x_enc[i])
            except ToolchainError as exc:
                exc.message = f"sample {i + 1} of {n}: {exc.message}"
                raise
            split[i], logits[i], taken[i], cls[i], counts[i] = (
                r.split, r.exit_logits, r.exit_taken, r.exit_class, r.count,
            )  # fmt: skip
            now = time.monotonic()
            # At most 10 updates/s: one per sample would cost the host build more than the inference.
            if now - last >= 0.1 or i == n - 1:
                progress.update(i + 1 - shown, retries=link.stats.retransmissions)
                shown, last = i + 1, now
    return DeviceRun(split, logits, taken, cls, counts, time.monotonic() - start)


@contextlib.contextmanager
def connect(opts: VerifyOptions, mcu: McuTarget, build: McuBuild):
    """Yield an open port: --url, --port, or a device started here for emulated targets."""
    baud = opts.baud or mcu.baud
    if opts.url or opts.port:
        port = open_port(opts.url or opts.port, baud=baud)
        try:
            yield port, opts.url or opts.port, None
        finally:
            port.close()
        return
    if not mcu.emulated:
        raise DeviceError(
            f"{mcu.name} is a physical board: pass its serial port with --port",
            hint="e.g. --port /dev/ttyACM0 (NUCLEO ST-LINK VCP) after `toolchain flash`; "
            "`python -m serial.tools.list_ports` lists ports",
        )
    with start_device(mcu, build) as dev:
        yield dev.open(), dev.url, dev


def verify(opts: VerifyOptions) -> dict[str, Any]:
    """Run the whole check; returns the report (also written as JSON). Raises MismatchError on any
    mismatch (after writing the report), LinkError/DeviceError when the device cannot be used."""
    mcu = mcu_target(load_target(opts.target))
    build = McuBuild.open(opts.build, opts.target)
    manifest = build.manifest
    ref = load_ir(build.export_dir)
    if ref.model_hash != build.model_hash:
        raise ToolchainError(f"{build.dir}: the exported model does not match {MANIFEST}", hint="rebuild")
    bundle = load_bundle(build.bundle_dir)
    idx, x, y = select_samples(bundle, opts.samples, opts.data_dir)
    x_enc = ref.encode_input(x)
    ref_split, ref_logits, ref_taken = ref.infer(x_enc)

    with connect(opts, mcu, build) as (port, where, dev):
        link = Link(
            port,
            reply_timeout=opts.reply_timeout or mcu.reply_timeout_s,
            retries=opts.retries,
            connect_timeout=opts.connect_timeout,
        )
        link.on_hello = identity_check(manifest, opts.target)
        try:
            info = link.hello()
            log(
                f"{where}: {info.target}, protocol {info.major}.{info.minor}, {info.dtype}, counter "
                f"{info.counter_kind}, {info.build_info}; {len(idx)} samples",
                opts.quiet,
            )
            run = run_device(link, x_enc, opts.quiet, f"verify {opts.target}")
        except LinkError as exc:
            status = dev.exit_status() if dev is not None else None
            if status is not None:
                exc.message += f"\n{mcu.name} exited with status {status}:\n{dev.log_tail()}"
            raise
        stats = link.stats

    tail = Tail(bundle)
    ref_float = ref.decode_split
    dev_tail = tail.predict(ref_float(run.split[~run.exit_taken]))
    host_tail = tail.predict(ref_float(ref_split[~ref_taken]))
    float_split, float_logits = float_head(bundle, x)
    report = build_report(
        opts, mcu, manifest, info, ref, idx, y,
        device=run, reference=(ref_split, ref_logits, ref_taken),
        tails=(dev_tail, host_tail), float_outputs=(float_split, float_logits, bundle),
        link_stats=stats, where=where, tail_engine=tail.engine,
    )  # fmt: skip
    out = opts.report or build.dir / "verify.json"
    write_report(report, out)
    print_report(report)
    log(f"report written to {out}", opts.quiet)
    if not report["passed"]:
        m = report["mismatches"]
        raise MismatchError(
            f"device and host reference differ on {m['samples']} of {report['samples']} samples "
            f"(split {m['split']}, exit logits {m['exit_logits']}, exit decisions {m['exit_decision']}, "
            f"exit class {m['exit_class']}); first: {m['first'][:3]}",
            hint="see the JSON report; a float32 build must be compiled with -ffp-contract=off",
        )
    return report
