"""Flexible parallel learning on a real local Ray: equivalence with centralized training, replicas,
measured vs predicted bytes, a killed actor, an unreachable cluster, the bundle and the CLI.

One local Ray (2 CPUs) serves the whole module; its processes are found through its own temp
directory and must all be gone after shutdown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from toolchain.data import Splits
from toolchain.errors import ToolchainError
from toolchain.parallel.placement import load_placement, placement_from_dict

REPO = Path(__file__).resolve().parent.parent
PLACEMENTS = REPO / "examples" / "placements"
N_TRAIN = 1536  # 12 batches of 128; 4 shards of 384 = 3 batches each


def _ray_pids(marker: str) -> list[int]:
    """Processes of the Ray session under `marker` (its temp dir): named in their command line
    (raylet, GCS, agents) or holding a file there open (workers renamed to "ray::IDLE" keep their
    session log files open)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker in cmd or any(
                marker in os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")
            ):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _remove(path: str) -> None:
    for _ in range(5):  # a process that just exited may still be flushing a log file
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(1)


def _wait_gone(marker: str, timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _ray_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="module")
def local_ray():
    from toolchain.parallel.cluster import start_local_ray, stop_ray

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    start_local_ray(num_cpus=2, _temp_dir=temp)
    try:
        yield temp
    finally:
        stop_ray()
        left = _wait_gone(temp)
        _remove(temp)
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def small(mnist_splits) -> Splits:
    d = mnist_splits
    return Splits(
        d.x_train[:N_TRAIN], d.y_train[:N_TRAIN], d.x_val[:500], d.y_val[:500], d.x_test[:500], d.y_test[:500]
    )


def _cfg(epochs=2):
    from toolchain.config import default_config

    cfg = default_config()
    cfg.training.epochs = epochs
    return cfg


def _train(cfg, placement, data, **kw):
    from toolchain.parallel.api import train_parallel

    kw.setdefault("measure_host", False)
    return train_parallel(cfg, placement, data=data, quiet=True, **kw)


def _assert_close(a: dict, b: dict, tol: float) -> float:
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in b)
    assert set(a) == set(b)
    assert worst <= tol, worst
    return worst


def test_one_node_and_split_placements_reproduce_centralized_training(local_ray, small, tmp_path):
    """Same seed, data order, initial weights, optimizer, schedule and loss: the Keras `fit` of
    toolchain.train and (a) the one-node placement, (b) head+exit on a device with the tail on the
    edge (fp32 wire), end within 1e-5 of each other."""
    from toolchain.bundle import load_bundle
    from toolchain.model import get_weights
    from toolchain.train import fit_model

    cfg = _cfg(epochs=2)
    model, _, _ = fit_model(cfg, small, quiet=True)
    keras_w = get_weights(model)
    one = _train(cfg, load_placement(PLACEMENTS / "centralized.toml", cfg), small, out=tmp_path / "b")
    bundle = load_bundle(one.bundle)
    print("1-node vs Keras", _assert_close(bundle.weights, keras_w, 1e-5))
    split = {
        "shards": 1,
        "nodes": {"dev": {"profile": "rpi4"}, "edge": {"profile": "edge-server"}},
        "instance": [
            {"name": "head", "block": "head+exit", "node": "dev", "shard": 0, "next": "tail"},
            {"name": "tail", "block": "tail", "node": "edge"},
        ],
    }
    res = _train(cfg, placement_from_dict(split, cfg, "split"), small, out=tmp_path / "s")
    print("split vs Keras", _assert_close(load_bundle(res.bundle).weights, keras_w, 1e-5))
    # and a wrong program would not pass: training moved the weights by far more than 1e-5
    from toolchain.model import initial_weights
    from toolchain.parallel.api import _conns

    with pytest.raises(AssertionError):
        _assert_close(initial_weights(cfg, _conns(cfg), cfg.training.seed), keras_w, 1e-3)
    # the parallel bundle is an ordinary bundle: Keras rebuilds it and agrees with its metrics
    assert bundle.metrics["final_accuracy"] == one.metrics["final_accuracy"]
    for name in ("parallel_report.json", "parallel_report.md", "parallel_report.png"):
        assert (one.bundle / name).stat().st_size > 100
    report = json.loads((one.bundle / "parallel_report.json").read_text())
    assert report["summary"]["bytes"] == 0  # everything on one node: nothing crosses a network


def test_two_replicas_on_the_same_shard_equal_one(local_ray, small, tmp_path):
    from toolchain.bundle import load_bundle

    cfg = _cfg(epochs=1)
    one = {
        "nodes": {"a": {"profile": "cloud-server"}, "b": {"profile": "cloud-server"}},
        "replicas": {"mode": "average", "every": 2, "aggregator": "a"},
        "instance": [{"name": "r1", "block": "full", "node": "a", "shard": 0}],
    }
    two = json.loads(json.dumps(one))
    two["instance"].append({"name": "r2", "block": "full", "node": "b", "shard": 0})
    r1 = _train(cfg, placement_from_dict(one, cfg, "one"), small, out=tmp_path / "one")
    r2 = _train(cfg, placement_from_dict(two, cfg, "two"), small, out=tmp_path / "two")
    _assert_close(load_bundle(r2.bundle).weights, load_bundle(r1.bundle).weights, 0.0)
    assert r2.report["measured"]["nodes"]["b"]["bytes_sent"]["weights"] > 0  # they did sync


def _two_heads(name: str, cfg, **changes):
    """An example placement cut down to two devices (fewer actors: a lean test)."""
    data = tomllib.loads((PLACEMENTS / f"{name}.toml").read_text())
    data["shards"] = 2
    data["instance"] = [i for i in data["instance"] if i["name"] in ("head1", "head2", "tail")]
    data.update(changes)
    return placement_from_dict(data, cfg, f"{name}.toml (two heads)")


def test_measured_bytes_equal_predicted(local_ray, small):
    """FPL with int8 wire (heads averaged) and split learning (heads relayed): bytes counted from
    what the actors serialized equal the schedule's prediction (within 1 %; in fact exactly), per
    node and in total, and so do the MACs; host busy time is predicted by the pilot."""
    cfg = _cfg(epochs=1)
    for name in ("fpl_int8", "split_learning"):
        res = _train(cfg, _two_heads(name, cfg), small, measure_host=(name == "fpl_int8"))
        rep = res.report
        assert rep["summary"]["bytes"] > 0
        assert abs(rep["summary"]["bytes_ratio"] - 1) < 0.01, name
        for node, c in rep["comparison"].items():
            assert c["bytes_sent"]["measured"] == c["bytes_sent"]["predicted"], (name, node)
            assert c["macs"]["measured"] == c["macs"]["predicted"], (name, node)
        if name == "fpl_int8":
            assert rep["summary"]["predicted_host_busy_s"] > 0 and rep["summary"]["host_busy_s"] > 0
            act = rep["measured"]["nodes"]["dev1"]["bytes_sent"]["activations"]
            assert act == 6 * (128 * 40 + 14 + 128)  # int8: one byte per value, labels, header
        else:
            relayed = rep["measured"]["nodes"]["dev1"]["bytes_sent"]["weights"]
            assert relayed == 14 + 4 * (3 * (1640 + 410) + 1)  # weights + Adam moments + step count


def test_killed_actor_resumes_from_last_averaged_state(local_ray, small, tmp_path):
    """SIGKILL a head's process mid-epoch: every actor restarts from the last averaged state, and the
    run ends with exactly the weights of an undisturbed run. With no restarts allowed: a clear error
    and no bundle."""
    cfg = _cfg(epochs=1)
    pl = _two_heads("fpl", cfg, replicas={"mode": "average", "every": 2, "aggregator": "edge"})
    clean = _train(cfg, pl, small, out=tmp_path / "clean")
    killed = []

    def kill_head(info):
        if info["round"] == 1 and not killed:
            os.kill(info["pids"]["head2"], 9)
            killed.append(info["pids"]["head2"])

    res = _train(cfg, pl, small, on_round=kill_head, out=tmp_path / "ok")
    assert killed and res.report["run"]["restarts"] == 1
    assert res.metrics["final_accuracy"] == clean.metrics["final_accuracy"]
    from toolchain.bundle import load_bundle

    # weights equal to the undisturbed run's: same data order, state restored exactly
    _assert_close(load_bundle(res.bundle).weights, load_bundle(clean.bundle).weights, 0.0)

    def always_kill(info):
        if info["round"] == 1:
            os.kill(info["pids"]["tail"], 9)

    with pytest.raises(ToolchainError, match="actor died in round 2"):
        _train(cfg, pl, small, on_round=always_kill, out=tmp_path / "bad", max_restarts=0)
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_a_clear_error_within_the_timeout(small):
    from toolchain.parallel.cluster import probe_address

    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(ToolchainError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        probe_address(f"127.0.0.1:{port}", timeout_s=3)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ToolchainError, match="is not HOST:PORT"):
        probe_address("nowhere")


def test_cli_trains_with_an_example_placement_and_the_bundle_builds(tmp_path, data_root):
    """`toolchain train --parallel` (one epoch, one node), in a subprocess with its own local Ray
    (cleaned up), then
    `toolchain build --target host` and `verify` (bit-exact) on the bundle unchanged; and the CLI's errors."""
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "TOOLCHAIN_DATA_DIR": str(data_root)}
    exe = [sys.executable, "-m", "toolchain"]
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [
            *exe,
            "train",
            "--parallel",
            str(PLACEMENTS / "centralized.toml"),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--num-cpus",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parallel epoch   1/1" in proc.stderr
    assert json.loads(proc.stdout)["final_accuracy"] > 0.6  # one epoch; chance is 0.1
    assert os.listdir(ray_tmp), "the CLI's Ray did not use RAY_TMPDIR, so the check below would see nothing"
    left = _wait_gone(ray_tmp)
    _remove(ray_tmp)
    assert not left, "the CLI left Ray processes behind"
    build = subprocess.run(
        [*exe, "build", "--target", "host", "--bundle", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    verify = subprocess.run(
        [*exe, "verify", "--target", "host", "--samples", "20"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    port = _free_port()
    bad = subprocess.run(
        [
            *exe,
            "train",
            "--parallel",
            str(PLACEMENTS / "fpl.toml"),
            "--address",
            f"127.0.0.1:{port}",
            "--out",
            str(tmp_path / "x"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "error: no Ray cluster answers" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "x").exists()
    plan = subprocess.run(
        [
            *exe,
            "plan",
            "--parallel",
            str(PLACEMENTS / "split_learning.toml"),
            "--no-pilot",
            "--json",
            str(tmp_path / "p.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    pred = json.loads((tmp_path / "p.json").read_text())
    assert pred["per_epoch"]["bytes"] > 0 and "dev1" in plan.stdout
