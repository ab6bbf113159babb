"""The Ray Tune pieces of a search, all in the driver process: the constraint-filtering searcher around
Optuna, the K-predictor stopper, the per-trial progress lines, and the ledger they share.

The ledger (a JSON file beside the Tune experiment directory, rewritten atomically: Tune re-syncs its
own directory from a staging copy, which would overwrite a file kept inside it) holds what Tune does
not keep: rejected candidates, the stopper's predictions and reasons, the finished curves the K
predictor learned from. It survives an interruption, so a resumed search still knows them.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from toolchain.fsutil import atomic_write_bytes, atomic_write_json
from toolchain.progress import log
from toolchain.search.constraints import Constraints
from toolchain.search.kpredict import K_CAP, Curve, KModel, fit, powerlaw_k
from toolchain.search.sampler import suggest
from toolchain.search.space import Candidate, SearchSpace

METRIC = "objective_j"
PENALTY_J = 1e9  # what Optuna is told for a candidate that breaks a constraint (never trained)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"rejected": [], "predictions": {}, "stops": {}, "finished": [], "best_j": None}
        return json.loads(self.path.read_text())

    def update(self, fn) -> dict[str, Any]:
        d = self.load()
        fn(d)
        atomic_write_json(self.path, d)
        return d


class DefineByRun:
    """Optuna's define-by-run space as a picklable object (Tune pickles it with the experiment)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {"candidate": suggest(self.space, trial).as_dict()}


class ConstrainedSearch(Searcher):
    """Optuna (or any Tune searcher) whose suggestions are checked against the device constraints
    first: a candidate that breaks one is recorded, told to the inner searcher as a bad point, and
    replaced; it is never trained. The objective told on completion is the energy to reach ε_max:
    measured when the trial reached it, else the stopper's prediction, else a penalty."""

    def __init__(
        self,
        inner: Searcher,
        space: SearchSpace,
        constraints: Constraints,
        ledger: Path,
        max_draws: int = 500,
    ) -> None:
        super().__init__(metric=METRIC, mode="min")
        self.inner, self.space, self.constraints = inner, space, constraints
        self.ledger = Ledger(ledger)
        self.max_draws = max_draws
        self.alias: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(METRIC, "min", config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        for i in range(self.max_draws):
            sub = f"{trial_id}-{i}"
            cfg = self.inner.suggest(sub)
            if cfg is None or cfg == Searcher.FINISHED:
                return cfg
            cand = Candidate.from_dict(cfg["candidate"])
            cost = self.constraints.check(self.space.to_config(cand))
            if cost.reason is None:
                self.alias[trial_id] = sub
                return {**cfg, "device": cost.as_dict()}
            row = {"candidate": cand.as_dict(), "device": cost.as_dict(), "reason": cost.reason}
            self.ledger.update(lambda d, r=row: d["rejected"].append(r))
            self.inner.on_trial_complete(sub, {METRIC: PENALTY_J})
        log(f"search: {self.max_draws} draws in a row broke a constraint; no more trials")
        self.ledger.update(lambda d: d.update(exhausted=True))
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        sub = self.alias.get(trial_id)
        if sub is None:
            return
        if error or not result:
            self.inner.on_trial_complete(sub, None, error=True)
            return
        self.inner.on_trial_complete(sub, {METRIC: objective(result, self.ledger.load(), trial_id)})

    def save(self, checkpoint_path: str) -> None:
        inner = Path(checkpoint_path + ".inner")
        self.inner.save(str(inner))
        state = {"alias": self.alias, "inner": inner.read_bytes()}
        inner.unlink()
        atomic_write_bytes(checkpoint_path, pickle.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = pickle.loads(Path(checkpoint_path).read_bytes())
        inner = Path(checkpoint_path + ".inner")
        inner.write_bytes(state["inner"])
        self.inner.restore(str(inner))
        inner.unlink()
        self.alias = state["alias"]


def objective(result: dict[str, Any], ledger: dict[str, Any], trial_id: str) -> float:
    if result.get("reached"):
        return float(result["energy_j"])
    pred = ledger["predictions"].get(trial_id)
    if pred is not None:
        return float(pred["energy_j"])
    per_epoch = result.get("energy_j", 0.0) / max(1, result.get("epoch", 1))
    return K_CAP * result.get("budget", 1) * max(per_epoch, 1e-9)


def curve_of(result: dict[str, Any]) -> Curve:
    return Curve(
        tuple(result["curve"]), result["params"], result["n_train"], result["batch_size"], result["budget"]
    )


class KStopper(Stopper):
    """Stops a trial once the K predictor says it cannot reach ε_max within its epoch budget, within
    the deadline, or with less energy than the best trial so far (× slack). Checks start after
    `observe` epochs; with enabled=False only the deadline is enforced (the random-search baseline)."""

    def __init__(
        self,
        corpus: list[Curve],
        eps: float,
        observe: int,
        ledger: Path,
        deadline_s: float | None = None,
        slack: float = 1.5,
        enabled: bool = True,
    ) -> None:
        self.corpus, self.eps, self.observe = corpus, eps, observe
        self.ledger = Ledger(ledger)
        self.deadline_s, self.slack, self.enabled = deadline_s, slack, enabled
        self._models: dict[tuple[int, int], KModel | None] = {}

    def model(self, m: int, finished: list[Curve]) -> KModel | None:
        key = (m, len(finished))
        if key not in self._models:
            try:
                self._models[key] = fit(self.corpus + finished, m)
            except Exception:  # too few examples for this m: the power law stands in
                self._models[key] = None
        return self._models[key]

    def predict_k(self, c: Curve, finished: list[Curve]) -> tuple[float, str]:
        m = len(c.acc)
        model = self.model(m, finished)
        if model is None:
            return powerlaw_k(c.acc, self.eps, K_CAP * c.budget), "power law (too few curves for the model)"
        return model.predict(c, self.eps), f"K model ({model.n_examples} examples)"

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        led = self.ledger.load()
        if result.get("final"):
            if len(result["curve"]) > self.observe:
                self.ledger.update(lambda d: d["finished"].append(curve_of(result).as_dict()))
            return False
        if result.get("reached"):
            best = led["best_j"]
            e = float(result["energy_j"])
            self.ledger.update(lambda d: d.update(best_j=e if best is None else min(best, e)))
            return False
        reason = None
        if self.deadline_s is not None and result["wall_s"] > self.deadline_s:
            reason = f"past the deadline ({result['wall_s']:.0f} s > {self.deadline_s:.0f} s) without ε_max"
        epoch = len(result["curve"])
        if reason is None and self.enabled and epoch >= self.observe:
            reason = self._predict_and_decide(trial_id, result, led, epoch)
        if reason is not None:
            self.ledger.update(lambda d: d["stops"].__setitem__(trial_id, reason))
        return reason is not None

    def _predict_and_decide(self, trial_id: str, result: dict, led: dict, epoch: int) -> str | None:
        finished = [Curve.from_dict(c) for c in led["finished"]]
        k, how = self.predict_k(curve_of(result), finished)
        e = k * result["energy_j"] / epoch
        t = k * result["wall_s"] / epoch
        pred = {"k": k, "energy_j": e, "wall_s": t, "at_epoch": epoch, "how": how}
        self.ledger.update(lambda d: d["predictions"].__setitem__(trial_id, pred))
        budget = result["budget"]
        if k > budget:
            return f"predicted K {k:.1f} > budget {budget} epochs ({how})"
        if self.deadline_s is not None and t > self.deadline_s:
            return f"predicted time to ε_max {t:.0f} s > deadline {self.deadline_s:.0f} s"
        best = led["best_j"]
        if best is not None and e > self.slack * best:
            return f"predicted energy {e:.3g} J > {self.slack:g} x best so far {best:.3g} J"
        return None

    def stop_all(self) -> bool:
        return False


class TrialProgress(Callback):
    """One line per trial epoch, and one when a trial starts and ends (Tune's own output is off)."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.quiet = total, quiet
        self.number: dict[str, int] = {}

    def _n(self, trial) -> str:
        return f"trial {self.number.get(trial.trial_id, '?')}/{self.total}"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        # Tune's list holds every trial so far, also those restored from an interrupted run
        ids = [t.trial_id for t in trials]
        self.number[trial.trial_id] = ids.index(trial.trial_id) + 1 if trial.trial_id in ids else len(ids)
        c = trial.config["candidate"]
        log(
            f"{self._n(trial)} start: hidden {c['hidden']} d_out {c['out_degrees']} {c['pattern']} "
            f"data {c['data_fraction']:g} batch {c['batch_size']} budget {c['epochs']} epochs "
            f"threads {c['threads']}{' placement ' + c['placement'] if c['placement'] else ''}",
            self.quiet,
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("final"):
            return
        log(
            f"{self._n(trial)} epoch {result['epoch']:>3}/{result['budget']}  "
            f"val acc {result['val_accuracy']:.4f}  energy {result['energy_j']:.3g} J  "
            f"busy {result['cpu_s']:.1f} s",
            self.quiet,
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = trial.last_result or {}
        ok = "reached ε_max" if r.get("reached") else "did not reach ε_max"
        log(
            f"{self._n(trial)} done: {ok} after {r.get('epoch', 0)} epochs, {r.get('energy_j', 0):.3g} J",
            self.quiet,
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        log(f"{self._n(trial)} failed (see the Tune logs in the output's tune/ directory)", self.quiet)


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
