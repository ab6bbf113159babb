"""`make_plan`: split-point table (no training) + exit-threshold expectations (trained bundle) as one dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from toolchain.bundle import load_bundle
from toolchain.config import load_config
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.plan.costs import Costs, Overrides, resolve
from toolchain.plan.splits import Overhead, degree_sweep, seconds, split_points
from toolchain.plan.sweep import Source, exit_sweep, expectations, locate, measured_device_seconds
from toolchain.targets import load_target

DEFAULT_TARGET = "stm32f4"


@dataclass
class PlanOptions:
    config: str | None = None
    bundle: str | None = None  # a trained bundle or a build directory holding bundle/
    target: str | None = None  # default: the build's mcu target, else DEFAULT_TARGET
    dtype: str | None = None  # wire/compute dtype; default: the build's export, else int8
    split: int | None = None  # split point of the exit sweep; must be the bundle's
    instructions: float | None = None  # head + exit instructions per inference (overrides)
    data_dir: str | None = None
    sweep_degrees: bool = False
    overrides: Overrides = field(default_factory=Overrides)


def _target(opts: PlanOptions, src: Source | None, notes: list[str]) -> str:
    if opts.target:
        return opts.target
    if src is not None and src.target:
        if load_target(src.target).kind == "mcu":
            return src.target
        notes.append(f"the build is for {src.target} (not a microcontroller): planning for {DEFAULT_TARGET}")
    return DEFAULT_TARGET


def _export_dtype(src: Source | None) -> str | None:
    if src is None or src.export is None:
        return None
    try:
        return str(json.loads((src.export / "model.json").read_text())["dtype"])
    except (OSError, ValueError, KeyError):
        raise ToolchainError(f"{src.export}/model.json is not a readable C export") from None


def _dtype(opts: PlanOptions, src: Source | None) -> str:
    built = _export_dtype(src)
    if opts.dtype is not None and opts.dtype not in tuple(DType):
        raise ToolchainError(f"unknown dtype {opts.dtype!r}", hint=f"use one of: {', '.join(DType)}")
    if built and opts.dtype and opts.dtype != built:
        raise ToolchainError(
            f"--dtype {opts.dtype} differs from the build's {built} export in {src.export}",
            hint=f"drop --dtype or pass --dtype {built}",
        )
    return opts.dtype or built or "int8"


def _overhead(src: Source | None, costs: Costs, notes: list[str]) -> Overhead | None:
    """Firmware outside the model, from the build's memory report (same target only)."""
    if src is None or src.build is None or not (src.build / "memory.json").is_file():
        notes.append("fit check: model data + buffers + the target's stack reserve (no firmware code)")
        return None
    report = json.loads((src.build / "memory.json").read_text())
    if report.get("measured") is None or src.target != costs.target:
        notes.append(f"fit check without firmware code: the build in {src.build} is for {src.target}")
        return None
    pred = report["predicted"]
    caller = sum(pred["ram"]["caller_buffers"].values())
    overhead = Overhead(
        flash=report["measured"]["flash"] - pred["flash"]["model_data_aligned"],
        ram=report["measured"]["ram"] - pred["ram"]["static"] - caller,
        source=f"{src.build / 'memory.json'}: linked flash/RAM minus the predicted model data and buffers",
    )
    notes.append(
        f"fit check adds the firmware outside the model, {overhead.flash} B flash and {overhead.ram} B RAM "
        f"({overhead.source}), and the target's stack reserve"
    )
    return overhead


def _device_time(opts, src: Source | None, costs: Costs, estimate: float) -> tuple[float, str]:
    if opts.instructions is not None:
        if not opts.instructions > 0:
            raise ToolchainError(f"--instructions = {opts.instructions:g} must be positive")
        return seconds(opts.instructions, costs), f"--instructions {opts.instructions:g} / (IPC x clock)"
    if src is not None and src.verify is not None:
        measured = measured_device_seconds(src.verify, costs)
        if measured is not None:
            return measured[0], f"measured on {src.target}: {measured[1]}"
    return seconds(estimate, costs), (
        f"estimate {estimate:,.0f} instructions from per-MAC figures (targets/plan/devices.toml) "
        "/ (IPC x clock)"
    )


def _threshold_plan(opts, src: Source, costs: Costs, row: dict[str, Any], notes: list[str]) -> dict:
    es = exit_sweep(src, opts.split, opts.data_dir)
    t_dev, t_source = _device_time(opts, src, costs, row["instructions_estimate"])
    if src.target and src.verify is not None and opts.instructions is None:
        built_core = load_target(src.target).section("cpu").get("core")
        if built_core != costs.core:
            notes.append(f"device time measured on {src.target} ({built_core}), applied to a {costs.core}")
    power_w = costs.power_mw.value / 1e3 if costs.power_mw else None
    e_bit = costs.energy_per_bit_nj.value * 1e-9 if costs.energy_per_bit_nj else None
    exp = expectations(
        es.sweep.exit_rate,
        row["wire_bytes"],
        t_dev,
        costs.bandwidth_bps.value,
        costs.rtt_ms.value / 1e3,
        costs.tail_ms.value / 1e3,
        power_w,
        e_bit,
    )
    if exp["energy_j"] is None:
        notes.append("expected energy not computed: a device power or link energy figure is missing")
    i = es.index
    return {
        "split": row["split"],
        "score": es.score,
        "scores_from": es.what,
        "validation_samples": es.samples,
        "wire_bytes": row["wire_bytes"],
        "device_ms": t_dev * 1e3,
        "device_ms_source": t_source,
        "calibrated": {
            "threshold": es.threshold,
            "row": i,
            "exit_rate": float(es.sweep.exit_rate[i]),
            "accuracy": float(es.sweep.accuracy[i]),
            "recorded_validation": es.validation_recorded,
            "test_information_only": es.test_recorded,
        },
        "sweep": {
            "threshold": es.sweep.thresholds.tolist(),
            "exit_rate": es.sweep.exit_rate.tolist(),
            "accuracy": es.sweep.accuracy.tolist(),
            "bytes": exp["bytes"].tolist(),
            "latency_ms": (exp["latency_s"] * 1e3).tolist(),
            "energy_uj": None if exp["energy_j"] is None else (exp["energy_j"] * 1e6).tolist(),
        },
    }


def make_plan(opts: PlanOptions) -> dict[str, Any]:
    """The whole plan as a JSON-ready dict (see docs/plan.md for the fields)."""
    src = locate(opts.bundle) if opts.bundle else None
    if src is not None and opts.config is not None:
        raise ToolchainError("pass either --config or --bundle, not both")
    cfg = load_bundle(src.bundle).config if src else load_config(opts.config)
    if opts.split is not None and src is None:
        raise ToolchainError("--split selects the exit sweep's split point and needs --bundle")
    notes: list[str] = []
    costs = resolve(_target(opts, src, notes), opts.overrides)
    notes += costs.notes
    if costs.core != "cortex-m4":
        notes.append(f"instructions per MAC were measured on a Cortex-M4F; applied here to a {costs.core}")
    dtype = _dtype(opts, src)
    rows = split_points(cfg, costs, dtype, _overhead(src, costs, notes))
    plan: dict[str, Any] = {
        "project": cfg.name,
        "network": {
            "neurons": cfg.network.neurons,
            "out_degrees": cfg.network.out_degrees,
            "pattern": cfg.network.pattern,
            "exit_hidden": cfg.exit.hidden,
            "split_after": cfg.network.split_after,
        },
        "target": costs.target,
        "core": costs.core,
        "link": costs.link,
        "link_description": costs.link_description,
        "wire": costs.wire,
        "dtype": dtype,
        "source": None if src is None else str(src.build or src.bundle),
        "split_points": rows,
        "assumptions": costs.assumptions(),
        "notes": notes,
    }
    if src is not None:
        row = next(r for r in rows if r["split"] == cfg.network.split_after)
        plan["thresholds"] = _threshold_plan(opts, src, costs, row, notes)
    if opts.sweep_degrees:
        plan["degree_sweep"] = {"junction": 1, "dtype": dtype, "rows": degree_sweep(cfg, dtype)}
    return plan
