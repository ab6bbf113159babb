"""`toolchain export tflite --c-array`: the int8 head + exit for TensorFlow Lite Micro projects. The
array compiles (C99, C++, Cortex-M) 16-byte aligned and holds exactly the flatbuffer, TFLM runs those
bytes, and the op resolver lines register exactly the flatbuffer's ops, each one TFLM provides.

The tflite-micro wheel ships no C++ headers, so the resolver snippet is compiled against a stand-in
`MicroMutableOpResolver` that offers one Add method per kernel the wheel's TFLM build registers
(its exported `tflite::micro::Register_<OP>` symbols) and fails when more ops are added than the
template capacity; the real header is not available here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain.cli import main
from toolchain.export.tflite import describe
from toolchain.export.tflm import builtin_ops, resolver_method

STEM = "head_int8"


def tflm_registered_ops() -> set[str]:
    """The builtin kernels of the TFLite Micro build in the tflite-micro wheel."""
    import tflite_micro

    so = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "_runtime.so"
    out = subprocess.run(["nm", "-DC", "--defined-only", str(so)], capture_output=True, text=True, check=True)
    ops = set(re.findall(r"tflite::micro::Register_([A-Z0-9_]+)\(\)", out.stdout))
    assert "FULLY_CONNECTED" in ops and len(ops) > 80
    return ops


@pytest.fixture(scope="module")
def c_array(trained_bundle, data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tflm")
    argv = ["export", "tflite", "--bundle", str(trained_bundle), "--out", str(out), "--dtype", "int8"]
    assert main([*argv, "--c-array", "--data-dir", str(data_root)]) == 0
    return out


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


DUMP = """#include <stdint.h>
#include <stdio.h>
#include "head_int8_model.h"
int main(void) {
    if ((uintptr_t)tc_head_int8_model % 16u != 0u) return 3;
    if (tc_head_int8_model_len != TC_HEAD_INT8_MODEL_LEN) return 4;
    return fwrite(tc_head_int8_model, 1, tc_head_int8_model_len, stdout) == tc_head_int8_model_len ? 0 : 5;
}
"""


def test_the_array_is_the_aligned_flatbuffer_and_tflm_runs_it(c_array, tmp_path, mnist_splits):
    model = (c_array / f"{STEM}.tflite").read_bytes()
    assert f"#define TC_HEAD_INT8_MODEL_LEN {len(model)}u" in (c_array / f"{STEM}_model.h").read_text()
    (tmp_path / "dump.c").write_text(DUMP)
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{c_array}"]
    _run(["gcc", *flags, "dump.c", str(c_array / f"{STEM}_model.c"), "-o", "dump"], tmp_path)
    dumped = _run([str(tmp_path / "dump")], tmp_path).stdout
    assert dumped == model
    # The same source as C++ (TFLM projects) and for a Cortex-M4, where .rodata keeps the alignment.
    _run(["g++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{c_array}", "-c",
          str(c_array / f"{STEM}_model.c"), "-o", "model_cpp.o"], tmp_path)  # fmt: skip
    if shutil.which("arm-none-eabi-gcc"):
        _run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", *flags, "-c",
              str(c_array / f"{STEM}_model.c"), "-o", "model_m4.o"], tmp_path)  # fmt: skip
        sections = _run(["arm-none-eabi-readelf", "-SW", "model_m4.o"], tmp_path).stdout.decode()
        rodata = next(ln for ln in sections.splitlines() if ".rodata" in ln)
        assert int(rodata.split()[-1]) >= 16, rodata  # the section's alignment column
    # TFLite Micro itself runs the dumped bytes.
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(dumped)
    x = np.clip(np.round(mnist_splits.x_test[:1] * 255) - 128, -128, 127).astype(np.int8)
    it.set_input(x, 0)
    it.invoke()
    sizes = sorted(it.get_output(k).size for k in range(2))
    assert sizes == [10, 40]


STUB_HEAD = """#ifndef STUB_RESOLVER_H
#define STUB_RESOLVER_H
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
template <unsigned int tOpCount> class MicroMutableOpResolver {
 public:
  unsigned int count() const { return count_; }
"""
STUB_TAIL = """ private:
  TfLiteStatus Add() { return count_ < tOpCount ? (++count_, kTfLiteOk) : kTfLiteError; }
  unsigned int count_ = 0;
};
}  // namespace tflite
#endif
"""
MAIN = """#include "head_int8_ops.h"
int main() {
  tc::HeadInt8OpResolver resolver;
  if (tc::RegisterHeadInt8Ops(resolver) != kTfLiteOk) return 1;
  return resolver.count() == tc::kHeadInt8OpCount ? 0 : 2;
}
"""


def test_the_resolver_registers_exactly_the_models_ops_all_of_them_in_tflm(c_array, tmp_path):
    model = (c_array / f"{STEM}.tflite").read_bytes()
    ops = builtin_ops(describe(model))
    tflm = tflm_registered_ops()
    assert set(ops) <= tflm, f"ops TFLite Micro does not provide: {set(ops) - tflm}"
    text = (c_array / f"{STEM}_ops.h").read_text()
    assert re.findall(r"resolver\.(Add\w+)\(\)", text) == [resolver_method(op) for op in ops]
    assert f"constexpr unsigned int kHeadInt8OpCount = {len(ops)};" in text
    # Compile and run the snippet against a resolver offering every kernel TFLM registers.
    stub = tmp_path / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    methods = "".join(f"  TfLiteStatus {resolver_method(op)}() {{ return Add(); }}\n" for op in sorted(tflm))
    stub.write_text(STUB_HEAD + methods + STUB_TAIL)
    (tmp_path / "main.cc").write_text(MAIN)
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}", f"-I{c_array}"]
    _run(["g++", *flags, "main.cc", "-o", "ops"], tmp_path)
    assert subprocess.run([str(tmp_path / "ops")]).returncode == 0
    # One op too few in the capacity must fail, so the count above is what makes it succeed.
    small = text.replace(f"kHeadInt8OpCount = {len(ops)};", f"kHeadInt8OpCount = {len(ops) - 1};")
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "head_int8_ops.h").write_text(small)
    _run(["g++", *flags[:-1], f"-I{tmp_path / 'small'}", "main.cc", "-o", "ops_small"], tmp_path)
    assert subprocess.run([str(tmp_path / "ops_small")]).returncode == 1


def test_method_names_follow_tflm(tmp_path):
    assert resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method("BATCH_MATMUL") == "AddBatchMatMul"
    with pytest.raises(Exception, match="not a TFLite builtin"):
        resolver_method("fully connected")
