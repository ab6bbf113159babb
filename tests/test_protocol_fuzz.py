"""The device's frame parser and command handling under ASan + UBSan, fed random and mutated frames.

tests/c/fuzz_frames.c links the real protocol/application sources with a real exported model (from
the host build) and checks every reply against an independent model of docs/protocol.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers_fw import fw_fixture  # noqa: F401  (registers the `fw` fixture)

HARNESS = Path(__file__).resolve().parent / "c" / "fuzz_frames.c"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
FLAGS = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]


def build_harness(build_dir: Path, out: Path) -> Path:
    src = build_dir / "firmware" / "src"
    skip = {"tc_main.c", "tc_board_host.c"}
    sources = [str(p) for p in sorted(src.glob("*.c")) if p.name not in skip]
    exe = out / "fuzz_frames"
    subprocess.run(["gcc", *FLAGS, *SANITIZE, f"-I{src}", str(HARNESS), *sources, "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_parser_survives_random_and_mutated_frames(fw, tmp_path, dtype):
    exe = build_harness(fw("host", dtype), tmp_path)
    cases = 12000
    proc = subprocess.run(
        [str(exe), str(cases), "7" if dtype == "int8" else "8"],
        capture_output=True, text=True, timeout=120,
        env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = dict(
        (k, int(v))
        for k, v in re.findall(r"(cases|valid|mutated|garbage|replies|success|error) (\d+)", proc.stdout)
    )
    assert counts["cases"] == cases
    # Every kind of input was exercised, and both kinds of answer occurred many times.
    assert min(counts["valid"], counts["mutated"], counts["garbage"]) > cases // 10
    assert counts["mutated"] + counts["garbage"] >= 10_000
    assert counts["success"] > cases // 5 and counts["error"] > cases // 5
