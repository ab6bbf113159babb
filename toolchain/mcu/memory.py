"""Memory of the exported head + exit: predicted from the model before compiling, measured after.

`predict_memory(shape)` sizes every const array (flash), the layer descriptor table, the static
buffers of tc_head.c (RAM) and the caller's buffers, plus a stack estimate for tc_head_infer, from the
IR's structure alone (`HeadIR.shape`, or `ir.head.head_shape` for a split point never trained).
`measure_elf(elf)` reads section sizes (`arm-none-eabi-size -A`) and the sizes of the tc_* symbols
(`arm-none-eabi-nm -S`) from the linked ELF; `compare()` puts both side by side.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.ir.head import HeadShape
from toolchain.mcu.cgen import array_specs, buffer_sizes

# sizeof(tc_layer_t) on a 32-bit target: 6 pointers, 2 int32, 8 uint16, 2 uint8 -> 50, padded to 52.
DESCRIPTOR_BYTES = {4: 52, 8: 80}
# Deepest call chain tc_head_infer -> tc_layer_forward -> kernel, from -fstack-usage of the ARM builds
# (arm-none-eabi-gcc 12, -O2, Cortex-M4: at most 200 / 176 B on the test models) plus a margin.
# An estimate: other compilers, flags and cores differ; the ELF report gives the measured frames.
STACK_ESTIMATE = {DType.INT8: 224, DType.FLOAT32: 208}
FLASH_SECTIONS = (".text", ".rodata", ".data", ".ARM.exidx", ".isr_vector")
RAM_SECTIONS = (".data", ".bss")


def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) // a * a


def predict_memory(ref: HeadShape, pointer_size: int = 4) -> dict[str, Any]:
    """Flash per array, RAM buffers and a stack estimate, from the model's structure (no compiler)."""
    elem = ref.dtype.nbytes
    arrays = {a.name: a.nbytes for a in array_specs(ref)}
    desc = len(ref.layers) * DESCRIPTOR_BYTES[pointer_size]
    sizes = buffer_sizes(ref)
    ram = {}
    if sizes["max_hidden"]:
        ram["tc_hidden"] = 2 * sizes["max_hidden"] * elem
    if sizes["xbuf"]:
        ram["tc_xbuf"] = sizes["xbuf"] * elem
    if ref.dtype.quantized:
        ram["tc_acc"] = 4 * sizes["max_out"]
    caller = {
        "input": ref.input_size * elem,
        "split_out": ref.split_size * elem,
        "exit_logits_out": ref.n_classes * elem,
    }
    model_data = sum(arrays.values())
    return {
        "dtype": ref.dtype,
        "flash": {
            "arrays": arrays,
            "tc_layers": desc,
            "model_data": model_data,
            # Each array starts 4-byte aligned; padding is at most 3 bytes per array.
            "model_data_aligned": sum(_align(v) for v in arrays.values()) + desc,
        },
        "ram": {
            "buffers": ram,
            "static": sum(ram.values()),
            "stack_estimate": STACK_ESTIMATE[ref.dtype],
            "caller_buffers": caller,
        },
    }


def _tool(name: str, size_tool: str) -> str:
    """The sibling binutils tool of size_tool (arm-none-eabi-size -> arm-none-eabi-nm)."""
    if not size_tool.endswith("size"):
        raise ToolchainError(f"size tool {size_tool!r} should be a binutils `size` (e.g. arm-none-eabi-size)")
    tool = size_tool[: -len("size")] + name
    if shutil.which(tool) is None:
        raise ToolchainError(
            f"{tool} not found", hint="install binutils for the target (Debian: gcc-arm-none-eabi)"
        )
    return tool


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        raise ToolchainError(f"{' '.join(cmd)} failed: {exc.stderr.strip()}") from None


def measure_elf(elf_path: str | Path, size_tool: str = "arm-none-eabi-size") -> dict[str, Any]:
    """Section sizes and tc_* symbol sizes of a linked ELF (or a relocatable object)."""
    elf = Path(elf_path)
    if not elf.is_file():
        raise ToolchainError(f"ELF file {elf} does not exist", hint="build the firmware first")
    size = _tool("size", size_tool)
    sections: dict[str, int] = {}
    for line in _run([size, "-A", "-d", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = sections.get(parts[0], 0) + int(parts[1])
    symbols: dict[str, int] = {}
    for line in _run([_tool("nm", size_tool), "-S", "--size-sort", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("tc_"):
            symbols[parts[3]] = int(parts[1], 16)
    flash = sum(v for k, v in sections.items() if k in FLASH_SECTIONS or k.startswith(".text"))
    ram = sum(v for k, v in sections.items() if k in RAM_SECTIONS)
    return {"sections": sections, "flash": flash, "ram": ram, "symbols": symbols}


def measure_stack(su_files: list[str | Path]) -> dict[str, int]:
    """Frame sizes of the tc_* functions from GCC -fstack-usage output (.su files)."""
    frames: dict[str, int] = {}
    for su in su_files:
        for line in Path(su).read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                fn = parts[0].rsplit(":", 1)[-1]
                frames[fn] = int(parts[1])
    return frames


def stack_chain(frames: dict[str, int]) -> int:
    """Worst-case stack of tc_head_infer from -fstack-usage frames: infer -> forward -> one kernel
    helper (the kernels are otherwise inlined), or infer -> exit decision."""
    leaves = [v for k, v in frames.items() if k not in ("tc_head_infer", "tc_layer_forward")]
    head = frames.get("tc_head_infer", 0)
    return head + max(frames.get("tc_layer_forward", 0) + max(leaves, default=0), max(leaves, default=0))


def compare(predicted: dict[str, Any], measured: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    """Rows (item, predicted bytes, measured bytes or None) for arrays, descriptors and buffers."""
    sym = measured["symbols"]
    rows: list[tuple[str, int, int | None]] = []
    for name, size in predicted["flash"]["arrays"].items():
        rows.append((name, size, sym.get(name)))
    rows.append(("tc_layers", predicted["flash"]["tc_layers"], sym.get("tc_layers")))
    for name, size in predicted["ram"]["buffers"].items():
        rows.append((name, size, sym.get(name)))
    return rows
