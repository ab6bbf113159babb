"""The library API of flexible parallel learning (what the CLI and a RightTrain search call).

    predict_costs(cfg, placement, n_train) -> dict        per-node and total costs, no training
    train_parallel(cfg, placement, out=...) -> ParallelResult   trains on Ray, returns metrics + costs

Both use the same schedule, MAC counts, message sizes and profiles, so a prediction and a
measurement of the same (config, placement) are directly comparable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.data import Splits, load_splits
from toolchain.fsutil import prepare_output_dir
from toolchain.parallel.costs import Tally, node_costs, predict_tallies, profile_sources
from toolchain.parallel.placement import Placement
from toolchain.parallel.schedule import make_schedule
from toolchain.progress import log
from toolchain.sparsity import build_connectivity

REPORT_FORMAT = "toolchain-parallel-report"


@dataclass
class ParallelResult:
    bundle: Path | None
    metrics: dict[str, Any]  # as toolchain.train's, plus "parallel" (the cost summary)
    report: dict[str, Any]  # the whole parallel_report.json


def _conns(cfg: ProjectConfig):
    net = cfg.network
    return build_connectivity(net.neurons, net.out_degrees, net.pattern, net.seed)


def predict_costs(
    cfg: ProjectConfig,
    placement: Placement,
    n_train: int,
    epochs: int | None = None,
    host: dict[str, tuple[float, float]] | None = None,
    measure_host: bool = True,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Per-node and total costs of training `cfg` under `placement` on `n_train` samples, without
    training: MACs, bytes (exact message sizes), node time and energy from the profiles, and, when
    `measure_host` (a pilot of a few dozen steps per chain on synthetic data, on Ray: local, or the
    cluster at `address`) or `host` is given, the host busy time.
    Returns {"total", "per_epoch", "nodes", "host_calibration", "sources", ...}."""
    from toolchain.model import initial_weights

    epochs = epochs or cfg.training.epochs
    sched = make_schedule(placement, n_train, cfg.training.batch_size, epochs)
    conns = _conns(cfg)
    if host is None and measure_host:
        from toolchain.parallel.calibrate import pilot
        from toolchain.parallel.cluster import ray_session

        with ray_session(address, num_cpus):
            host = pilot(cfg, conns, placement, initial_weights(cfg, conns, cfg.training.seed), n_train)
    tallies = predict_tallies(cfg, placement, sched, host)
    costs = node_costs(placement, tallies, "predicted" if host else "not predicted (no host calibration)")
    per_epoch = {k: v / epochs for k, v in costs["total"].items()}
    return {
        **costs,
        "per_epoch": per_epoch,
        "epochs": epochs,
        "n_train": n_train,
        "rounds": len(sched.rounds),
        "host_calibration": host,
        "sources": profile_sources(placement),
    }


def _tallies(meters: dict[str, dict[str, Any]]) -> dict[str, Tally]:
    keys = {f for f in Tally.__dataclass_fields__}
    return {n: Tally(**{k: v for k, v in m.items() if k in keys}) for n, m in meters.items()}


def train_parallel(
    cfg: ProjectConfig,
    placement: Placement,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    data: Splits | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
    max_restarts: int = 2,
    on_round=None,
    measure_host: bool = True,
    force: bool = False,
) -> ParallelResult:
    """Train under a placement on Ray (local, or the cluster at `address`); with `out`, write an
    ordinary bundle (plus parallel_report.{json,md,png}) atomically. Nothing is written on failure.
    `out` is replaced only when empty or written by the toolchain, unless `force` (toolchain.outdir)."""
    from toolchain.calibrate import plot_sweep
    from toolchain.model import build_split_model, initial_weights, set_weights
    from toolchain.parallel.cluster import ray_session
    from toolchain.parallel.report import build_report, plot_report, render_markdown
    from toolchain.parallel.runner import Run, run_training
    from toolchain.train import compute_metrics

    if out is not None:
        prepare_output_dir(out, force)  # before minutes of training, not after
    if address:
        from toolchain.parallel.cluster import probe_address

        probe_address(address)  # before minutes of data loading, not after
    if data is None:
        log(f"loading {cfg.dataset}", quiet)
        data = load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, data_dir)
    conns = _conns(cfg)
    w0 = initial_weights(cfg, conns, cfg.training.seed)
    n = len(data.x_train)
    sched = make_schedule(placement, n, cfg.training.batch_size, cfg.training.epochs)
    log(
        f"parallel training: placement {placement.name} ({len(placement.instances)} instances on "
        f"{len(placement.nodes)} nodes, wire {placement.wire}, replicas {placement.replicas.mode}), "
        f"{len(sched.rounds)} rounds over {cfg.training.epochs} epochs",
        quiet,
    )
    load_before = os.getloadavg()
    with ray_session(address, num_cpus) as ray:
        predicted = predict_costs(cfg, placement, n, measure_host=measure_host)
        log(
            f"predicted per epoch: {predicted['per_epoch']['bytes']:,.0f} bytes on the network, "
            f"{predicted['per_epoch']['host_busy_s']:.2f} s host busy, "
            f"{predicted['per_epoch']['energy_j']:.3g} J",
            quiet,
        )
        nodes_seen = len(ray.nodes())
        run = Run(cfg, conns, placement, sched, data, w0)
        result = run_training(run, quiet=quiet, max_restarts=max_restarts, on_round=on_round)
    measured = node_costs(placement, _tallies(result.meters), "measured")
    model = build_split_model(cfg, conns)
    set_weights(model, result.weights)
    metrics, curves = compute_metrics(cfg, model, data)
    run_info = {
        "epochs": cfg.training.epochs,
        "batch_size": cfg.training.batch_size,
        "n_train": n,
        "samples_seen": int(
            sum(
                m.get("samples", 0)
                for k, m in result.meters.items()
                if k in placement.instances and placement.instances[k].shard is not None
            )
        ),
        "rounds": len(sched.rounds),
        "wall_s": result.wall_s,
        "restarts": result.restarts,
        "ray_address": address or "local",
        "ray_nodes": nodes_seen,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report = build_report(cfg, placement, predicted, measured, metrics, result.history, run_info)
    metrics["parallel"] = report["summary"]
    log(
        f"final accuracy {metrics['final_accuracy']:.4f}  exit accuracy {metrics['exit_accuracy']:.4f}  "
        f"bytes {report['summary']['bytes']:,}  energy {report['summary']['energy_j']:.3g} J  "
        f"({result.wall_s:.0f}s)",
        quiet,
    )
    if out is None:
        return ParallelResult(None, metrics, report)
    from toolchain.bundle import write_bundle

    extra = {
        "exit_calibration.png": plot_sweep(
            curves, metrics["exit_threshold"], f"{cfg.name}: early exit calibration"
        ),
        "parallel_report.json": (_json(report) + "\n").encode(),
        "parallel_report.md": render_markdown(report).encode(),
        "parallel_report.png": plot_report(report),
    }
    path = write_bundle(out, cfg, conns, _as_f32(result.weights), metrics, extra, force)
    log(f"bundle written to {path}", quiet)
    return ParallelResult(path, metrics, report)


def _as_f32(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
