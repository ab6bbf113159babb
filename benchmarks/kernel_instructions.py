"""Instructions per inference and per MAC of the exported head + exit on a Cortex-M4F (QEMU icount) and
on the host (valgrind callgrind): our sparse kernels for each pattern (index table `random`,
index-free `affine` and `cyclic`), int8 and float32, against a plain dense int8 loop over the
equivalent dense head (tests/c/dense/).

QEMU: `qemu-system-arm -M mps2-an386 -icount shift=0` runs the semihosting harness of tests/c/qemu/,
which times 1000 inferences and 1000 calls of each layer with SysTick (25 MHz at 1 ns per
instruction: 40 instructions per tick), minus an empty loop of the same shape. Every ELF first checks
its outputs against the host reference (bit-exact, or the run fails). These are guest instruction
counts, not cycles (qemu-cortex-m.md §7). Host: callgrind counts the instructions (Ir) executed
inside the inference function over the test samples, x86-64 gcc -O2.

    python benchmarks/kernel_instructions.py --data-dir /work/shared/datasets
    python benchmarks/kernel_instructions.py --bundles random=DIR affine=DIR cyclic=DIR
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from toolchain.dtypes import DType
from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.mcu.runner import (
    compile_model_host,
    compile_model_qemu,
    core,
    parse_bench,
    parse_results,
    run_qemu,
    write_vectors,
)
from toolchain.progress import log, markdown_table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
PATTERNS = ("random", "affine", "cyclic")
DENSE_DIR = REPO / "tests" / "c" / "dense"  # the dense int8 baseline (test-only C)


def train_bundles(patterns, epochs: int, data_dir, work: Path) -> dict[str, Path]:
    """The default project ([800, 40, 40, 10], out-degrees [2, 9, 10]) per pattern, briefly trained
    (instruction counts and sizes do not depend on how well it is trained)."""
    from toolchain.config import default_config, validate
    from toolchain.data import load_splits
    from toolchain.train import train

    out = {}
    splits = None
    for pattern in patterns:
        cfg = default_config()
        cfg.network.pattern = pattern
        cfg.training.epochs = epochs
        validate(cfg)
        splits = splits or load_splits(cfg.dataset, 800, cfg.training.validation_size, data_dir)
        path = work / f"bundle_{pattern}"
        log(f"training the default project with the {pattern} pattern ({epochs} epochs)")
        train(cfg, path, data=splits, quiet=True)
        out[pattern] = path
    return out


def resolve_bundles(given: list[str], epochs: int, data_dir, work: Path) -> dict[str, Path]:
    """One bundle per pattern, in PATTERNS order: `PATTERN=DIR` arguments, the rest trained now."""
    named = dict(b.split("=", 1) for b in given)
    bundles = {pt: Path(named[pt]) for pt in PATTERNS if pt in named}
    bundles.update(train_bundles([pt for pt in PATTERNS if pt not in named], epochs, data_dir, work))
    return {pt: bundles[pt] for pt in PATTERNS}


def macs(ref) -> int:
    return sum(ly.n_out * ly.d_in for ly in ref.layers)


def dense_macs(ref) -> int:
    return sum(ly.n_out * ly.n_in for ly in ref.layers)


def write_dense_data(ref, out_dir: Path) -> Path:
    """tc_dense_data.h: the int8 head as dense [n_out][n_in] weights (zeros where edges are missing)."""
    lines = ["/* Generated: the dense equivalent of the exported int8 head. */", '#include "tc_dense_s8.h"']
    descs = []
    for ly in ref.layers:
        dense = np.zeros((ly.n_out, ly.n_in), dtype=np.int8)
        np.put_along_axis(dense, ly.idx.astype(np.int64), ly.w, axis=1)
        q = ly.quant
        for name, arr, ctype in (
            ("w", dense.ravel(), "int8_t"),
            ("bias", ly.bias, "int32_t"),
            ("mult", q["mult"], "int32_t"),
            ("shift", q["shift"], "int8_t"),
        ):
            vals = ", ".join(str(int(v)) for v in arr)
            lines.append(f"static const {ctype} tc_dense_{ly.name}_{name}[{len(arr)}] = {{{vals}}};")
        p = f"tc_dense_{ly.name}"
        descs.append(
            f"{{{p}_w, {p}_bias, {p}_mult, {p}_shift, "
            f"{ly.n_in}, {ly.n_out}, {q['in_zp']}, {q['out_zp']}, {q['act_min']}}}"
        )
    lines.append(f"#define TC_DENSE_NUM_LAYERS {len(ref.layers)}")
    lines.append(f"#define TC_DENSE_MAX_WIDTH {max(ly.n_out for ly in ref.layers)}")
    lines.append("static const tc_dense_layer_t tc_dense_layers[TC_DENSE_NUM_LAYERS] = {")
    lines.append(",\n".join(descs))
    lines.append("};")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tc_dense_data.h"
    path.write_text("\n".join(lines) + "\n")
    return path


def dense_build(cm, gen_dir: Path):
    """A CModel-like object whose sources add the dense baseline."""
    return SimpleNamespace(
        sources=[*cm.sources, DENSE_DIR / "tc_dense_s8.c"],
        include_dirs=[*cm.include_dirs, DENSE_DIR, gen_dir],
    )


def qemu_counts(build, ref, x_test, work: Path, iters: int, defines=()) -> dict[str, float]:
    """Instructions per call (head and each layer / permutation) on mps2-an386, outputs checked."""
    m4 = core("cortex-m4")
    x, _ = write_vectors(ref, x_test, 20, work)
    elf = compile_model_qemu(build, m4, work, work, defines=(f"TC_BENCH_ITERS={iters}", *defines))
    out = run_qemu(elf, m4, timeout=300)
    res = parse_results(out, ref)
    split, logits, flag = res.split, res.exit_logits, res.exit_flag
    r_split, r_logits, r_flag = ref.infer(x)
    if not (
        np.array_equal(split.view(np.uint8), r_split.view(np.uint8))
        and np.array_equal(logits.view(np.uint8), r_logits.view(np.uint8))
        and np.array_equal(flag.astype(bool), r_flag)
    ):
        raise SystemExit(f"{work.name}: outputs differ from the reference; not benchmarking a wrong kernel")
    per_tick = 1e9 / m4.systick_hz  # instructions per SysTick tick at -icount shift=0
    return {name: (t - empty) * per_tick / it for name, (it, t, empty) in parse_bench(out).items()}


def callgrind_ir(build, ref, x_enc: np.ndarray, work: Path, function: str, defines=()) -> float:
    """Instructions (Ir) per inference inside `function`, host build, under callgrind."""
    exe = compile_model_host(build, work / "host", defines, flags=["-g"])
    inp, outp, cg = work / "in.bin", work / "out.bin", work / "callgrind.out"
    np.ascontiguousarray(x_enc).tofile(inp)
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", f"--toggle-collect={function}",
         str(exe), str(inp), str(outp)],
        check=True, capture_output=True,
    )  # fmt: skip
    total = re.search(r"^(?:summary|totals):\s*(\d+)", cg.read_text(), re.M)
    if total is None:
        raise SystemExit(f"no callgrind totals in {cg}")
    return int(total.group(1)) / len(x_enc)


def run(bundles: dict[str, Path], data_dir, work: Path, iters: int, host_samples: int) -> dict:
    from toolchain.data import load_splits
    from toolchain.mcu.cexport import export_c

    splits = load_splits("mnist", 800, 5000, data_dir)
    rows = []
    for pattern, bundle in bundles.items():
        for dtype in DType:
            cm = export_c(bundle, work / f"export_{pattern}_{dtype}", dtype, data_dir)
            ref = cm.ir
            log(f"{pattern} {dtype}: QEMU mps2-an386 and callgrind")
            q = qemu_counts(cm, ref, splits.x_test, work / f"m4_{pattern}_{dtype}", iters)
            x_host = ref.encode_input(splits.x_test[:host_samples])
            hw = work / f"host_{pattern}_{dtype}"
            hw.mkdir(parents=True, exist_ok=True)
            host = callgrind_ir(cm, ref, x_host, hw, "tc_head_infer")
            layers = [
                {
                    "name": ly.name,
                    "kind": ly.kind,
                    "macs": ly.n_out * ly.d_in,
                    "m4_instructions": round(q[f"layer{i}"], 1),
                    "m4_permute": round(q[f"permute{i}"], 1) if f"permute{i}" in q else 0.0,
                }
                for i, ly in enumerate(ref.layers)
            ]
            rows.append(
                {
                    "kernel": f"sparse {pattern}",
                    "dtype": dtype,
                    "macs": macs(ref),
                    "m4_instructions": round(q["head"], 1),
                    "m4_per_mac": round(q["head"] / macs(ref), 3),
                    "host_instructions": round(host, 1),
                    "host_per_mac": round(host / macs(ref), 3),
                    "layers": layers,
                }
            )
            if pattern == next(iter(bundles)) and dtype == "int8":
                gen = work / "dense_gen"
                write_dense_data(ref, gen)
                build = dense_build(cm, gen)
                log("dense int8 baseline: QEMU and callgrind")
                dq = qemu_counts(
                    build, ref, splits.x_test, work / "m4_dense", iters,
                    defines=("TC_INFER=tc_dense_infer", "TC_BENCH_NO_LAYERS"),
                )  # fmt: skip
                dh = callgrind_ir(
                    build, ref, x_host, hw, "tc_dense_infer", defines=("TC_INFER=tc_dense_infer",)
                )
                dense_row = {
                    "kernel": "dense int8 loop (same head, zeros stored)",
                    "dtype": "int8",
                    "macs": dense_macs(ref),
                    "m4_instructions": round(dq["head"], 1),
                    "m4_per_mac": round(dq["head"] / dense_macs(ref), 3),
                    "host_instructions": round(dh, 1),
                    "host_per_mac": round(dh / dense_macs(ref), 3),
                    "layers": [],
                }
    rows.append(dense_row)
    return {"rows": rows, "iterations": iters, "host_samples": host_samples}


def _tool_versions() -> dict[str, str]:
    out = {}
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "gcc", "valgrind"):
        res = subprocess.run([tool, "--version"], capture_output=True, text=True)
        out[tool] = res.stdout.splitlines()[0] if res.stdout else "?"
    return out


def markdown(result: dict) -> str:
    head = ["kernel", "dtype", "MACs", "M4 instr/inference", "M4 instr/MAC", "host instr/inference",
            "host instr/MAC"]  # fmt: skip
    rows = [
        [r["kernel"], r["dtype"], r["macs"], round(r["m4_instructions"]), r["m4_per_mac"],
         round(r["host_instructions"]), r["host_per_mac"]]
        for r in result["rows"]
    ]  # fmt: skip
    layer_head = ["kernel", "dtype", "layer", "kind", "MACs", "M4 instr", "of which permutation",
                  "M4 instr/MAC", "M4 instr/MAC without permutation"]  # fmt: skip
    layer_rows = [
        [r["kernel"], r["dtype"], ly["name"], ly["kind"], ly["macs"], round(ly["m4_instructions"]),
         round(ly["m4_permute"]), round(ly["m4_instructions"] / ly["macs"], 3),
         round((ly["m4_instructions"] - ly["m4_permute"]) / ly["macs"], 3)]
        for r in result["rows"] for ly in r["layers"]
    ]  # fmt: skip
    tools = "; ".join(f"{k}: {v}" for k, v in result["tools"].items())
    return (
        "# Kernel instructions: head + exit of the default project\n\n"
        f"Command: `{result.get('command', 'python benchmarks/kernel_instructions.py')}`\n\n"
        "Cortex-M4F = `qemu-system-arm -M mps2-an386 -icount shift=0`, SysTick over "
        f"{result['iterations']} inferences minus an empty loop (guest instructions, not cycles). "
        f"Host = valgrind callgrind Ir inside the inference function, x86-64 gcc -O2, "
        f"{result['host_samples']} test samples. MACs = stored (sparse) weights; the dense row counts "
        "every weight of the equivalent dense head. All outputs were checked bit-exact before timing.\n\n"
        + markdown_table(head, rows)
        + "\n\nPer layer on the Cortex-M4F (layer = `tc_layer_forward`, including requantization and, "
        "for index-free layers, the permutation of the input):\n\n"
        + markdown_table(layer_head, layer_rows)
        + f"\n\nTools: {tools}\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="directory holding mnist/ (default: $TOOLCHAIN_DATA_DIR or cache)")
    p.add_argument("--bundles", nargs="*", default=[], metavar="PATTERN=DIR", help="use these bundles")
    p.add_argument("--epochs", type=int, default=3, help="epochs when training the bundles (default 3)")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--host-samples", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    args = p.parse_args(argv)
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "valgrind", "gcc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: gcc-arm-none-eabi, qemu-system-arm, valgrind)")
    work = Path(tempfile.mkdtemp(prefix="tc-kernel-bench-"))
    try:
        bundles = resolve_bundles(args.bundles, args.epochs, args.data_dir, work)
        result = run(bundles, args.data_dir, work, args.iterations, args.host_samples)
        result["tools"] = _tool_versions()
        result["command"] = "python benchmarks/kernel_instructions.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        out = Path(args.out)
        atomic_write_json(out / "kernel_instructions.json", result)
        md = markdown(result)
        atomic_write_text(out / "kernel_instructions.md", md)
        print(md)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
