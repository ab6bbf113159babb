"""Per exit threshold: the validation split's exit sweep and the expected bytes, latency and energy.

The score is the one the deployment uses: when the build holds a C export (`model/`), the device's
rule (top-1 minus top-2 margin of its int8 or float32 exit logits, computed bit-exactly by the
export's HeadIR, the tail fed the decoded split as the server receives it); otherwise the
max-softmax of the float model, the rule of training. Only the validation split is used, as for the
calibration itself; test figures at the calibrated threshold are copied from the bundle/export for
information.

Expectations (prior-art-split-serving.md §2.4), p = exit rate, S = wire bytes per offload:
    E[bytes]   = (1 - p)·S
    E[latency] = T_device + (1 - p)·(8·S / R_up + RTT + T_tail)      T_device = head + exit
    E[energy]  = E_device + (1 - p)·8·S·e_bit                        E_device = P_active·T_device
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.bundle import load_bundle, load_bundle_splits
from toolchain.calibrate import Sweep, exit_margin, softmax_confidence, sweep
from toolchain.errors import BundleError, ToolchainError
from toolchain.ir.io import load_ir
from toolchain.mcu.manifest import MANIFEST as FIRMWARE_MANIFEST
from toolchain.plan.splits import seconds
from toolchain.train import predict


@dataclass(frozen=True)
class Source:
    """What `--bundle DIR` points at: a bundle, or a build directory holding bundle/."""

    bundle: Path
    build: Path | None
    export: Path | None  # build/model (a C export), when there is one
    verify: Path | None  # build/verify.json, when verify ran
    target: str | None  # the build's target (firmware.json or manifest.json)


def locate(path: str | Path) -> Source:
    p = Path(path)
    if (p / "bundle.json").is_file():
        return Source(p, None, None, None, None)
    if (p / "bundle" / "bundle.json").is_file():
        export = p / "model" if (p / "model" / "model.json").is_file() else None
        verify = p / "verify.json" if (p / "verify.json").is_file() else None
        target = None
        for name in (FIRMWARE_MANIFEST, "manifest.json"):  # a firmware build, or an edge/server build
            if (p / name).is_file():
                try:
                    target = json.loads((p / name).read_text()).get("target")
                except (OSError, ValueError):
                    target = None
        return Source(p / "bundle", p, export, verify, target)
    raise BundleError(
        f"{p} is neither a trained bundle (bundle.json) nor a build directory with bundle/",
        hint="pass `toolchain train --out DIR` output or a `toolchain build` directory",
    )


@dataclass(frozen=True)
class ExitSweep:
    score: str  # max_softmax | margin_int8 | margin_float32
    what: str  # how the scores were computed
    sweep: Sweep  # validation split, thresholds ascending
    threshold: float  # the calibrated threshold
    index: int  # row of the sweep with the calibrated threshold's behaviour
    validation_recorded: dict[str, float]  # what the bundle/export recorded for validation
    test_recorded: dict[str, float] | None  # test figures at the threshold, for information only
    samples: int


def calibrated_row(thresholds: np.ndarray, threshold: float) -> int:
    """Index of the sweep row that behaves like `threshold`: samples exit when score >= t, so
    the exiting set equals that of the smallest sweep threshold >= t."""
    i = int(np.searchsorted(thresholds, threshold, side="left"))
    return min(i, len(thresholds) - 1)


def _float_sweep(bundle, x: np.ndarray, y: np.ndarray) -> ExitSweep:
    exit_logits, final_logits = predict(bundle.split_model(), x)
    sw = sweep(softmax_confidence(exit_logits), exit_logits.argmax(1) == y, final_logits.argmax(1) == y)
    m = bundle.metrics
    t = float(m["exit_threshold"])
    return ExitSweep(
        score="max_softmax",
        what="max-softmax of the float model's exit logits (Keras, the rule of training)",
        sweep=sw,
        threshold=t,
        index=calibrated_row(sw.thresholds, t),
        validation_recorded=dict(m.get("validation", {})),
        test_recorded={"exit_rate": m["exit_rate"], "accuracy": m["accuracy_at_threshold"]},
        samples=len(y),
    )


def _export_sweep(bundle, export: Path, x: np.ndarray, y: np.ndarray) -> ExitSweep:
    ref = load_ir(export)
    split, logits = ref.forward(ref.encode_input(x))
    tail = bundle.split_model().tail
    final = np.asarray(tail(ref.decode_split(split), training=False)).argmax(axis=1)
    sw = sweep(exit_margin(logits), logits.argmax(axis=1) == y, final == y)
    rule = ref.exit_rule
    t = float(ref.exit_threshold)
    test = rule.get("test")
    return ExitSweep(
        score=f"margin_{ref.dtype}",
        what=f"top-1 minus top-2 of the {ref.dtype} exit logits of the C export in {export} "
        "(bit-exact device reference), float tail on the decoded split",
        sweep=sw,
        threshold=t,
        index=calibrated_row(sw.thresholds, t),
        validation_recorded=dict(rule.get("validation", {})),
        test_recorded=None
        if test is None
        else {"exit_rate": test["exit_rate"], "accuracy": test["accuracy_at_threshold"]},
        samples=len(y),
    )


def exit_sweep(src: Source, split: int | None = None, data_dir: str | None = None) -> ExitSweep:
    """The validation sweep of the deployment's exit rule (see the module docstring)."""
    bundle = load_bundle(src.bundle)
    trained = bundle.config.network.split_after
    if split is not None and split != trained:
        raise ToolchainError(
            f"the bundle {src.bundle} has its exit after hidden layer {trained}, not {split}: exit rates "
            f"at split point {split} need a bundle trained with network.split_after = {split}",
            hint=f"drop --split (or use --split {trained}), or train a project with split_after = {split}",
        )
    splits = load_bundle_splits(bundle, data_dir)
    x, y = splits.x_val, splits.y_val
    if src.export is not None:
        return _export_sweep(bundle, src.export, x, y)
    return _float_sweep(bundle, x, y)


def expectations(
    exit_rate: np.ndarray,
    wire_bytes: float,
    device_s: float,
    bandwidth_bps: float,
    rtt_s: float,
    tail_s: float,
    device_power_w: float | None,
    energy_per_bit_j: float | None,
) -> dict[str, np.ndarray | None]:
    """The §2.4 expectations for every exit rate p (arrays of the same shape)."""
    p = np.asarray(exit_rate, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("exit rates must lie in [0, 1]")
    q = 1.0 - p
    offload_s = 8.0 * wire_bytes / bandwidth_bps + rtt_s + tail_s
    energy = None
    if device_power_w is not None and energy_per_bit_j is not None:
        energy = device_power_w * device_s + q * 8.0 * wire_bytes * energy_per_bit_j
    return {
        "bytes": q * wire_bytes,
        "latency_s": device_s + q * offload_s,
        "energy_j": energy,
    }


def measured_device_seconds(verify: Path, costs) -> tuple[float, str] | None:
    """Device time of head + exit from a verify report: QEMU instructions, or cycles of a board."""
    try:
        counter = json.loads(verify.read_text())["counter"]
    except (OSError, ValueError, KeyError):
        return None
    unit, mean = str(counter.get("unit", "")), float(counter.get("mean", 0.0))
    if mean <= 0:
        return None
    where = f"{verify}: mean {mean:,.0f} {unit}"
    if unit.startswith("instructions"):
        return seconds(mean, costs), where + " / (IPC x clock)"
    if unit.startswith("cycles") and costs.clock_hz is not None:
        return mean / costs.clock_hz.value, where + " / clock"
    if unit.startswith("ns"):
        return mean * 1e-9, where
    if unit.startswith("µs"):
        return mean * 1e-6, where
    return None
