"""The run's schedule, fixed before training: shards, steps, rounds, who syncs with whom.

Both the runner and the cost predictor walk this same schedule, so predicted and measured message
counts agree by construction; only the byte sizes and the times are then compared.

- A *chain* is one first-block instance and the instances its activations pass through.
- `average` mode: in each round every chain runs up to `every` steps in parallel (a whole epoch when
  every = "epoch"); then each replica group is averaged at the aggregator. Rounds never span epochs.
- `relay` mode (classic split learning): chains take turns, `every` steps (or a whole shard) each;
  when the turn passes to another chain, every replica group hands its state (weights and optimizer
  moments) from the instance the last chain used to the one the next chain uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from toolchain.parallel.placement import Placement


@dataclass(frozen=True)
class Work:
    chain: int
    epoch: int
    start: int  # first step (within the chain's epoch)
    stop: int


@dataclass(frozen=True)
class Round:
    epoch: int
    work: list[Work]  # in parallel (average) or one chain's turn (relay)
    last_of_epoch: bool


@dataclass(frozen=True)
class Schedule:
    n_train: int
    batch: int
    epochs: int
    shard_ranges: list[tuple[int, int]]  # sample index ranges of the training split
    chains: list[list[str]]  # instance names
    steps: list[int]  # per chain, per epoch
    rounds: list[Round]

    def shard_size(self, shard: int) -> int:
        a, b = self.shard_ranges[shard]
        return b - a

    def batch_rows(self, chain: int, step: int, placement: Placement) -> int:
        size = self.shard_size(placement.instances[self.chains[chain][0]].shard)
        return min(self.batch, size - step * self.batch)

    def instance_steps(self, placement: Placement) -> dict[str, int]:
        """Optimizer steps of each instance over the run (its schedule's length)."""
        out = dict.fromkeys(placement.instances, 0)
        for chain, names in enumerate(self.chains):
            fed = {n for n in names} | {placement.instances[n].exit_to for n in names} - {None}
            for name in fed:
                out[name] += self.steps[chain] * self.epochs
        if placement.replicas.mode == "relay":
            # One logical model visits the replicas: its optimizer state (and step count) travels.
            for names in placement.groups().values():
                total = sum(out[n] for n in names)
                out.update(dict.fromkeys(names, total))
        return out


def shard_ranges(n: int, fractions: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(round(a * n), round(b * n)) for a, b in fractions]


def make_schedule(placement: Placement, n_train: int, batch: int, epochs: int) -> Schedule:
    ranges = shard_ranges(n_train, placement.shards)
    chains = placement.chains()
    steps = []
    for names in chains:
        a, b = ranges[placement.instances[names[0]].shard]
        steps.append(math.ceil((b - a) / batch))
    every = placement.replicas.every
    rounds: list[Round] = []
    for epoch in range(epochs):
        longest = max(steps)
        k = every or longest
        chunks = range(0, longest, k)
        epoch_rounds: list[Round] = []
        for i, s0 in enumerate(chunks):
            work = [Work(c, epoch, s0, min(s0 + k, steps[c])) for c in range(len(chains)) if s0 < steps[c]]
            last = i == len(chunks) - 1
            if placement.replicas.mode == "relay":
                epoch_rounds += [Round(epoch, [w], False) for w in work]
            else:
                epoch_rounds.append(Round(epoch, work, last))
        if placement.replicas.mode == "relay":
            epoch_rounds[-1] = Round(epoch, epoch_rounds[-1].work, True)
        rounds += epoch_rounds
    return Schedule(n_train, batch, epochs, ranges, chains, steps, rounds)
