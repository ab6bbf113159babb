"""Firmware builds for targets of kind "mcu": export the head + exit to C, render the shared
protocol/application sources with the board's files, compile and link, and write the images,
firmware.json and the memory report into the build directory.

`build(target, bundle, out, options)` is the `toolchain.targets.Builder` for kind mcu, called by
toolchain.pipeline.build with a temporary directory `out` (renamed into place on success) that already
holds the bundle copy in out/bundle.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.bundle import Bundle
from toolchain.errors import ConfigError
from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.mcu.arduino import build_arduino
from toolchain.mcu.cexport import export_c
from toolchain.mcu.compile import compile_cortex_m, compile_host, require_tool
from toolchain.mcu.manifest import MANIFEST
from toolchain.mcu.render import render_sources
from toolchain.mcu.report import manifest, memory_markdown, memory_report
from toolchain.mcu.target import mcu_target
from toolchain.progress import log
from toolchain.targets import BuildOptions, Target


def build(target: Target, bundle: Bundle, out: Path, options: BuildOptions) -> None:
    mcu = mcu_target(target)
    dtype = options.dtype or mcu.default_dtype
    if dtype not in mcu.dtypes:
        raise ConfigError(
            f"target {mcu.name} does not support dtype {dtype}",
            hint=f"use --dtype {' or '.join(mcu.dtypes)} (float32 needs a core with an FPU)",
        )
    require_tool(mcu.cc)  # before the (slower) export
    log(f"exporting the head + exit to C ({dtype})", options.quiet)
    cmodel = export_c(bundle, out / "model", dtype, options.data_dir)
    log(f"compiling the firmware for {mcu.name} with {mcu.cc}", options.quiet)
    if mcu.board == "arduino":
        result = build_arduino(mcu, cmodel, out)
    else:
        src = out / "firmware" / "src"
        files = render_sources(mcu, cmodel, src)
        compile_ = compile_host if mcu.board == "host" else compile_cortex_m
        result = compile_(mcu, src, files, out)
    report = memory_report(mcu, cmodel, result)
    atomic_write_json(out / "memory.json", report)
    atomic_write_text(out / "memory.md", memory_markdown(report))
    atomic_write_json(out / MANIFEST, manifest(mcu, cmodel, result, "model", "bundle"))
    if report.get("used"):
        u, b = report["used"], report["budget"]
        log(
            f"{mcu.name}: flash {u['flash']} / {b['flash']} bytes, RAM {u['ram']} / {b['ram']} bytes "
            f"(incl. {b['stack_reserved']} bytes stack); model hash {cmodel.model_hash[:16]}",
            options.quiet,
        )
    else:
        log(f"{mcu.name}: model hash {cmodel.model_hash[:16]}", options.quiet)
