"""The wheel carries everything a build needs: installed into a clean virtual environment (no checkout on
its path), it builds the host target from a bundle and verifies it bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)], out)
    (whl,) = out.glob("toolchain-*.whl")
    return whl


@pytest.fixture(scope="module")
def clean_venv(wheel, tmp_path_factory) -> Path:
    """A new venv whose only toolchain is the wheel; the third-party packages come from this test run's
    environment through a plain path entry (its .pth files, the editable checkout among them, are not
    processed there)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], venv.parent)
    py = venv / "bin" / "python"
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv
        ).stdout.strip()
    )
    (site / "_third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], venv)
    return py


def test_wheel_holds_the_targets_and_firmware_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("targets/qemu-m4.toml", "targets/cores.toml", "targets/plan/devices.toml"):
        assert f"toolchain/share/{rel}" in names
    for rel in ("kernels/tc_head.c", "boards/cortex_m/sections.ld", "harness/tc_harness_host.c"):
        assert f"toolchain/share/firmware_templates/{rel}" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.slow
def test_clean_venv_builds_and_verifies_the_host_target(clean_venv, trained_bundle, data_root, tmp_path):
    where = _run([str(clean_venv), "-c", "import toolchain; print(toolchain.__file__)"], tmp_path).stdout
    assert str(REPO) not in where and "site-packages" in where, where
    cli = [str(clean_venv), "-m", "toolchain"]
    build = tmp_path / "build-host"
    _run([*cli, "build", "--target", "host", "--bundle", str(trained_bundle), "--out", str(build),
          "--data-dir", str(data_root), "--quiet"], tmp_path)  # fmt: skip
    report = tmp_path / "verify.json"
    _run([*cli, "verify", "--target", "host", "--build", str(build), "--samples", "300",
          "--data-dir", str(data_root), "--report", str(report), "--quiet"], tmp_path)  # fmt: skip
    r = json.loads(report.read_text())
    assert r["passed"] and r["samples"] == 300 and r["mismatches"]["samples"] == 0
