"""Search space files, the constraint filter (against the export's memory predictor and the
planner's figures) and the search CLI's errors that need no training."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.dtypes import DType
from toolchain.errors import ConfigError
from toolchain.ir.head import head_shape
from toolchain.mcu.memory import predict_memory
from toolchain.search.constraints import make_constraints
from toolchain.search.sampler import RandomTrial, suggest
from toolchain.search.space import load_space, thin
from toolchain.sparsity import admissible_out_degrees, build_connectivity

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "search" / "space.toml"


def _space(tmp_path, text: str) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


def test_example_space_loads_and_candidates_are_valid_projects():
    sp = load_space(EXAMPLE)
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = suggest(sp, RandomTrial(rng))
        cfg = sp.to_config(c)  # validates the sparsity math
        assert cfg.network.neurons == [800, *c.hidden, 10]
        assert cfg.training.data_fraction == c.data_fraction in sp.fractions
    choices = sp.degree_choices((40, 40))
    assert choices[0] == thin(admissible_out_degrees(800, 40), 5)
    assert choices[0][0] == 1 and choices[0][-1] == 40  # sparsest and dense kept


def test_explicit_out_degrees_pair_with_the_widths_they_fit(tmp_path):
    sp = load_space(
        _space(
            tmp_path, "[structure]\nhidden = [[40, 40], [64, 32]]\nout_degrees = [[3, 9, 10], [4, 16, 5]]\n"
        )
    )
    assert sp.degree_choices((40, 40)) == [(3, 9, 10), (4, 16, 5)]
    assert sp.degree_choices((64, 32)) == [(4, 16, 5)]  # 800 -> 64 needs an even out-degree


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[structure\n", "invalid TOML"),
        ("colour = 1\n", "colour is not a known key"),
        ("[structure]\nwidths = [[4]]\n", "structure.widths is not a known key"),
        ("[structure]\nhidden = [40]\n", "structure.hidden = .* must be a list of lists"),
        ("[structure]\npatterns = ['zigzag']\n", "structure.patterns"),
        ("[data]\nfraction = [0, 0.5]\n", "data.fraction .* fractions in \\(0, 1\\]"),
        ("[training]\nbatch_size = [0]\n", "training.batch_size .* integers >= 1"),
        ("[resources]\nplacements = ['nowhere.toml']\n", "nowhere.toml does not exist"),
        (
            "[structure]\nhidden = [[64, 32]]\nout_degrees = [[3, 8, 10]]\n",
            "no list fits hidden = \\[64, 32\\]",
        ),
        ("[structure]\nhidden = [[40]]\nsplit_after = [2]\n", "split_after = 2 is deeper"),
        ("[search]\nobserve_epochs = 1\n", "search.observe_epochs .* >= 2"),
    ],
)
def test_malformed_space_is_a_clear_error_naming_file_and_field(tmp_path, text, match):
    p = _space(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_space(p)
    assert str(p) in str(exc.value)


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([(40, 40), (64, 32), (100, 50)]), st.integers(0, 4), st.sampled_from(["random", "affine"])
)
def test_constraint_filter_is_the_export_memory_predictor(hidden, k, pattern):
    """Flash and RAM of the filter equal predict_memory(head_shape(...)) of the int8 head + exit, and
    a candidate is rejected exactly when they exceed the target's budget."""
    sp = load_space(EXAMPLE)
    sp.patterns = [pattern]
    con = make_constraints("qemu-m3", "uart-115200", None, None)
    # a budget the example structures straddle (qemu-m3's 256 KiB would take them all)
    con.costs = dataclasses.replace(con.costs, budget={"flash": 30_000, "ram": 10_500, "stack": 1024})
    degs = [
        (opts := thin(admissible_out_degrees(a, b), 5))[min(k, len(opts) - 1)]
        for a, b in zip([800, *hidden], [*hidden, 10], strict=True)
    ]
    c = suggest(sp, RandomTrial(np.random.default_rng(0)))
    cfg = sp.to_config(
        type(c)(**{**c.__dict__, "hidden": hidden, "out_degrees": tuple(degs), "pattern": pattern})
    )
    cost = con.check(cfg)
    conns = build_connectivity(cfg.network.neurons, cfg.network.out_degrees, pattern, cfg.network.seed)
    mem = predict_memory(head_shape(cfg, conns, cfg.network.split_after, DType.INT8))
    assert cost.flash == mem["flash"]["model_data_aligned"]
    stack = max(con.costs.budget["stack"], mem["ram"]["stack_estimate"])
    assert cost.ram == mem["ram"]["static"] + sum(mem["ram"]["caller_buffers"].values()) + stack
    over = cost.flash > con.costs.budget["flash"] or cost.ram > con.costs.budget["ram"]
    assert (cost.reason is not None) == over


def test_memory_budget_rejects_exactly_above_the_predicted_flash():
    sp = load_space(EXAMPLE)
    con = make_constraints("qemu-m3", "uart-115200", None, None)
    flash = con.check(sp.base).flash
    for budget, rejected in ((flash, False), (flash - 1, True)):
        con = make_constraints("qemu-m3", "uart-115200", None, None)
        con.costs = dataclasses.replace(con.costs, budget={**con.costs.budget, "flash": budget})
        reason = con.check(sp.base).reason
        assert (reason is not None) == rejected
    assert reason.startswith(f"flash {flash:,} B > {flash - 1:,} B of qemu-m3")


def test_instruction_and_offload_limits_reject_at_the_boundary():
    sp = load_space(EXAMPLE)
    cfg = sp.base
    free = make_constraints(None, "uart-115200", None, None).check(cfg)
    assert free.reason is None
    at = make_constraints(None, "uart-115200", free.instructions, free.offload_bytes).check(cfg)
    assert at.reason is None  # limits are inclusive
    below = make_constraints(None, "uart-115200", free.instructions - 1, free.offload_bytes - 1).check(cfg)
    assert "max_instructions" in below.reason and "max_offload_bytes" in below.reason


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolchain", "search", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_space_with_no_admissible_candidate(tmp_path):
    p = _space(tmp_path, "[structure]\nhidden = [[128, 64]]\n[constraints]\nmax_offload_bytes = 10\n")
    r = _cli("--space", str(p), "--target-accuracy", "0.9", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "no admissible candidate" in r.stderr and "max_offload_bytes 10" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o" / "trials.json").exists()


@pytest.mark.parametrize("eps", ["1.0", "0", "1.5"])
def test_cli_target_accuracy_that_cannot_be_reached(tmp_path, eps):
    r = _cli("--space", str(EXAMPLE), "--target-accuracy", eps, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "is not reachable" in r.stderr and "Traceback" not in r.stderr


def test_cli_malformed_space_and_bad_deadline(tmp_path):
    p = _space(tmp_path, "[data]\nfraction = 'half'\n")
    r = _cli("--space", str(p), "--target-accuracy", "0.9", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "data.fraction" in r.stderr and str(p) in r.stderr
    r = _cli(
        "--space",
        str(EXAMPLE),
        "--target-accuracy",
        "0.9",
        "--out",
        str(tmp_path / "o"),
        "--deadline-min",
        "0",
    )
    assert r.returncode == 2 and "--deadline-min 0 must be a positive" in r.stderr


def test_cli_ray_address_that_does_not_answer(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = _cli("--space", str(EXAMPLE), "--target-accuracy", "0.9", "--out", str(tmp_path / "o"), "--address",
             f"127.0.0.1:{port}")  # fmt: skip
    assert r.returncode == 2 and "no Ray cluster answers" in r.stderr and "Traceback" not in r.stderr
