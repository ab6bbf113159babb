"""Turning an Optuna trial into a candidate (define-by-run): parameter names carry the shapes they
depend on, so Optuna's distributions stay fixed per name while widths change."""

from __future__ import annotations

import itertools
from typing import Any

from toolchain.search.space import Candidate, SearchSpace


def _key(values: tuple[int, ...]) -> str:
    return "-".join(map(str, values)) or "none"


def suggest(space: SearchSpace, trial: Any) -> Candidate:
    """Sample one candidate with `trial` (an optuna.Trial or Ray Tune's captor of one)."""
    hidden_keys = [_key(h) for h in space.hidden]
    hidden = space.hidden[hidden_keys.index(trial.suggest_categorical("hidden", hidden_keys))]
    choices = space.degree_choices(hidden)
    neurons = space.neurons(hidden)
    if space.out_degrees == "admissible":
        degrees = tuple(
            opts[trial.suggest_int(f"d_out_{a}x{b}", 0, len(opts) - 1)]
            for (a, b), opts in zip(itertools.pairwise(neurons), choices, strict=True)
        )
    else:
        keys = [_key(d) for d in choices]
        degrees = choices[keys.index(trial.suggest_categorical(f"out_degrees_{_key(hidden)}", keys))]
    splits = [s for s in space.split_after if s <= len(hidden)]
    exit_keys = [_key(e) for e in space.exit_hidden]
    placements = [p or "local" for p in space.placements]
    placement = trial.suggest_categorical("placement", placements)
    return Candidate(
        hidden=hidden,
        out_degrees=tuple(int(d) for d in degrees),
        pattern=trial.suggest_categorical("pattern", space.patterns),
        split_after=trial.suggest_categorical(f"split_after_{len(hidden)}", splits),
        exit_hidden=space.exit_hidden[exit_keys.index(trial.suggest_categorical("exit_hidden", exit_keys))],
        data_fraction=trial.suggest_categorical("data_fraction", space.fractions),
        batch_size=trial.suggest_categorical("batch_size", space.batch_sizes),
        epochs=trial.suggest_categorical("epochs", space.epochs),
        threads=trial.suggest_categorical("threads", space.threads),
        placement=None if placement == "local" else placement,
    )


def define_by_run(space: SearchSpace):
    """The `space` callable OptunaSearch takes: samples, and hands the candidate to the trainable."""

    def sample(trial: Any) -> dict[str, Any]:
        return {"candidate": suggest(space, trial).as_dict()}

    return sample


class RandomTrial:
    """The suggest_* calls of an optuna.Trial, answered uniformly at random (corpus recording and the
    admissibility pre-check need candidates without a study)."""

    def __init__(self, rng) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices):
        return choices[int(self.rng.integers(len(choices)))]

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))
