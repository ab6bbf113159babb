"""`toolchain search` end to end on a real local Ray (one per CLI run, in its own temp directory,
checked gone afterwards): a tiny search that reaches its target and whose best.toml trains to it,
an interrupted search that resumes, an unreachable target, a deadline too short for any trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EPS = 0.65  # the tiny candidates reach 0.65-0.72 on validation after 1-2 epochs of 2,200-3,300 samples

TINY = """
name = "tiny"
[structure]
hidden = [[32, 16]]
out_degrees = [[32, 16, 10], [8, 16, 10]]
patterns = ["affine"]
[data]
fraction = [0.04, 0.06]
[training]
batch_size = [64]
epochs = [{epochs}]
[resources]
threads = [1]
[search]
trials = {trials}
observe_epochs = 2
"""


def _ray_pids(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(entry))
    return pids


def _gone(marker: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _ray_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not _ray_pids(marker)


def _space(tmp_path: Path, trials: int = 2, epochs: int = 2) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(TINY.format(trials=trials, epochs=epochs))
    return p


def _cmd(space: Path, out: Path, eps: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "toolchain", "search", "--space", str(space), "--target-accuracy", str(eps),
            "--out", str(out), "--num-cpus", "2", "--watts-per-thread", "5", *extra]  # fmt: skip


def _env(data_root) -> tuple[dict[str, str], str]:
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    return {**os.environ, "RAY_TMPDIR": ray_tmp, "TOOLCHAIN_DATA_DIR": str(data_root)}, ray_tmp


def test_tiny_search_reaches_the_target_and_best_toml_trains_to_it(tmp_path, data_root):
    env, ray_tmp = _env(data_root)
    out = tmp_path / "out"
    r = subprocess.run(_cmd(_space(tmp_path), out, EPS), env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.listdir(ray_tmp) and _gone(ray_tmp), "the search left Ray processes behind"
    assert "trial 1/2 start" in r.stderr and "trial 2/2 epoch   1/2" in r.stderr  # progress per trial
    for name in ("trials.json", "trials.csv", "pareto.png", "best.toml", "report.md"):
        assert (out / name).is_file(), name
    table = json.loads((out / "trials.json").read_text())
    trials = [t for t in table["trials"] if t["trial"] is not None]
    assert len(trials) == 2
    for t in trials:
        assert t["energy_label"].startswith("estimated: CPU seconds x 5 W per thread")
        assert t["energy_j"] == pytest.approx(5 * t["busy_s"], rel=1e-9)  # energy = busy s x 5 W
        assert t["epochs_run"] == len(t["curve"]) >= 1 and t["flash"] > 0 and t["instructions"] > 0
        if t["status"] == "reached":
            assert t["k"] == t["epochs_run"] and t["curve"][-1] >= EPS > max(t["curve"][:-1], default=0)
    best = min((t for t in trials if t["status"] == "reached"), key=lambda t: t["energy_to_target_j"])
    assert json.loads(r.stdout)["trial"] == best["trial"]
    cfg = tomllib.loads((out / "best.toml").read_text())
    assert cfg["training"]["stop_at_accuracy"] == EPS
    assert cfg["training"]["data_fraction"] == best["data_fraction"]
    assert cfg["network"]["out_degrees"] == best["out_degrees"]
    assert "energy" in (out / "report.md").read_text().lower()

    from toolchain.config import load_config
    from toolchain.train import train

    res = train(load_config(out / "best.toml"), None, data_dir=data_root, quiet=True)
    curve = res.metrics["training"]["curve"]
    assert curve[-1]["val_final_accuracy"] >= EPS  # `toolchain train --config best.toml` reaches ε_max
    assert len(curve) <= best["epochs"]


def test_interrupted_search_resumes_and_keeps_finished_trials(tmp_path, data_root):
    env, ray_tmp = _env(data_root)
    out = tmp_path / "out"
    cmd = _cmd(_space(tmp_path, trials=3), out, EPS)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "trial 1/3 done" in line:
                proc.send_signal(signal.SIGINT)  # Ctrl-C after the first finished trial
                break
        rest, _ = proc.communicate(timeout=300)[::-1]
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(seen) + (rest or "")
    assert proc.returncode != 0, err[-3000:]
    assert "interrupted" in err and "run the same command again" in err and "Traceback" not in err
    assert not (out / "trials.json").exists() and not (out / "best.toml").exists()  # nothing half-written
    assert _gone(ray_tmp)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming the search" in r.stderr
    trials = [t for t in json.loads((out / "trials.json").read_text())["trials"] if t["trial"] is not None]
    assert len(trials) == 3 and (out / "best.toml").is_file()
    assert _gone(ray_tmp)


def test_unreachable_target_and_too_short_deadline_are_clear_errors(tmp_path, data_root):
    env, ray_tmp = _env(data_root)
    out = tmp_path / "out"
    r = subprocess.run(_cmd(_space(tmp_path, trials=1, epochs=3), out, 0.999), env=env, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert r.returncode == 2, r.stderr[-3000:]
    assert "no trial reached the target accuracy 0.999" in r.stderr and "Traceback" not in r.stderr
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert trials[0]["status"].startswith("stopped: predicted K")  # the K predictor stopped it early
    assert trials[0]["epochs_run"] == 2 and not (out / "best.toml").exists()
    assert _gone(ray_tmp)
    r = subprocess.run(_cmd(_space(tmp_path), tmp_path / "o2", EPS, "--deadline-min", "0.001"), env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 2 and "too short for any trial" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o2" / "trials.json").exists()
