"""Host calibration: seconds per training step of each instance, from a short pilot on Ray.

The predictor needs the host's cost of one step of each block instance (forward, backward, update,
wire codec). A rate per MAC does not give it: the host runs dense masked matmuls whose speed depends
on the shapes, and measured in a quiet process a step costs 1.5-2x less CPU time than inside an actor
that shares the cores with the other actors and with Ray's own messaging threads. So the placement
itself is started on Ray with synthetic data of the real shard sizes and run for a few steps per
chain (after a warm-up), exactly as the runner will, and the thread CPU time per step and per
weights read/write is taken from the actors' meters. Nothing of the pilot is kept.
"""

from __future__ import annotations

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.data import Splits
from toolchain.parallel.placement import Placement
from toolchain.parallel.schedule import Round, Work, make_schedule
from toolchain.sparsity import Connectivity

WARMUP_STEPS = 10


def _synthetic(cfg: ProjectConfig, n: int) -> Splits:
    rng = np.random.default_rng(0)
    x = rng.random((n, cfg.network.neurons[0]), dtype=np.float32)
    y = rng.integers(0, cfg.n_classes, n).astype(np.int32)
    return Splits(x, y, x[:1], y[:1], x[:1], y[:1])


def _random_orders(n: int, global_seed: int, shard_seed: int, epochs: int) -> list[np.ndarray]:
    del global_seed
    return [np.random.default_rng(shard_seed).permutation(n).astype(np.int32) for _ in range(epochs)]


def _rounds(placement: Placement, steps: list[int], start: int, count: int) -> list[Round]:
    """Pilot steps [start, start + count) of every chain, wrapping over epochs of its shard."""
    rounds = []
    for epoch in range((start + count) // min(steps) + 1):
        work = []
        for c, s in enumerate(steps):
            a, b = max(start, epoch * s), min(start + count, (epoch + 1) * s)
            if b > a:
                work.append(Work(c, epoch, a - epoch * s, b - epoch * s))
        if placement.replicas.mode == "relay":  # chains take turns in a relay run: no chain contention
            rounds += [Round(epoch, [w], False) for w in work]
        elif work:
            rounds.append(Round(epoch, work, False))
    return rounds


def pilot(
    cfg: ProjectConfig,
    conns: list[Connectivity],
    placement: Placement,
    weights: dict[str, np.ndarray],
    n_train: int,
    steps: int = 300,
) -> dict[str, tuple[float, float]]:
    """instance -> (host CPU seconds per step, per weights read or write); "aggregator" -> per replica
    averaged. Needs an initialised Ray (see toolchain.parallel.cluster.ray_session)."""
    import ray

    from toolchain.parallel.runner import Run

    shortest = min(make_schedule(placement, n_train, cfg.training.batch_size, 1).steps)
    sched = make_schedule(placement, n_train, cfg.training.batch_size, (WARMUP_STEPS + steps) // shortest + 1)
    run = Run(cfg, conns, placement, sched, _synthetic(cfg, n_train), weights, order_fn=_random_orders)
    run.start_actors()
    try:
        for rnd in _rounds(placement, sched.steps, 0, WARMUP_STEPS):
            run.run_round(rnd, 0, 600.0, sync=False)
        before = run.snapshot()["meters"]
        for rnd in _rounds(placement, sched.steps, WARMUP_STEPS, steps):
            run.run_round(rnd, 0, 600.0, sync=False)
        mid = run.snapshot()["meters"]
        names = list(placement.instances)
        with_opt = placement.replicas.mode == "relay"
        for _ in range(5):
            ray.get(
                [
                    run.actors[n].set_state.remote(
                        run.actors[n].get_state.remote(with_opt, None), with_opt, None
                    )
                    for n in names
                ]
            )
        after = run.snapshot()["meters"]
        msg = run.actors[names[0]].get_state.remote(False, None)
        avg_s = _aggregator_cost(run, msg) if "aggregator" in run.actors else 0.0
    finally:
        run.stop_actors()
    out = {}
    for n in names:
        d_steps = mid[n]["steps"] - before[n]["steps"]
        step_s = (mid[n]["busy_cpu_s"] - before[n]["busy_cpu_s"]) / max(1, d_steps)
        out[n] = (step_s, (after[n]["busy_cpu_s"] - mid[n]["busy_cpu_s"]) / 10)
    out["aggregator"] = (0.0, avg_s)
    return out


def _aggregator_cost(run, msg) -> float:
    import ray

    agg = run.actors["aggregator"]
    m0 = ray.get(agg.get_meters.remote())["busy_cpu_s"]
    ray.get([agg.average.remote(["-", "-"], [1.0, 1.0], msg, msg) for _ in range(10)])
    return (ray.get(agg.get_meters.remote())["busy_cpu_s"] - m0) / 20  # per replica averaged
