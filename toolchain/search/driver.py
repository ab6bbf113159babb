"""`run_search`: a RightTrain search on Ray Tune (Optuna TPE or random sampling, the K-predictor
stopper), local Ray by default or a cluster at `address`, resumable: an interrupted search in the same
output directory continues where it stopped (finished trials are kept, unfinished ones rerun).

Outputs are written only at the end, each atomically (report.py); the Tune experiment in
`<out>/tune/` is Tune's own state and the ledger (tuneparts.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.data import Splits, load_splits
from toolchain.errors import ToolchainError
from toolchain.fsutil import ensure_parent_writable
from toolchain.progress import log
from toolchain.search.constraints import Constraints, make_constraints
from toolchain.search.corpus import admissible_candidates
from toolchain.search.energy import PowerModel, power_model
from toolchain.search.kpredict import Curve, load_corpus
from toolchain.search.space import Candidate, SearchSpace, load_space

TUNE_DIR = "tune"
LEDGER = "search_state.json"  # beside tune/, never inside it (Tune re-syncs that from a staging copy)


@dataclass
class SearchOptions:
    space: str | Path
    target_accuracy: float
    out: str | Path
    target: str | None = None
    deadline_min: float | None = None
    address: str | None = None
    trials: int | None = None  # default: the space's [search] trials
    algorithm: str = "tpe"  # tpe (Optuna) | random
    early_stop: bool = True  # the K-predictor stopper
    data_dir: str | Path | None = None
    watts_per_thread: float | None = None
    num_cpus: int | None = None
    corpus: str | Path | None = None
    seed: int | None = None
    quiet: bool = False


@dataclass
class SearchResult:
    out: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    summary: dict[str, Any]


def check_options(o: SearchOptions) -> None:
    if not 0 < o.target_accuracy < 1:
        raise ToolchainError(
            f"--target-accuracy {o.target_accuracy:g} is not reachable: it must be a fraction in (0, 1)",
            hint="a validation accuracy such as 0.95",
        )
    if o.deadline_min is not None and not (math.isfinite(o.deadline_min) and o.deadline_min > 0):
        raise ToolchainError(f"--deadline-min {o.deadline_min:g} must be a positive number of minutes")
    if o.trials is not None and o.trials < 1:
        raise ToolchainError(f"--trials {o.trials} must be at least 1")
    if o.num_cpus is not None and o.num_cpus < 1:
        raise ToolchainError(f"--num-cpus {o.num_cpus} must be at least 1")
    if o.algorithm not in ("tpe", "random"):
        raise ToolchainError(f"--algorithm {o.algorithm!r}", hint="use tpe or random")
    if o.watts_per_thread is not None and not o.watts_per_thread > 0:
        raise ToolchainError(f"--watts-per-thread {o.watts_per_thread:g} must be positive")


def check_admissible(space: SearchSpace, con: Constraints, seed: int) -> list[Candidate]:
    """Fail before any training when no candidate of the space passes the constraints."""
    found = admissible_candidates(space, con, 8, seed, tries=3000)
    if not found:
        from toolchain.search.sampler import RandomTrial, suggest

        rng = np.random.default_rng(seed)
        reasons = [con.check(space.to_config(suggest(space, RandomTrial(rng)))).reason for _ in range(5)]
        raise ToolchainError(
            f"{space.path}: no admissible candidate: 3000 random draws all break a constraint of "
            f"target {con.target}, e.g. {reasons[0]}",
            hint="relax [constraints] (max_instructions, max_offload_bytes), choose a larger --target, "
            "or add smaller structures to [structure]",
        )
    return found


def check_deadline(
    space: SearchSpace, cands: list[Candidate], data: Splits, deadline_s: float, quiet: bool
) -> None:
    """A deadline shorter than one epoch of the cheapest admissible candidate leaves no trial a chance:
    one epoch of it is timed here (a pilot) before anything else runs."""
    from toolchain.train import train

    cheapest = min(cands, key=lambda c: (c.data_fraction, -c.batch_size, sum(c.hidden)))
    cfg = space.to_config(cheapest)
    cfg.training.epochs = 1
    log(f"deadline check: timing one epoch of the cheapest admissible candidate ({cheapest.hidden})", quiet)
    t0 = time.monotonic()
    train(cfg, None, data=data, quiet=True)
    epoch_s = time.monotonic() - t0
    if epoch_s > deadline_s:
        raise ToolchainError(
            f"--deadline-min {deadline_s / 60:g} is too short for any trial: one epoch of the cheapest "
            f"admissible candidate took {epoch_s:.1f} s here (a pilot, TensorFlow start-up included)",
            hint=f"allow at least {math.ceil(epoch_s * 3 / 60)} minutes, or add smaller data fractions",
        )


def run_search(o: SearchOptions) -> SearchResult:
    check_options(o)
    out = Path(o.out).resolve()
    ensure_parent_writable(out / "x")
    space = load_space(o.space)
    seed = space.seed if o.seed is None else o.seed
    con = make_constraints(o.target, space.link, space.max_instructions, space.max_offload_bytes)
    cands = check_admissible(space, con, seed)
    corpus = load_corpus(o.corpus)
    power = power_model(o.watts_per_thread)
    log(f"energy: {power.label}", o.quiet)
    if o.address:
        from toolchain.parallel.cluster import probe_address

        probe_address(o.address)  # before loading data, not after
    cfg = space.base
    data = load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, o.data_dir)
    deadline_s = None if o.deadline_min is None else o.deadline_min * 60
    if deadline_s is not None:
        check_deadline(space, cands, data, deadline_s, o.quiet)
    trials = o.trials or space.trials
    t0 = time.monotonic()
    results, ledger = _tune(o, space, con, corpus, power, data, seed, trials, deadline_s, out)
    from toolchain.search.report import collect, write_outputs

    rows = collect(results, ledger, space, o.target_accuracy, deadline_s)
    summary = {
        "space": str(Path(o.space).resolve()),
        "target_accuracy": o.target_accuracy,
        "target": con.target,
        "deadline_min": o.deadline_min,
        "algorithm": o.algorithm,
        "early_stop": o.early_stop,
        "trials": trials,
        "seed": seed,
        "energy_label": power.label,
        "wall_s": time.monotonic() - t0,
        "ray_address": o.address or "local",
        "corpus_curves": len(corpus),
    }
    best = write_outputs(out, space, rows, ledger, summary, o.target_accuracy)
    if best is None:
        top = max((r["max_val_accuracy"] for r in rows if r["status"] != "rejected"), default=0.0)
        raise ToolchainError(
            f"no trial reached the target accuracy {o.target_accuracy:g} on the validation split"
            + (" within the deadline" if deadline_s else "")
            + f" (best validation accuracy seen: {top:.4f}); the trials table and report are in {out}",
            hint="lower --target-accuracy, raise the epoch budgets or data fractions, widen the structures, "
            "or give more --trials",
        )
    return SearchResult(out, rows, best, summary)


def _tune(o, space, con, corpus: list[Curve], power: PowerModel, data, seed, trials, deadline_s, out: Path):
    """Run (or resume) the Tune experiment; returns (list of Tune results, ledger dict)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from toolchain.parallel.cluster import ray_session
    from toolchain.search.trial import TrialSetup, run_trial
    from toolchain.search.tuneparts import (
        METRIC,
        ConstrainedSearch,
        DefineByRun,
        KStopper,
        Ledger,
        TrialProgress,
    )

    # Trials report their curve and energy; the objective is computed by the searcher when a trial
    # completes (measured or predicted energy to ε_max), so results do not carry it.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    exp = out / TUNE_DIR
    ledger_path = out / LEDGER
    setup = TrialSetup(space, o.target_accuracy, power, seed)
    with ray_session(o.address, o.num_cpus) as ray:
        cpus = ray.cluster_resources().get("CPU", 0)
        if max(space.threads) > cpus:
            raise ToolchainError(
                f"{space.path}: resources.threads = {max(space.threads)} is more than the {cpus:g} CPUs of "
                f"the Ray cluster ({o.address or 'local'}): such a trial would never start",
                hint="lower resources.threads, or give the local Ray more CPUs with --num-cpus",
            )
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, setup=setup, data=data),
            lambda config: {"cpu": config["candidate"]["threads"]},
        )
        if tune.Tuner.can_restore(str(exp)):
            log(f"resuming the search in {exp}", o.quiet)
            tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True, restart_errored=True)
        else:
            import optuna

            ledger_path.unlink(missing_ok=True)  # a new search: nothing of an earlier one carries over

            sampler = (
                optuna.samplers.RandomSampler(seed=seed)
                if o.algorithm == "random"
                else optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, trials // 4))
            )
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            inner = OptunaSearch(space=DefineByRun(space), metric=METRIC, mode="min", sampler=sampler)
            search = ConstrainedSearch(inner, space, con, ledger_path)
            stopper = KStopper(
                corpus, o.target_accuracy, space.observe_epochs, ledger_path, deadline_s, enabled=o.early_stop
            )
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=search,
                    num_samples=trials,
                    max_concurrent_trials=space.concurrent_trials,
                    reuse_actors=False,
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR,
                    storage_path=str(out),
                    stop=stopper,
                    callbacks=[TrialProgress(trials, o.quiet)],
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                ),
            )
        try:
            with contextlib.redirect_stdout(sys.stderr):  # Tune's banners; stdout is the result
                grid = tuner.fit()
        except KeyboardInterrupt:
            grid = None
        results = [] if grid is None else list(grid)
    ledger = Ledger(ledger_path).load()
    done = [r for r in results if _finished(r, ledger)]
    if grid is None or len(done) < len(results) or (len(results) < trials and not ledger.get("exhausted")):
        raise ToolchainError(
            f"the search was interrupted after {len(done)} of {trials} trials (Tune's state is in {exp})",
            hint="run the same command again to resume: finished trials are kept, unfinished ones rerun",
        )
    return results, ledger


def _finished(res, ledger: dict[str, Any]) -> bool:
    m = res.metrics or {}
    return res.error is not None or bool(m.get("final")) or m.get("trial_id") in ledger["stops"]
