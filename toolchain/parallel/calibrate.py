"""Host calibration: seconds per training step of each instance, measured by running the real code.

The predictor needs the host's cost of one step of each block instance (its forward, backward,
update and wire codec). Rather than a rate per MAC (the host runs dense masked matmuls, whose speed
depends on the shapes), each chain of the placement is run in-process for a few steps on synthetic
data with the same `BlockWorker` code the actors run, and the thread CPU time per step and per weights
read/write is taken. It runs in a subprocess with single-threaded BLAS, as the actors do, so that the
thread clock sees all the work.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.errors import ToolchainError
from toolchain.parallel.costs import block_macs
from toolchain.parallel.placement import Placement
from toolchain.parallel.worker import BlockWorker, WorkerInit, average_states, chain_step
from toolchain.sparsity import Connectivity

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def measure_in_process(
    cfg: ProjectConfig, conns: list[Connectivity], placement: Placement, weights: dict, steps: int = 30
) -> dict[str, tuple[float, float]]:
    """instance -> (seconds per step, seconds per weights read or write); "aggregator" -> per replica."""
    rng = np.random.default_rng(0)
    batch = cfg.training.batch_size
    n = batch * (steps + 3)
    x = rng.random((n, cfg.network.neurons[0]), dtype=np.float32)
    y = rng.integers(0, cfg.n_classes, n).astype(np.int32)
    node = {name: i.node for name, i in placement.instances.items()}
    exit_to = {name: i.exit_to for name, i in placement.instances.items()}
    per_step: dict[str, list[float]] = {}
    per_sync: dict[str, list[float]] = {}
    for chain in placement.chains():
        members = [*chain, *(exit_to[c] for c in chain if exit_to[c])]
        workers = {}
        for name in members:
            inst = placement.instances[name]
            first = inst.shard is not None
            workers[name] = BlockWorker(WorkerInit(
                name, inst.node, cfg, conns, inst.spec, weights, steps + 3, placement.wire,
                node.get(inst.next) if inst.next else None, node.get(inst.exit_to) if inst.exit_to else None,
                x if first else None, y if first else None, [np.arange(n)] if first else None,
                block_macs(cfg, inst.spec)))  # fmt: skip

        def call(name, method, *args, _w=workers):
            return getattr(_w[name], method)(*args)

        for s in range(3):  # warm-up: first calls allocate
            chain_step(chain, exit_to, node, 0, s, call)
        before = {k: w.meters.busy_cpu_s for k, w in workers.items()}
        for s in range(3, steps + 3):
            chain_step(chain, exit_to, node, 0, s, call)
        for k, w in workers.items():
            per_step.setdefault(k, []).append((w.meters.busy_cpu_s - before[k]) / steps)
            t0 = w.meters.busy_cpu_s
            with_opt = placement.replicas.mode == "relay"
            for _ in range(5):
                w.set_state(w.get_state(with_opt, None), with_opt, None)
            per_sync.setdefault(k, []).append((w.meters.busy_cpu_s - t0) / 10)
    out = {k: (float(np.mean(v)), float(np.mean(per_sync[k]))) for k, v in per_step.items()}
    out["aggregator"] = (0.0, _average_cost(workers))
    return out


def _average_cost(workers: dict[str, BlockWorker]) -> float:
    import time

    msg = next(iter(workers.values())).get_state(False, None)
    c0 = time.thread_time()
    for _ in range(20):
        average_states([msg, msg], [1.0, 1.0])
    return (time.thread_time() - c0) / 40  # per replica averaged


def measure_host(
    cfg: ProjectConfig, conns: list[Connectivity], placement: Placement, weights: dict, steps: int = 30
) -> dict[str, tuple[float, float]]:
    """`measure_in_process` in a fresh interpreter with single-threaded BLAS (as the actors run)."""
    payload = pickle.dumps((cfg, conns, placement, weights, steps))
    env = {**os.environ, **SINGLE_THREAD_ENV}
    proc = subprocess.run([sys.executable, "-m", "toolchain.parallel.calibrate"], input=payload,
                          capture_output=True, env=env, timeout=600, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise ToolchainError(f"host calibration failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return pickle.loads(proc.stdout)


if __name__ == "__main__":
    args = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(measure_in_process(*args)))
