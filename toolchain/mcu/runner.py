"""Compile generated C and run it, on the host (gcc) and on emulated Cortex-M cores (QEMU, semihosting).

A library feature, like emlearn's compile-and-run and hls4ml's `compile()`: the tests, the benchmarks and
users call the same functions. The cores are the table in `targets/cores.toml` (the targets use it
too); QEMU harnesses link with the firmware's own start-up code (`boards/cortex_m/tc_startup.c`) and
linker script (`sections.ld` + a memory.ld rendered from the core's QEMU memory map), so a harness and
the firmware boot the same way.

Harnesses (firmware_templates/harness/): `tc_harness_host.c` runs tc_head_infer over a file of inputs;
`tc_harness_qemu.c` runs it over compiled-in test vectors and prints every output through semihosting
(plus instruction counts per layer with TC_BENCH_ITERS).
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import ToolchainError
from toolchain.ir.head import HeadIR
from toolchain.paths import FIRMWARE_DIR, HARNESS_DIR
from toolchain.targets import load_cores

HOST_CC = "gcc"
ARM_CC = "arm-none-eabi-gcc"
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
ARM_CFLAGS = (*HOST_CFLAGS, "-ffunction-sections", "-fdata-sections")
ARM_LDFLAGS = ("-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections")
CORTEX_M = FIRMWARE_DIR / "boards" / "cortex_m"
STARTUP = (CORTEX_M / "tc_startup.c", HARNESS_DIR / "tc_semihost.c")
STARTUP_INCLUDES = (CORTEX_M, FIRMWARE_DIR / "common", HARNESS_DIR)
QEMU_STACK = 8192


class RunnerError(ToolchainError):
    """A harness did not compile, crashed, or printed something else than expected."""


@dataclass(frozen=True)
class Core:
    name: str
    flags: tuple[str, ...]
    fpu: str
    machine: str | None  # QEMU -M
    flash_origin: int = 0
    flash: int = 0
    ram_origin: int = 0
    ram: int = 0
    systick_hz: int = 0  # processor clock of the QEMU model (0 = unknown)


def cores() -> dict[str, Core]:
    out = {}
    for name, c in load_cores().items():
        q = c.get("qemu", {})
        out[name] = Core(
            name,
            tuple(c["flags"]),
            str(c.get("fpu", "none")),
            q.get("machine"),
            int(q.get("flash_origin", 0)),
            int(q.get("flash", 0)),
            int(q.get("ram_origin", 0)),
            int(q.get("ram", 0)),
            int(q.get("systick_hz", 0)),
        )
    return out


def core(name: str) -> Core:
    table = cores()
    if name not in table:
        raise ToolchainError(
            f"unknown core {name!r}", hint=f"cores in targets/cores.toml: {', '.join(table)}"
        )
    return table[name]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise RunnerError(f"{cmd[0]} is not installed", hint="run scripts/install.sh (Debian packages)")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if res.returncode != 0:
        raise RunnerError(f"{what} failed:\n{' '.join(map(str, cmd))}\n{res.stderr.strip()}")
    return res.stdout


# ----------------------------------------------------------------------------------------------
# Generic: compile C for the host or for a core
# ----------------------------------------------------------------------------------------------
def compile_host(
    sources: Sequence[Path],
    include_dirs: Sequence[Path],
    out: Path,
    defines: Sequence[str] = (),
    flags: Sequence[str] = (),
) -> Path:
    """A host executable from `sources` with the toolchain's strict C99 flags."""
    cmd = [HOST_CC, *HOST_CFLAGS, *flags, *[f"-D{d}" for d in defines]]
    cmd += [f"-I{d}" for d in include_dirs] + [str(s) for s in sources] + ["-o", str(out)]
    _run(cmd, "host build")
    return out


def memory_script(c: Core, stack: int = QEMU_STACK) -> str:
    """memory.ld for the shared sections.ld: the QEMU machine's memory map of the core."""
    return (
        "MEMORY\n{\n"
        f"    FLASH (rx) : ORIGIN = 0x{c.flash_origin:08X}, LENGTH = {c.flash}\n"
        f"    RAM (rwx) : ORIGIN = 0x{c.ram_origin:08X}, LENGTH = {c.ram}\n"
        "}\n"
        f"TC_STACK_SIZE = {stack};\n"
    )


def compile_objects(
    sources: Sequence[Path],
    include_dirs: Sequence[Path],
    c: Core,
    out_dir: Path,
    defines: Sequence[str] = (),
    opt: str = "-O2",
) -> dict[str, Path]:
    """One object per source for core `c` (-fstack-usage: a .su file beside each); stem -> object."""
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = [opt if f == "-O2" else f for f in ARM_CFLAGS]
    incs = [f"-I{d}" for d in (*include_dirs, *STARTUP_INCLUDES)]
    objs = {}
    for src in sources:
        obj = out_dir / f"{Path(src).stem}.o"
        cmd = [ARM_CC, *c.flags, *flags, "-fstack-usage", *[f"-D{d}" for d in defines], *incs]
        _run([*cmd, "-c", str(src), "-o", str(obj)], f"{c.name} build of {Path(src).name}")
        objs[Path(src).stem] = obj
    return objs


def compile_qemu(
    sources: Sequence[Path],
    include_dirs: Sequence[Path],
    c: Core,
    out_dir: Path,
    defines: Sequence[str] = (),
    opt: str = "-O2",
    name: str = "harness",
) -> Path:
    """An ELF for `c`'s QEMU machine: the sources and the shared start-up, linked with sections.ld."""
    if c.machine is None or not c.flash:
        raise RunnerError(f"core {c.name} has no QEMU machine in targets/cores.toml")
    objs = compile_objects([*sources, *STARTUP], include_dirs, c, out_dir, defines, opt)
    (out_dir / "memory.ld").write_text(memory_script(c))
    elf = out_dir / f"{name}.elf"
    link = [ARM_CC, *c.flags, *map(str, objs.values()), *ARM_LDFLAGS]
    _run([*link, f"-L{out_dir}", f"-T{CORTEX_M / 'sections.ld'}", "-o", str(elf)], f"{c.name} link")
    return elf


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned QEMU


def run_qemu(elf: Path, c: Core, timeout: float = 60.0) -> str:
    """Boot `elf` on the core's QEMU machine; returns what the harness printed (semihosting)."""
    if c.machine is None:
        raise RunnerError(f"core {c.name} has no QEMU machine in targets/cores.toml")
    cmd = ["qemu-system-arm", "-M", c.machine, "-nographic", "-monitor", "none", "-serial", "null"]
    cmd += ["-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if shutil.which(cmd[0]) is None:
        raise RunnerError("qemu-system-arm is not installed", hint="run scripts/install.sh")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # semihosting SYS_WRITE0 goes to QEMU's stderr
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RunnerError(f"QEMU {c.machine} did not finish within {timeout} s") from None
    if proc.returncode != 0 or not out.rstrip().endswith("DONE"):
        raise RunnerError(f"QEMU {c.machine} exit status {proc.returncode}; output ends: {out[-500:]}")
    return out


# ----------------------------------------------------------------------------------------------
# The model harnesses
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HarnessOutputs:
    split: np.ndarray
    exit_logits: np.ndarray
    exit_flag: np.ndarray
    argmax: np.ndarray | None  # host harness only (tc_argmax of the exit logits)
    text: str  # what the harness printed


def compile_model_host(cmodel, out: Path, defines: Sequence[str] = (), flags: Sequence[str] = ()) -> Path:
    """The host harness around an export (`CModel`): `out INPUTS OUTPUTS`."""
    sources = [*cmodel.sources, HARNESS_DIR / "tc_harness_host.c"]
    return compile_host(sources, cmodel.include_dirs, out, defines, flags)


def run_model_host(exe: Path, ir: HeadIR, x_enc: np.ndarray, workdir: Path) -> HarnessOutputs:
    """Run the host harness over encoded inputs; every output, in sample order."""
    inp, outp = workdir / f"{exe.name}.in", workdir / f"{exe.name}.out"
    np.ascontiguousarray(x_enc, dtype=ir.dtype.numpy).tofile(inp)
    text = _run([str(exe), str(inp), str(outp)], f"host harness {exe.name}")
    per = ir.split_size + ir.n_classes
    rec = np.dtype([("act", ir.dtype.numpy, (per,)), ("flag", np.int8), ("argmax", np.int8)])
    out = np.fromfile(outp, dtype=rec)
    if len(out) != len(x_enc):
        raise RunnerError(f"host harness wrote {len(out)} outputs for {len(x_enc)} inputs")
    return HarnessOutputs(
        out["act"][:, : ir.split_size], out["act"][:, ir.split_size :], out["flag"], out["argmax"], text
    )


def _c_rows(rows: np.ndarray, per_line: int = 32) -> str:
    """A 2-D initializer, one brace-enclosed row per sample."""
    out = []
    for row in rows:
        vals = [str(int(v)) for v in row]
        body = ",\n  ".join(", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line))
        out.append("{ " + body + " }")
    return ",\n".join(out)


def write_vectors(ir: HeadIR, x: np.ndarray, n: int, out_dir: Path) -> tuple[np.ndarray, Path]:
    """tc_test_vectors.h with the first n samples of x; returns the encoded inputs the device sees.

    int8 stores the encoded bytes; float32 stores 8-bit pixels (the harness divides by 255 in float32,
    exactly the dataset's preprocessing) so 100 samples fit a 256 KiB flash.
    """
    x = x[:n]
    widths = [ly.n_out for ly in ir.layers] + [ir.input_size]
    lines = [
        "/* Generated test vectors for the QEMU harness. */",
        f"#define TC_TEST_N {n}",
        f"#define TC_TEST_MAX_WIDTH {max(widths)}",
    ]
    if ir.dtype.quantized:
        enc = ir.encode_input(x)
        lines.append(f"static const int8_t tc_test_data[TC_TEST_N][TC_INPUT_SIZE] = {{\n{_c_rows(enc)}\n}};")
    else:
        npix = int(np.max(np.nonzero(np.any(x != 0, axis=0))[0])) + 1 if np.any(x) else 1
        pixels = np.rint(x[:, :npix] * 255).astype(np.uint8)
        enc = np.zeros((n, ir.input_size), dtype=np.float32)
        enc[:, :npix] = pixels.astype(np.float32) / np.float32(255)
        if not np.array_equal(enc, x.astype(np.float32)):
            raise RunnerError("float32 test vectors must be pixel / 255 (the dataset's preprocessing)")
        lines.append(f"#define TC_TEST_PIXELS {npix}")
        lines.append(
            f"static const uint8_t tc_test_data[TC_TEST_N][TC_TEST_PIXELS] = {{\n{_c_rows(pixels)}\n}};"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tc_test_vectors.h"
    path.write_text("\n".join(lines) + "\n")
    return enc, path


def compile_model_qemu(
    cmodel, c: Core, out_dir: Path, vectors_dir: Path, defines: Sequence[str] = (), opt: str = "-O2"
) -> Path:
    """The QEMU harness around an export, with the vectors of `write_vectors` compiled in."""
    sources = [*cmodel.sources, HARNESS_DIR / "tc_harness_qemu.c"]
    return compile_qemu(sources, [*cmodel.include_dirs, vectors_dir], c, out_dir, defines, opt, "head")


def parse_results(text: str, ir: HeadIR) -> HarnessOutputs:
    """Outputs printed by the QEMU harness; checks that the compiled-in model hash is the IR's."""
    hashes = [line.split()[1] for line in text.splitlines() if line.startswith("H ")]
    if hashes != [ir.model_hash]:
        raise RunnerError(f"device model hash {hashes} is not the IR's {ir.model_hash}")
    rows = [line.split() for line in text.splitlines() if line.startswith("R ")]
    if [int(r[1]) for r in rows] != list(range(len(rows))):
        raise RunnerError("harness results are not numbered 0, 1, 2, ...")
    act = ir.dtype.numpy
    vals = np.stack([np.frombuffer(bytes.fromhex(r[2]), dtype=act) for r in rows])
    if vals.shape[1] != ir.split_size + ir.n_classes:
        raise RunnerError(f"harness printed {vals.shape[1]} values per sample")
    flags = np.array([int(r[3]) for r in rows], dtype=np.int8)
    return HarnessOutputs(vals[:, : ir.split_size], vals[:, ir.split_size :], flags, None, text)


def parse_bench(text: str) -> dict[str, tuple[int, int, int]]:
    """BENCH lines of a TC_BENCH_ITERS harness: name -> (iterations, ticks, empty-loop ticks)."""
    res = {}
    for line in text.splitlines():
        if line.startswith("BENCH "):
            _, name, iters, t, empty = line.split()
            res[name] = (int(iters), int(t), int(empty))
    return res
