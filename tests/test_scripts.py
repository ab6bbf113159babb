"""The README's two commands: one installs what is missing and trains the default project, one installs
what is missing and runs the tests; CI runs exactly the second (issue 13)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN, TEST = "bash scripts/train.sh", "bash scripts/test.sh"


def _commands(text: str) -> list[str]:
    """Command lines of shell code (comments and blank lines dropped)."""
    return [ln.split("#")[0].strip() for ln in text.splitlines() if ln.split("#")[0].strip()]


def test_the_readme_quick_start_is_the_two_commands_and_ci_runs_the_second():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick, re.S)
    assert block, "the quick start has a shell block"
    assert _commands(block.group(1)) == [TRAIN, TEST]
    ci = _commands((REPO / ".ci" / "run").read_text())
    assert ci[-1] == TEST and all(not c.startswith((".venv", "python", "pytest")) for c in ci)


def test_both_wrappers_install_first_then_run_their_job():
    for script, job in (("train.sh", ".venv/bin/toolchain train"), ("test.sh", ".venv/bin/python -m pytest")):
        lines = _commands((REPO / "scripts" / script).read_text())
        install = lines.index("bash scripts/install.sh")
        runs = [i for i, ln in enumerate(lines) if job in ln]
        assert runs and runs[0] > install and lines[-1].startswith(f"exec {job}")
    for script in (REPO / "scripts").glob("*.sh"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script


def test_install_dry_run_changes_nothing_and_finds_the_system_packages(tmp_path):
    venv = REPO / ".venv"
    before = venv.stat().st_mtime if venv.exists() else None
    proc = subprocess.run(
        ["bash", "scripts/install.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    # The tests themselves need every apt package (QEMU, the cross compiler, Fashion-MNIST, ...).
    assert "== apt: nothing missing" in proc.stdout
    assert re.search(r"== python: (\.venv is up to date|would create or update \.venv)", proc.stdout)
    assert (venv.stat().st_mtime if venv.exists() else None) == before
    bad = subprocess.run(["bash", "scripts/install.sh", "--bogus"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
