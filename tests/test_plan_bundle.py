"""`toolchain plan` with the session's trained bundle: the exit sweep on the validation split (float
max-softmax, and the int8 margin rule of a real C export), expectations at the calibrated threshold,
memory equal to the export's own prediction, and the CLI outputs (JSON, PNG, markdown)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers_c import export

from toolchain.bundle import load_bundle
from toolchain.cli import main
from toolchain.plan.core import PlanOptions, make_plan
from toolchain.plan.costs import Overrides
from toolchain.plan.splits import memory_summary


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("plan")


@pytest.fixture(scope="module")
def int8_export(trained_bundle, data_root, tmp_root):
    return export(trained_bundle, "int8", data_root, tmp_root)


@pytest.fixture(scope="module")
def build_dir(trained_bundle, int8_export, tmp_root) -> Path:
    """A build directory as `toolchain build` lays it out: bundle/ and the C export in model/."""
    d = tmp_root / "build"
    shutil.copytree(trained_bundle, d / "bundle")
    shutil.copytree(int8_export.dir, d / "model")
    return d


@pytest.fixture(scope="module")
def float_plan(trained_bundle, data_root):
    opts = PlanOptions(bundle=str(trained_bundle), target="nano33ble", data_dir=str(data_root))
    opts.overrides = Overrides(link="ble")
    return make_plan(opts)


def _at(plan, key):
    th = plan["thresholds"]
    return th["sweep"][key][th["calibrated"]["row"]]


def test_float_sweep_calibrated_row_matches_metrics(float_plan, trained_bundle):
    m = load_bundle(trained_bundle).metrics
    th = float_plan["thresholds"]
    assert th["score"] == "max_softmax" and th["validation_samples"] == m["samples"]["validation"]
    cal = th["calibrated"]
    assert cal["threshold"] == m["exit_threshold"]
    assert cal["exit_rate"] == pytest.approx(m["validation"]["exit_rate"], abs=1e-9)
    assert cal["accuracy"] == pytest.approx(m["validation"]["accuracy_at_threshold"], abs=1e-9)
    assert cal["test_information_only"]["exit_rate"] == m["exit_rate"]


def test_expectations_at_the_calibrated_threshold(float_plan):
    th = float_plan["thresholds"]
    p, s = th["calibrated"]["exit_rate"], th["wire_bytes"]
    assert s == 50  # 40 int8 values + one serial frame
    assert _at(float_plan, "bytes") == pytest.approx((1 - p) * s)
    t_dev = th["device_ms"]
    # BLE profile: 1 Mbit/s, RTT 15 ms, tail 0.445 ms, 9.9 mW device, 14.4 nJ/bit.
    assert _at(float_plan, "latency_ms") == pytest.approx(t_dev + (1 - p) * (8 * s / 1e3 + 15.0 + 0.445))
    assert _at(float_plan, "energy_uj") == pytest.approx(9.9 * t_dev + (1 - p) * 8 * s * 14.4e-3)
    rates = th["sweep"]["exit_rate"]
    assert rates[0] == 1.0 and rates[-1] == 0.0
    assert th["sweep"]["bytes"][0] == 0.0 and th["sweep"]["bytes"][-1] == s


def test_int8_build_uses_the_device_rule(build_dir, int8_export, data_root):
    plan = make_plan(PlanOptions(bundle=str(build_dir), data_dir=str(data_root)))
    th = plan["thresholds"]
    rule = int8_export.ir.exit_rule
    assert th["score"] == "margin_int8" and plan["dtype"] == "int8"
    assert th["calibrated"]["threshold"] == int8_export.ir.exit_threshold
    assert th["calibrated"]["exit_rate"] == pytest.approx(rule["validation"]["exit_rate"], abs=1e-9)
    val = rule["validation"]
    assert th["calibrated"]["accuracy"] == pytest.approx(val["accuracy_at_threshold"], abs=1e-9)
    # Memory of the trained split point: exactly the export's own prediction (toolchain.mcu.memory).
    row = plan["split_points"][0]
    assert row["memory"]["int8"] == memory_summary(int8_export.memory)
    # No verify report: device time from the per-MAC estimate at the stm32f4's 16 MHz, IPC 1.
    assert th["device_ms"] == pytest.approx(row["instructions_estimate"] / 16e6 * 1e3)


def test_verify_report_sets_the_device_time(build_dir, data_root, tmp_root):
    d = tmp_root / "build_verified"
    shutil.copytree(build_dir, d)
    # The counter block of a verify report (toolchain/mcu/verify/report.py) from a QEMU run.
    report = {"counter": {"unit": "instructions (QEMU icount)", "mean": 12000.0, "min": 0, "max": 0}}
    (d / "verify.json").write_text(json.dumps(report))
    plan = make_plan(PlanOptions(bundle=str(d), target="stm32f4", data_dir=str(data_root)))
    assert plan["thresholds"]["device_ms"] == pytest.approx(12000 / 16e6 * 1e3)
    assert "verify.json" in plan["thresholds"]["device_ms_source"]
    opts = PlanOptions(bundle=str(d), target="stm32f4", data_dir=str(data_root), instructions=8000)
    assert make_plan(opts)["thresholds"]["device_ms"] == pytest.approx(0.5)


def test_bundle_errors(build_dir, trained_bundle, data_root, capsys):
    common = ["--data-dir", str(data_root)]
    assert main(["plan", "--bundle", str(trained_bundle), "--split", "2", *common]) == 2
    err = capsys.readouterr().err
    assert "exit after hidden layer 1, not 2" in err and "Traceback" not in err
    assert main(["plan", "--bundle", str(build_dir), "--dtype", "float32", *common]) == 2
    assert "differs from the build's int8 export" in capsys.readouterr().err
    assert main(["plan", "--plot", "x.png"]) == 2
    assert "needs --bundle" in capsys.readouterr().err


def test_cli_writes_json_plot_and_markdown(trained_bundle, data_root, tmp_path, capsys):
    out, png, md = tmp_path / "p.json", tmp_path / "p.png", tmp_path / "p.md"
    argv = ["plan", "--bundle", str(trained_bundle), "--data-dir", str(data_root), "--link", "lte"]
    argv += ["--power-mw", "30", "--json", str(out), "--plot", str(png), "--markdown", str(md)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "<- calibrated" in text and "kserve-binary" in text
    plan = json.loads(out.read_text())
    assert plan["wire"] == "kserve-binary" and plan["thresholds"]["wire_bytes"] == 373
    assert len(plan["thresholds"]["sweep"]["energy_uj"]) == len(plan["thresholds"]["sweep"]["threshold"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "<- calibrated" in md.read_text()
