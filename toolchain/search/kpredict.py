"""The K predictor: epochs to reach a target validation accuracy ε, from the first m epochs.

RightTrain's K(y, ε) has no closed form, so an auxiliary model predicts it. Ours is a ridge
regression of log K on features of the curve's first m points (the error 1 - accuracy on a log
scale, its last value and slopes, the gap to ε, a power-law extrapolation) and of the trial
(parameters, samples per epoch, batch size, epoch budget: a cosine schedule anneals over the
budget). It trains on finished learning curves: the corpus the benchmark records and the package
ships (`curves.json`), plus the search's own finished trials. Each curve gives one example per ε
it reaches after epoch m, so one curve teaches many targets.

Two baselines, evaluated on the same held-out curves: *last value* (the curve stays where it is:
K = m if it already reached ε, else the whole budget) and a *power-law fit* of the error,
1 - a(t) = α·t^(-β), fitted to the m points and solved for 1 - a(K) = 1 - ε.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import ToolchainError

CORPUS_FORMAT = "toolchain-search-curves"
CORPUS_VERSION = 1
EPS_GRID = tuple(round(0.85 + 0.005 * i, 3) for i in range(27))  # 0.85 .. 0.98: training targets
RIDGE = 10.0  # chosen on the corpus by grouped cross-validation (few curves: strong shrinkage)
K_CAP = 10.0  # predictions are clipped to [m + 1, K_CAP x budget]


@dataclass(frozen=True)
class Curve:
    """One learning curve: validation accuracy (final exit) after each epoch, and the trial's features."""

    acc: tuple[float, ...]
    params: int  # trainable parameters of the network (edges + biases, exit included)
    n_train: int  # samples per epoch (the data fraction applied)
    batch_size: int
    budget: int  # the epochs the schedule was planned for
    label: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "acc": [round(a, 5) for a in self.acc],
            "params": self.params,
            "n_train": self.n_train,
            "batch_size": self.batch_size,
            "budget": self.budget,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        return cls(
            tuple(float(a) for a in d["acc"]),
            int(d["params"]),
            int(d["n_train"]),
            int(d["batch_size"]),
            int(d["budget"]),
            str(d.get("label", "")),
        )


def epochs_to_reach(acc: tuple[float, ...] | list[float], eps: float) -> int | None:
    """K: the first epoch (1-based) whose accuracy is at least ε; None if the curve never gets there."""
    for i, a in enumerate(acc):
        if a >= eps:
            return i + 1
    return None


def _err(acc) -> np.ndarray:
    return np.log(np.clip(1.0 - np.asarray(acc, dtype=np.float64), 1e-4, 1.0))


def powerlaw_k(prefix, eps: float, cap: float) -> float:
    """Power-law baseline: least-squares fit of log(1 - a_t) = c - β log t over the m points."""
    m = len(prefix)
    t = np.log(np.arange(1, m + 1, dtype=np.float64))
    e = _err(prefix)
    slope, c = np.polyfit(t, e, 1)
    beta = -slope
    target = math.log(max(1e-4, 1.0 - eps))
    if e[-1] <= target:
        return float(m)
    if beta <= 1e-6:
        return cap  # not improving: no finite K
    return float(np.clip(math.exp((c - target) / beta), m + 1, cap))


def last_value_k(prefix, eps: float, budget: int) -> float:
    """Last-value baseline: the curve stays at its last point."""
    return float(len(prefix)) if prefix[-1] >= eps else float(budget)


def features(c: Curve, m: int, eps: float) -> np.ndarray:
    e = _err(c.acc[:m])
    target = math.log(max(1e-4, 1.0 - eps))
    d1 = e[-1] - e[-2]
    d2 = e[-2] - e[-3] if m >= 3 else d1
    pl = powerlaw_k(c.acc[:m], eps, K_CAP * c.budget)
    return np.array(
        [
            e[-1],
            d1,
            d2,
            target,
            e[-1] - target,
            math.log(c.n_train),
            math.log(c.batch_size),
            math.log(c.n_train / c.batch_size),
            math.log(max(1, c.params)),
            math.log(c.budget),
            math.log(pl),
            math.log(m) - math.log(c.budget),
        ]
    )


def examples(curves: list[Curve], m: int, eps_values=EPS_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, log K, curve index) for every (curve, ε) the curve reaches after epoch m."""
    xs, ys, groups = [], [], []
    for i, c in enumerate(curves):
        if len(c.acc) < m:
            continue
        for eps in eps_values:
            k = epochs_to_reach(c.acc, eps)
            if k is not None and k > m:
                xs.append(features(c, m, eps))
                ys.append(math.log(k))
                groups.append(i)
    if not xs:
        return np.zeros((0, 12)), np.zeros(0), np.zeros(0, dtype=int)
    return np.array(xs), np.array(ys), np.array(groups)


@dataclass
class KModel:
    """Ridge regression of log K on standardized features (fitted for one m)."""

    m: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    n_examples: int

    def predict(self, c: Curve, eps: float) -> float:
        """Predicted K for a curve seen for m epochs (it must not have reached ε yet)."""
        x = (features(c, self.m, eps) - self.mean) / self.scale
        k = math.exp(float(x @ self.coef) + self.intercept)
        return float(np.clip(k, self.m + 1, K_CAP * c.budget))


def fit(curves: list[Curve], m: int, ridge: float = RIDGE) -> KModel:
    x, y, _ = examples(curves, m)
    if len(y) < 3:
        raise ToolchainError(
            f"the K predictor needs learning curves that reach a target after epoch {m}: "
            f"got {len(y)} examples",
            hint="ship or record a corpus (benchmarks/search_energy.py --corpus) or lower observe_epochs",
        )
    return _fit_xy(x, y, m, ridge)


def _fit_xy(x: np.ndarray, y: np.ndarray, m: int, ridge: float) -> KModel:
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    yc = y.mean()
    coef = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - yc))
    return KModel(m, mean, scale, coef, float(yc), len(y))


def mape(pred: list[float], true: list[float]) -> float:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(p - t) / t)) if len(t) else float("nan")


def evaluate(
    curves: list[Curve], m: int, eps_values=(0.94, 0.95, 0.96), folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """MAPE of the model and both baselines on held-out curves (grouped k-fold: a curve is never
    in its own training set). Examples are the (curve, ε) pairs reached after epoch m."""
    order = np.random.default_rng(seed).permutation(len(curves))
    fold_of = {int(ci): k % folds for k, ci in enumerate(order)}
    rows: list[dict[str, Any]] = []
    for f in range(folds):
        train = [c for i, c in enumerate(curves) if fold_of[i] != f]
        test = [(i, c) for i, c in enumerate(curves) if fold_of[i] == f]
        x, y, _ = examples(train, m)
        if len(y) < 3 or not test:
            continue
        model = _fit_xy(x, y, m, RIDGE)
        for i, c in test:
            for eps in eps_values:
                k = epochs_to_reach(c.acc, eps)
                if k is None or k <= m or len(c.acc) < m:
                    continue
                prefix = c.acc[:m]
                rows.append(
                    {
                        "curve": i,
                        "eps": eps,
                        "k": k,
                        "model": model.predict(c, eps),
                        "last_value": last_value_k(prefix, eps, c.budget),
                        "power_law": powerlaw_k(prefix, eps, K_CAP * c.budget),
                    }
                )
    true = [r["k"] for r in rows]
    out: dict[str, Any] = {"m": m, "folds": folds, "examples": len(rows), "curves": len(curves)}
    for name in ("model", "last_value", "power_law"):
        out[f"mape_{name}"] = mape([r[name] for r in rows], true)
    out["per_eps"] = {
        str(eps): {
            name: mape([r[name] for r in rows if r["eps"] == eps], [r["k"] for r in rows if r["eps"] == eps])
            for name in ("model", "last_value", "power_law")
        }
        | {"examples": sum(r["eps"] == eps for r in rows)}
        for eps in eps_values
    }
    return out


# ----------------------------------------------------------------------------------------------
# The shipped corpus
# ----------------------------------------------------------------------------------------------
def corpus_path() -> Path:
    return Path(str(files("toolchain.search"))) / "curves.json"


def load_corpus(path: str | Path | None = None) -> list[Curve]:
    p = Path(path) if path is not None else corpus_path()
    if not p.is_file():
        raise ToolchainError(f"learning-curve corpus {p} does not exist", hint="reinstall the toolchain")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ToolchainError(f"{p}: not valid JSON ({exc})") from None
    if data.get("format") != CORPUS_FORMAT or data.get("version") != CORPUS_VERSION:
        raise ToolchainError(f"{p}: not a {CORPUS_FORMAT} v{CORPUS_VERSION} file")
    try:
        return [Curve.from_dict(c) for c in data["curves"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolchainError(f"{p}: a curve is malformed ({exc})") from None


def corpus_json(curves: list[Curve], command: str) -> dict[str, Any]:
    return {
        "format": CORPUS_FORMAT,
        "version": CORPUS_VERSION,
        "command": command,
        "curves": [c.as_dict() for c in curves],
    }
