"""Generated C cross-compiled with -Werror for Cortex-M0/M3/M4F/M33/M55 and run under QEMU.

Each ELF is the library's QEMU harness (toolchain.mcu.runner: firmware_templates/harness/, the firmware's
own start-up and linker script) with 100 MNIST test samples compiled in; it prints every output, which
must equal the host reference bit for bit. The M0 (microbit), M3 (lm3s6965evb) and the FPU-less float32
builds use software floating point.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers_c import deep_bundle, export

from toolchain.mcu.memory import STACK_ESTIMATE, compare, measure_elf, measure_stack, stack_chain
from toolchain.mcu.runner import compile_model_qemu, core, parse_results, run_qemu, write_vectors

N_SAMPLES = 100


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(
    scope="module",
    params=[(c, d) for c in ("random", "affine", "deep_cyclic", "deep_random") for d in ("int8", "float32")],
    ids=str,
)
def cmodel(request, mnist_splits, data_root, tmp_root):
    name, dtype = request.param
    if name == "random":
        bundle = request.getfixturevalue("trained_bundle")
    elif name == "affine":
        bundle = request.getfixturevalue("trained_bundle_affine")
    else:
        bundle = deep_bundle(tmp_root, mnist_splits, name.split("_", 1)[1])
    return export(bundle, dtype, data_root, tmp_root)


@pytest.mark.parametrize("name", ["cortex-m4", "cortex-m3", "cortex-m0", "cortex-m33", "cortex-m55"])
def test_cortex_m_build_runs_bit_exact_in_qemu(cmodel, name, mnist_splits, tmp_path):
    c = core(name)
    ref = cmodel.ir
    x, _ = write_vectors(ref, mnist_splits.x_test, N_SAMPLES, tmp_path)
    elf = compile_model_qemu(cmodel, c, tmp_path, tmp_path)
    out = parse_results(run_qemu(elf, c), ref)
    assert len(out.exit_flag) == N_SAMPLES
    r_split, r_logits, r_flag = ref.infer(x)
    assert np.array_equal(out.split.view(np.uint8), r_split.view(np.uint8)), f"{name}: split differs"
    assert np.array_equal(out.exit_logits.view(np.uint8), r_logits.view(np.uint8)), f"{name}: logits differ"
    assert np.array_equal(out.exit_flag.astype(bool), r_flag), f"{name}: exit decisions differ"


def test_predicted_memory_matches_the_linked_elf(cmodel, mnist_splits, tmp_path):
    """Every const array, the descriptor table and the static buffers have the predicted size."""
    write_vectors(cmodel.ir, mnist_splits.x_test, 2, tmp_path)
    elf = compile_model_qemu(cmodel, core("cortex-m4"), tmp_path, tmp_path)
    measured = measure_elf(elf)
    rows = compare(cmodel.memory, measured)
    assert rows, "nothing to compare"
    for name, predicted, actual in rows:
        assert actual == predicted, f"{name}: predicted {predicted} B, ELF has {actual}"
    assert measured["sections"][".text"] > cmodel.memory["flash"]["model_data"]
    # The deepest kernel call chain fits the stack estimate.
    frames = measure_stack([tmp_path / f"{src.stem}.su" for src in cmodel.kernel_sources])
    assert {"tc_head_infer", "tc_layer_forward"} <= set(frames)
    chain = stack_chain(frames)
    assert chain <= STACK_ESTIMATE[cmodel.dtype], f"stack {chain} B > estimate, frames {frames}"
