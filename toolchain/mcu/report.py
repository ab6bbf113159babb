"""The memory report (model prediction vs what the linker placed) and the build manifest."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.mcu.compile import BudgetError, CompileResult
from toolchain.mcu.manifest import MANIFEST_FORMAT, MANIFEST_VERSION
from toolchain.mcu.memory import compare, measure_elf
from toolchain.mcu.protocol import PROTO_MAJOR, PROTO_MINOR
from toolchain.mcu.target import McuTarget
from toolchain.progress import markdown_table

_ALLOC = (".isr_vector", ".text", ".rodata", ".ARM.exidx", ".data", ".bss", ".stack")


def memory_report(mcu: McuTarget, cmodel, result: CompileResult) -> dict[str, Any]:
    """Predicted (from the model) vs measured (from the ELF) memory, and the budget check."""
    report: dict[str, Any] = {"target": mcu.name, "dtype": cmodel.dtype, "predicted": cmodel.memory}
    if result.elf is None:  # host build: no budget, no cross binutils
        report["measured"] = None
        report["budget"] = None
        return report
    measured = measure_elf(result.elf, mcu.size_tool or "arm-none-eabi-size")
    stack = mcu.stack if mcu.board == "cortex_m" else 0
    used = {"flash": measured["flash"], "ram": measured["ram"] + stack}
    report["measured"] = measured
    report["budget"] = {"flash": mcu.flash, "ram": mcu.ram, "stack_reserved": stack}
    report["used"] = used
    report["headroom"] = {
        k: (None if report["budget"][k] is None else report["budget"][k] - used[k]) for k in ("flash", "ram")
    }
    report["model_items"] = [
        {"item": item, "predicted": pred, "measured": meas}
        for item, pred, meas in compare(cmodel.memory, measured)
    ]
    over = {k: -v for k, v in report["headroom"].items() if v is not None and v < 0}
    if over:
        parts = [f"{k} by {v} bytes (budget {report['budget'][k]} bytes)" for k, v in sorted(over.items())]
        raise BudgetError(
            f"the firmware for {mcu.name} does not fit: {' and '.join(parts)}",
            hint="use a smaller network, int8 instead of float32, or a target with more memory",
        )
    return report


def memory_markdown(report: dict[str, Any]) -> str:
    pred = report["predicted"]
    lines = [f"# Memory report: {report['target']} ({report['dtype']})", ""]
    if report.get("measured") is None:
        lines += [
            "Host build: no flash/RAM budget. Predicted model data "
            f"{pred['flash']['model_data']} bytes, static buffers {pred['ram']['static']} bytes.",
            "",
        ]
        return "\n".join(lines)
    b, u = report["budget"], report["used"]
    rows = [
        ("flash", u["flash"], b["flash"], report["headroom"]["flash"]),
        ("RAM (incl. stack reserve)", u["ram"], b["ram"], report["headroom"]["ram"]),
    ]
    lines += [markdown_table(["memory", "used (linker)", "budget", "headroom"], rows), ""]
    items = [
        (r["item"], r["predicted"], "-" if r["measured"] is None else r["measured"])
        for r in report["model_items"]
    ]
    lines += ["Model arrays and buffers, predicted from the model vs sizes in the ELF:", ""]
    lines += [markdown_table(["item", "predicted", "measured"], items), ""]
    lines += [
        f"Predicted model data {pred['flash']['model_data']} bytes (aligned, with descriptors "
        f"{pred['flash']['model_data_aligned']}); predicted kernel stack "
        f"{pred['ram']['stack_estimate']} bytes.",
        "Sections: "
        + ", ".join(f"{k} {v}" for k, v in report["measured"]["sections"].items() if k in _ALLOC),
        "",
    ]
    return "\n".join(lines)


def manifest(
    mcu: McuTarget, cmodel, result: CompileResult, model_dir: str, bundle_dir: str
) -> dict[str, Any]:
    ref = cmodel.ir

    def tensor(name: str, size: int) -> dict[str, Any]:
        t: dict[str, Any] = {"shape": [size], "dtype": ref.dtype}
        if ref.dtype.quantized:
            t.update(ref.quant[name])
        return t

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "target": mcu.name,
        "kind": "mcu",
        "board": mcu.board,
        "toolchain_version": __version__,
        "protocol": {"major": PROTO_MAJOR, "minor": PROTO_MINOR},
        "model": {
            "hash": cmodel.model_hash,
            "dtype": ref.dtype,
            "dir": model_dir,
            "bundle": bundle_dir,
        },
        "tensors": {
            "input": tensor("input", ref.input_size),
            "split": tensor("split", ref.split_size),
            "exit_logits": tensor("exit", ref.n_classes),
        },
        "exit_rule": {
            "score": "top-1 minus top-2 exit logit",
            "threshold": ref.exit_threshold,
            **{k: v for k, v in ref.exit_rule.items() if k not in ("threshold",)},
        },
        "images": result.images,
        "compiler": {
            "cc": mcu.cc,
            "version": result.compiler_version,
            "cpu_flags": mcu.cpu_flags,
            "cflags": mcu.cflags,
            "ldflags": mcu.ldflags,
            "defines": mcu.defines,
            "commands": result.commands,
            "cwd": "firmware/src" if mcu.board != "arduino" else "sketch/tc_firmware/src",
        },
        "serial": {"baud": mcu.baud, "interbyte_timeout_ms": mcu.interbyte_timeout_ms},
        "memory_report": "memory.json",
        "host": platform.platform(),
    }


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
