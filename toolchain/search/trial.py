"""One search trial, run by Ray Tune in its own worker process: a real training run of the toolchain
on the candidate's data fraction, reporting its learning curve and energy after every epoch.

Local trials are `toolchain.train.train` (TensorFlow limited to the trial's threads) and stop on
their own once validation accuracy reaches ε_max (`training.stop_at_accuracy`); the driver's
K-predictor stopper may end them earlier. Parallel trials are `toolchain.parallel.api.train_parallel`
for the candidate's epochs; their energy is the parallel run's own cost accounting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from toolchain.data import Splits, subsample_train
from toolchain.search.corpus import n_train, trained_params
from toolchain.search.energy import PowerModel, RaplMeter, rapl_domains
from toolchain.search.space import Candidate, SearchSpace


@dataclass(frozen=True)
class TrialSetup:
    space: SearchSpace
    eps: float
    power: PowerModel
    seed: int


def _limit_threads(threads: int) -> None:
    """TensorFlow's thread pools, before TensorFlow starts in this worker process."""
    import tensorflow as tf

    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:
        pass  # already initialised (a reused worker): the first trial's setting stays


def base_fields(setup: TrialSetup, c: Candidate, data: Splits) -> dict[str, Any]:
    return {
        "params": trained_params(setup.space, c),
        "n_train": n_train(data, c.data_fraction),
        "batch_size": c.batch_size,
        "budget": c.epochs,
        "energy_label": setup.power.label,
    }


def run_trial(config: dict[str, Any], setup: TrialSetup, data: Splits) -> None:
    """The Ray Tune function trainable (wrapped with tune.with_parameters by the driver)."""
    c = Candidate.from_dict(config["candidate"])
    cfg = setup.space.to_config(c, seed=setup.seed)
    cfg.training.stop_at_accuracy = setup.eps
    if c.placement is not None:
        _parallel_trial(setup, c, cfg, data)
    else:
        _local_trial(setup, c, cfg, data)


def _local_trial(setup: TrialSetup, c: Candidate, cfg, data: Splits) -> None:
    from ray import tune

    _limit_threads(c.threads)
    from toolchain.train import train

    fields = base_fields(setup, c, data)
    meter = RaplMeter(rapl_domains()) if setup.power.method == "rapl" else None
    state: dict[str, Any] = {"energy_j": 0.0, "cpu_s": 0.0, "wall_s": 0.0, "curve": []}

    def on_epoch(rec: dict[str, float]) -> None:
        e = setup.power.energy_j(rec["cpu_s"], meter.lap_j() if meter else None)
        state["energy_j"] += e
        state["cpu_s"] += rec["cpu_s"]
        state["wall_s"] += rec["wall_s"]
        state["curve"].append(round(rec["val_final_accuracy"], 5))
        acc = rec["val_final_accuracy"]
        tune.report(
            {
                **fields,
                "epoch": int(rec["epoch"]),
                "val_accuracy": acc,
                "curve": list(state["curve"]),
                "epoch_energy_j": e,
                "energy_j": state["energy_j"],
                "cpu_s": state["cpu_s"],
                "wall_s": state["wall_s"],
                "reached": bool(acc >= setup.eps),
                "final": False,
            }
        )

    res = train(cfg, None, data=data, quiet=True, on_epoch=on_epoch)
    m = res.metrics
    tune.report(
        {
            **fields,
            "epoch": len(state["curve"]),
            "val_accuracy": state["curve"][-1],
            "curve": list(state["curve"]),
            "epoch_energy_j": 0.0,
            "energy_j": state["energy_j"],
            "cpu_s": state["cpu_s"],
            "wall_s": state["wall_s"],
            "reached": bool(state["curve"][-1] >= setup.eps),
            "final": True,
            "test_accuracy": m["final_accuracy"],
            "exit_accuracy": m["exit_accuracy"],
        }
    )


def _parallel_trial(setup: TrialSetup, c: Candidate, cfg, data: Splits) -> None:
    """Parallel training reports once, at the end: its curve is the report's per-epoch history."""
    from ray import tune

    from toolchain.parallel.api import train_parallel
    from toolchain.parallel.placement import load_placement

    cfg.training.stop_at_accuracy = 0.0  # parallel training has no early stop
    sub = subsample_train(data, c.data_fraction, cfg.training.seed)
    # no pilot: the search needs the measured costs, not the prediction
    res = train_parallel(cfg, load_placement(c.placement, cfg), data=sub, quiet=True, measure_host=False)
    hist = res.report["history"]  # per epoch, with the cumulative measured cost
    curve = [round(float(h["val_final_accuracy"]), 5) for h in hist]
    s = res.report["summary"]
    reached_at = next((i + 1 for i, a in enumerate(curve) if a >= setup.eps), None)
    per_epoch = s["energy_j"] / max(1, len(curve))
    upto = hist[(reached_at or len(hist)) - 1]["energy_j"] if hist else s["energy_j"]
    tune.report(
        {
            **base_fields(setup, c, data),
            "energy_label": "estimated: parallel training's cost accounting (node profiles, "
            "targets/plan/nodes.toml; measured bytes and host busy time)",
            "epoch": len(curve),
            "val_accuracy": curve[-1] if curve else 0.0,
            "curve": curve,
            "epoch_energy_j": per_epoch,
            # energy up to the epoch that reached ε_max: the run would have stopped there
            "energy_j": upto,
            "cpu_s": s["host_busy_s"],
            "wall_s": s["wall_s"],
            "reached": reached_at is not None,
            "reached_epoch": reached_at,
            "final": True,
            "test_accuracy": s["final_accuracy"],
            "exit_accuracy": s["exit_accuracy"],
        }
    )
