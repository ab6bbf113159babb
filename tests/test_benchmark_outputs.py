"""Quick benchmark modes never overwrite the committed tables in benchmarks/results/ (issue 13)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import _results  # noqa: E402  (benchmarks/ is not a package)


def test_count_only_writes_beside_not_over_the_committed_table(tmp_path):
    shutil.copytree(BENCH, tmp_path / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    committed = (BENCH / "results" / "paper_tables.md").read_text()
    proc = subprocess.run(
        [sys.executable, "benchmarks/paper_tables.py", "--count-only"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "benchmarks" / "results" / "paper_tables.md").read_text() == committed
    quick = (tmp_path / "build" / "benchmarks" / "paper_tables.md").read_text()
    assert "--count-only" in quick and quick != committed
    assert "reduced run (--count-only)" in proc.stderr


def test_the_full_run_and_only_it_defaults_to_the_results_directory():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--count-only", action="store_true")
    p.add_argument("--data-dir")
    p.add_argument("--build")
    p.add_argument("--out")
    full = p.parse_args(["--data-dir", "/data", "--build", "b"])
    assert _results.output_path(p, full, "t", neutral={"build"}) == _results.RESULTS / "t"
    assert _results.output_path(p, full, "t", neutral={"build"}, extra=["x"]) == _results.SCRATCH / "t"
    for argv in (["--seeds", "1"], ["--count-only"], ["--build", "b"]):
        assert _results.output_path(p, p.parse_args(argv), "t") == _results.SCRATCH / "t", argv
    assert _results.output_path(p, p.parse_args(["--count-only", "--out", "x/y"]), "t") == Path("x/y")
    assert not _results.SCRATCH.is_relative_to(_results.RESULTS)


def test_every_benchmark_chooses_its_output_through_the_same_rule():
    scripts = [p for p in BENCH.glob("*.py") if not p.name.startswith("_")]
    assert len(scripts) >= 8
    for script in scripts:
        text = script.read_text()
        assert "output_path(" in text, f"{script.name} writes results without _results.output_path"
        assert '"benchmarks/results' not in text, f"{script.name} hard-codes the results directory"
