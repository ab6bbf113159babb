"""Cross builds of the exported head for Cortex-M cores and self-test runs under QEMU (semihosting).

Used by tests/test_kernels_arm.py and benchmarks/kernel_instructions.py. The harness in tests/c/qemu/
prints every output as hex; the caller compares with the host reference.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QEMU_DIR = Path(__file__).resolve().parent / "c" / "qemu"
ARM_GCC = "arm-none-eabi-gcc"
ARM_CFLAGS = [
    "-std=c99",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffp-contract=off",
    "-ffunction-sections",
    "-fdata-sections",
    "-fstack-usage",
]


@dataclass(frozen=True)
class Core:
    name: str
    cflags: tuple[str, ...]
    machine: str | None  # QEMU -M, None = compile-only
    link: str | None  # linker script in tests/c/qemu/
    cpu_hz: int = 0  # SysTick clock (processor clock) of the QEMU machine


CORES = {
    "m4f": Core(
        "m4f",
        ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        "mps2-an386",
        "link_mps2-an386.ld",
        25_000_000,
    ),
    "m3": Core(
        "m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), "lm3s6965evb", "link_lm3s6965evb.ld"
    ),
    "m0": Core("m0", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"), "microbit", "link_microbit.ld"),
    "m33": Core(
        "m33",
        ("-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
        "mps2-an505",
        "link_mps2-an505.ld",
    ),
    "m55": Core(
        "m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), "mps3-an547", "link_mps3-an547.ld"
    ),
}


def _c_array(rows: np.ndarray, per_line: int = 32) -> str:
    """A 2-D initializer, one brace-enclosed row per sample."""
    out = []
    for row in rows:
        vals = [str(int(v)) for v in row]
        body = ",\n  ".join(", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line))
        out.append("{ " + body + " }")
    return ",\n".join(out)


def write_vectors(ref, x_test: np.ndarray, n: int, out_dir: Path) -> tuple[np.ndarray, Path]:
    """tc_test_vectors.h with the first n test samples; returns the encoded inputs the device sees.

    int8 stores the encoded bytes; float32 stores 8-bit pixels (the harness divides by 255 in float32,
    exactly the dataset's preprocessing) so 100 samples fit a 256 KiB flash.
    """
    x = x_test[:n]
    widths = [ly.n_out for ly in ref.layers] + [ref.input_size]
    lines = [
        "/* Generated test vectors for the QEMU harness. */",
        f"#define TC_TEST_N {n}",
        f"#define TC_TEST_MAX_WIDTH {max(widths)}",
    ]
    if ref.dtype == "int8":
        enc = ref.encode_input(x)
        body = _c_array(enc)
        lines.append(f"static const int8_t tc_test_data[TC_TEST_N][TC_INPUT_SIZE] = {{\n{body}\n}};")
    else:
        npix = int(np.max(np.nonzero(np.any(x != 0, axis=0))[0])) + 1 if np.any(x) else 1
        pixels = np.rint(x[:, :npix] * 255).astype(np.uint8)
        enc = np.zeros((n, ref.input_size), dtype=np.float32)
        enc[:, :npix] = pixels.astype(np.float32) / np.float32(255)
        # The device must see exactly the dataset's float inputs.
        assert np.array_equal(enc, x.astype(np.float32)), "inputs are not pixel / 255"
        lines.append(f"#define TC_TEST_PIXELS {npix}")
        lines.append(
            f"static const uint8_t tc_test_data[TC_TEST_N][TC_TEST_PIXELS] = {{\n{_c_array(pixels)}\n}};"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tc_test_vectors.h"
    path.write_text("\n".join(lines) + "\n")
    return enc, path


def build_elf(
    cm, core: Core, out_dir: Path, vectors_dir: Path, defines: tuple[str, ...] = (), opt: str = "-O2"
) -> Path:
    """Compile every source separately (for .su stack files) and link the semihosting harness."""
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = [*cm.sources, QEMU_DIR / "qemu_main.c", QEMU_DIR / "startup.c"]
    incs = [f"-I{d}" for d in (*cm.include_dirs, QEMU_DIR, vectors_dir)]
    flags = [f if f != "-O2" else opt for f in ARM_CFLAGS]
    objs = []
    for src in srcs:
        obj = out_dir / (Path(src).stem + ".o")
        cmd = [
            ARM_GCC,
            *core.cflags,
            *flags,
            *[f"-D{d}" for d in defines],
            *incs,
            "-c",
            str(src),
            "-o",
            str(obj),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{core.name} build failed:\n{' '.join(cmd)}\n{res.stderr}"
        objs.append(str(obj))
    elf = out_dir / "head.elf"
    link = [
        ARM_GCC,
        *core.cflags,
        *[str(o) for o in objs],
        "-nostartfiles",
        "--specs=nano.specs",
        "-Wl,--gc-sections",
        f"-L{QEMU_DIR}",
        f"-T{QEMU_DIR / (core.link or 'link_mps2-an386.ld')}",
        "-o",
        str(elf),
    ]
    res = subprocess.run(link, capture_output=True, text=True)
    assert res.returncode == 0, f"{core.name} link failed:\n{' '.join(link)}\n{res.stderr}"
    return elf


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned QEMU


def run_qemu(elf: Path, machine: str, timeout: float = 60.0) -> str:
    cmd = [
        "qemu-system-arm",
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-icount",
        "shift=0",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(elf),
    ]
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
        raise AssertionError(f"QEMU {machine} did not finish within {timeout} s") from None
    assert proc.returncode == 0, f"QEMU {machine} exit {proc.returncode}: {out[-500:]}"
    assert out.rstrip().endswith("DONE"), f"harness did not finish: {out[-500:]}"
    return out


def parse_results(out: str, ref) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(split, exit logits, exit flags) printed by the harness; checks the compiled-in model hash."""
    hashes = [line.split()[1] for line in out.splitlines() if line.startswith("H ")]
    assert hashes == [ref.model_hash], f"device model hash {hashes} != {ref.model_hash}"
    act = np.int8 if ref.dtype == "int8" else np.float32
    rows = [line.split() for line in out.splitlines() if line.startswith("R ")]
    per = ref.split_size + ref.n_classes
    vals = np.stack([np.frombuffer(bytes.fromhex(r[2]), dtype=np.dtype(act).newbyteorder("<")) for r in rows])
    assert vals.shape[1] == per
    flags = np.array([int(r[3]) for r in rows], dtype=np.int8)
    assert [int(r[1]) for r in rows] == list(range(len(rows)))
    return vals[:, : ref.split_size], vals[:, ref.split_size :], flags


def parse_bench(out: str) -> dict[str, tuple[int, int, int]]:
    """name -> (iterations, ticks, empty-loop ticks)."""
    res = {}
    for line in out.splitlines():
        if line.startswith("BENCH "):
            _, name, iters, t, empty = line.split()
            res[name] = (int(iters), int(t), int(empty))
    return res
