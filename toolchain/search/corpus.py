"""Recording learning curves for the K predictor's corpus: full curves (no early stop), so one curve
gives K for every target it reaches. The benchmark records them; the package ships the result."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from toolchain.data import Splits
from toolchain.search.constraints import Constraints
from toolchain.search.kpredict import Curve
from toolchain.search.sampler import RandomTrial, suggest
from toolchain.search.space import Candidate, SearchSpace
from toolchain.sparsity import count_params


def trained_params(space: SearchSpace, c: Candidate) -> int:
    """Backbone + exit parameters: what one training step updates."""
    p = count_params(space.neurons(c.hidden), list(c.out_degrees), c.split_after, list(c.exit_hidden))
    return p.total + p.exit


def n_train(data: Splits, fraction: float) -> int:
    return max(1, round(fraction * len(data.x_train)))


def record_curve(space: SearchSpace, c: Candidate, data: Splits, seed: int = 0) -> Curve:
    """Train a candidate for its whole budget (locally, in this process) and return its curve."""
    from toolchain.train import train

    cfg = space.to_config(c, seed=seed)
    cfg.training.stop_at_accuracy = 0.0
    res = train(cfg, None, data=data, quiet=True)
    acc = tuple(r["val_final_accuracy"] for r in res.metrics["training"]["curve"])
    label = (
        f"{list(c.hidden)} d{list(c.out_degrees)} {c.pattern} f{c.data_fraction} b{c.batch_size} e{c.epochs}"
    )
    return Curve(acc, trained_params(space, c), n_train(data, c.data_fraction), c.batch_size, c.epochs, label)


def admissible_candidates(
    space: SearchSpace, constraints: Constraints, n: int, seed: int, tries: int = 5000
) -> list[Candidate]:
    """Up to n distinct candidates drawn uniformly that pass the device constraints."""
    rng = np.random.default_rng(seed)
    out: list[Candidate] = []
    for _ in range(tries):
        c = suggest(space, RandomTrial(rng))
        if c.threads != space.threads[-1] or c.placement is not None:
            c = Candidate(**{**c.__dict__, "threads": space.threads[-1], "placement": None})
        if c not in out and constraints.check(space.to_config(c)).reason is None:
            out.append(c)
        if len(out) == n:
            break
    return out


def record_corpus(
    space: SearchSpace,
    constraints: Constraints,
    data: Splits,
    n: int,
    seed: int = 0,
    on_curve: Callable[[Curve, int], None] | None = None,
) -> list[Curve]:
    curves = []
    for i, c in enumerate(admissible_candidates(space, constraints, n, seed)):
        curves.append(record_curve(space, c, data, seed=i))
        if on_curve is not None:
            on_curve(curves[-1], i)
    return curves
