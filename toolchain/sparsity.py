"""Structured predefined sparsity (Dey et al.): degree math, connectivity patterns and validation.

A junction connects N_left neurons to N_right neurons. Every left neuron has out-degree d_out and every
right neuron in-degree d_in, so edges = N_left·d_out = N_right·d_in. Connectivity is an index table
`idx[N_right, d_in]`: slot m of right neuron r reads left neuron idx[r, m]. Packed weights use the
same [N_right, d_in] layout, so the table order *is* the weight order.

Patterns are fully determined by (shape, seed). Index-free patterns also carry the few integers that
regenerate `idx` on a microcontroller, so an export can drop the table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolchain.errors import ConfigError
from toolchain.resources import require_memory


# ----------------------------------------------------------------------------------------------
# Degree math
# ----------------------------------------------------------------------------------------------
def min_out_degree(n_left: int, n_right: int) -> int:
    """Smallest admissible out-degree: N_right / gcd(N_left, N_right); all others are its multiples."""
    return n_right // math.gcd(n_left, n_right)


def admissible_out_degrees(n_left: int, n_right: int) -> list[int]:
    step = min_out_degree(n_left, n_right)
    return list(range(step, n_right + 1, step))


def in_degree(n_left: int, n_right: int, d_out: int) -> int:
    """d_in = N_left·d_out / N_right; raises ConfigError when that is not an integer."""
    check_out_degree(n_left, n_right, d_out)
    return n_left * d_out // n_right


def check_out_degree(n_left: int, n_right: int, d_out: int, where: str = "out-degree") -> None:
    if not isinstance(d_out, int) or isinstance(d_out, bool) or d_out < 1:
        raise ConfigError(f"{where} = {d_out!r} must be a positive integer")
    if d_out > n_right:
        raise ConfigError(
            f"{where} = {d_out} is larger than the {n_right} neurons it connects to "
            f"(junction {n_left} -> {n_right})",
            hint=f"use at most {n_right} (that is a fully connected junction)",
        )
    if (n_left * d_out) % n_right:
        options = admissible_out_degrees(n_left, n_right)
        near = sorted(options, key=lambda d: (abs(d - d_out), d))[:4]
        raise ConfigError(
            f"{where} = {d_out} is not admissible for junction {n_left} -> {n_right}: the in-degree "
            f"{n_left}·{d_out}/{n_right} = {n_left * d_out / n_right:g} is not an integer",
            hint=f"out-degrees must be multiples of {min_out_degree(n_left, n_right)} "
            f"(= {n_right}/gcd({n_left}, {n_right})); nearest admissible: "
            f"{', '.join(map(str, sorted(near)))}",
        )


@dataclass(frozen=True)
class JunctionShape:
    n_left: int
    n_right: int
    d_out: int

    @property
    def d_in(self) -> int:
        return self.n_left * self.d_out // self.n_right

    @property
    def edges(self) -> int:
        return self.n_left * self.d_out

    @property
    def density(self) -> float:
        return self.d_out / self.n_right

    @property
    def params(self) -> int:
        """Existing weights plus biases (the paper's convention)."""
        return self.edges + self.n_right

    @property
    def dense(self) -> bool:
        return self.d_out == self.n_right


def junction_shapes(neurons: list[int], out_degrees: list[int]) -> list[JunctionShape]:
    return [JunctionShape(neurons[i], neurons[i + 1], out_degrees[i]) for i in range(len(neurons) - 1)]


@dataclass(frozen=True)
class ParamCount:
    total: int  # head + tail: all existing weights and all biases of the backbone (paper convention)
    head: int
    exit: int  # the early-exit branch, reported separately as the paper does not count it
    tail: int

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "head": self.head, "exit": self.exit, "tail": self.tail}


def exit_branch_params(split_width: int, hidden: list[int], n_classes: int) -> int:
    sizes = [split_width, *hidden, n_classes]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def count_params(
    neurons: list[int], out_degrees: list[int], split_after: int, exit_hidden: list[int]
) -> ParamCount:
    shapes = junction_shapes(neurons, out_degrees)
    head = sum(s.params for s in shapes[:split_after])
    tail = sum(s.params for s in shapes[split_after:])
    exit_ = exit_branch_params(neurons[split_after], exit_hidden, neurons[-1])
    return ParamCount(total=head + tail, head=head, exit=exit_, tail=tail)


# ----------------------------------------------------------------------------------------------
# Connectivity
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connectivity:
    """One junction's edges: idx[r, m] is the left neuron feeding slot m of right neuron r."""

    shape: JunctionShape
    pattern: str
    idx: np.ndarray
    # Integers that regenerate idx for index-free patterns (empty for patterns that need the table).
    params: dict[str, int] = field(default_factory=dict)

    @property
    def index_free(self) -> bool:
        return PATTERNS[self.pattern].index_free

    def mask(self) -> np.ndarray:
        """Dense 0/1 mask in Keras kernel layout [N_left, N_right]."""
        m = np.zeros((self.shape.n_left, self.shape.n_right), dtype=np.float32)
        m[self.idx, np.arange(self.shape.n_right)[:, None]] = 1.0
        return m

    def validate(self) -> None:
        validate_idx(self.idx, self.shape)


def validate_idx(idx: np.ndarray, shape: JunctionShape) -> None:
    """Exact in- and out-degrees, indices in range, no duplicate edge."""
    expect = (shape.n_right, shape.d_in)
    if idx.shape != expect:
        raise ValueError(f"index table has shape {idx.shape}, expected {expect}")
    if idx.size and (idx.min() < 0 or idx.max() >= shape.n_left):
        raise ValueError(f"index out of range [0, {shape.n_left})")
    srt = np.sort(idx, axis=1)
    if shape.d_in > 1 and np.any(srt[:, 1:] == srt[:, :-1]):
        raise ValueError("duplicate edge: a right neuron reads the same left neuron twice")
    counts = np.bincount(idx.ravel(), minlength=shape.n_left)
    if np.any(counts != shape.d_out):
        bad = int(np.flatnonzero(counts != shape.d_out)[0])
        raise ValueError(f"left neuron {bad} has out-degree {counts[bad]}, expected {shape.d_out}")


def _full(shape: JunctionShape) -> np.ndarray:
    return np.tile(np.arange(shape.n_left, dtype=np.int32), (shape.n_right, 1))


def _random_biregular(shape: JunctionShape, rng: np.random.Generator) -> np.ndarray:
    """Uniformly shuffled stubs, then duplicate edges repaired by random swaps between rows."""
    n_l, n_r, d_out, d_in = shape.n_left, shape.n_right, shape.d_out, shape.d_in
    table = np.repeat(np.arange(n_l, dtype=np.int32), d_out)
    rng.shuffle(table)
    table = table.reshape(n_r, d_in)
    # counts[r][v]: how often row r reads left neuron v; a count above 1 is a duplicate edge.
    counts: list[dict[int, int]] = []
    dups: list[tuple[int, int]] = []
    for r in range(n_r):
        row: dict[int, int] = {}
        for m in range(d_in):
            v = int(table[r, m])
            row[v] = row.get(v, 0) + 1
            if row[v] > 1:
                dups.append((r, m))
        counts.append(row)
    budget = 1000 * (len(dups) + 1)
    while dups:
        r, m = dups[-1]
        v = int(table[r, m])
        if counts[r][v] == 1:  # resolved by an earlier swap
            dups.pop()
            continue
        budget -= 1
        if budget < 0:
            raise RuntimeError(f"could not repair duplicate edges for {shape}")
        r2, m2 = int(rng.integers(n_r)), int(rng.integers(d_in))
        v2 = int(table[r2, m2])
        # After the swap row r holds v2 and row r2 holds v; both must be new to their row.
        if r2 == r or counts[r].get(v2, 0) or counts[r2].get(v, 0):
            continue
        counts[r][v] -= 1
        counts[r][v2] = 1
        counts[r2][v2] -= 1
        counts[r2][v] = 1
        table[r, m], table[r2, m2] = v2, v
        dups.pop()
    return table


def generate_random(shape: JunctionShape, seed: int) -> Connectivity:
    rng = np.random.default_rng(seed)
    if shape.dense:
        idx = _full(shape)
    elif shape.d_out * 2 > shape.n_right:
        # Dense junctions: draw the sparse complement (degrees N_right-d_out, N_left-d_in) and invert,
        # which keeps the duplicate repair cheap.
        comp_shape = JunctionShape(shape.n_left, shape.n_right, shape.n_right - shape.d_out)
        comp = _random_biregular(comp_shape, rng)
        keep = np.ones((shape.n_right, shape.n_left), dtype=bool)
        keep[np.arange(shape.n_right)[:, None], comp] = False
        idx = np.nonzero(keep)[1].reshape(shape.n_right, shape.d_in).astype(np.int32)
    else:
        idx = _random_biregular(shape, rng)
    # Ascending rows: better memory locality for the gather loop on a microcontroller.
    return Connectivity(shape, "random", np.sort(idx, axis=1).astype(np.int32))


def affine_index(shape: JunctionShape, a: int, b: int) -> np.ndarray:
    """Cyclic band composed with the affine left permutation p(j) = (a·j + b) mod N_left.

    Slot m of right neuron r reads left neuron p((r·d_in + m) mod N_left). The counter r·d_in + m runs
    over 0 .. N_left·d_out − 1, so every residue (hence every left neuron) appears exactly d_out times;
    a row is d_in ≤ N_left consecutive residues, so no duplicate edge. A device permutes its input once
    (x_p[j] = x[p(j)]) and then every row is a contiguous run of x_p.
    """
    n_l, n_r, d_in = shape.n_left, shape.n_right, shape.d_in
    j = (np.arange(n_r, dtype=np.int64)[:, None] * d_in + np.arange(d_in)[None, :]) % n_l
    return ((a * j + b) % n_l).astype(np.int32)


def generate_affine(shape: JunctionShape, seed: int) -> Connectivity:
    rng = np.random.default_rng(seed)
    n = shape.n_left
    coprimes = [a for a in range(1, n) if math.gcd(a, n) == 1] or [1]
    a, b = int(rng.choice(coprimes)), int(rng.integers(n))
    return Connectivity(shape, "affine", affine_index(shape, a, b), {"a": a, "b": b})


def generate_cyclic(shape: JunctionShape, seed: int) -> Connectivity:
    """Dey's all-zero-seed clash-free pattern: a plain band (affine with a = 1, b = 0); seed unused."""
    del seed
    return Connectivity(shape, "cyclic", affine_index(shape, 1, 0), {"a": 1, "b": 0})


@dataclass(frozen=True)
class PatternSpec:
    generate: Callable[[JunctionShape, int], Connectivity]
    index_free: bool
    description: str


PATTERNS: dict[str, PatternSpec] = {
    "random": PatternSpec(
        generate_random, False, "seeded random biregular graph (the paper's kind); needs a table"
    ),
    "affine": PatternSpec(
        generate_affine, True, "cyclic band after a seeded affine permutation; 2 integers per junction"
    ),
    "cyclic": PatternSpec(generate_cyclic, True, "plain cyclic band (affine a=1, b=0); no seed"),
}


def junction_seed(seed: int, junction: int) -> int:
    """Independent, reproducible stream per junction derived from the project seed."""
    return int(np.random.SeedSequence([seed, junction]).generate_state(1)[0])


def connectivity_bytes(shape: JunctionShape, pattern: str) -> int:
    """Peak memory of generating and validating one junction's index table (an estimate)."""
    tables = 8 * shape.edges * 4  # int64 index arithmetic, the table, its sorted copy, bincount
    if pattern != "random" or shape.dense:
        return tables
    if shape.d_out * 2 > shape.n_right:  # the sparse complement, then a dense boolean keep-mask
        return 128 * shape.n_left * (shape.n_right - shape.d_out) + shape.n_left * shape.n_right + tables
    return 128 * shape.edges + tables  # per-row Python dicts of edge counts in the duplicate repair


def build_connectivity(
    neurons: list[int], out_degrees: list[int], pattern: str, seed: int
) -> list[Connectivity]:
    if pattern not in PATTERNS:
        raise ConfigError(
            f"unknown connectivity pattern {pattern!r}",
            hint=f"valid patterns: {', '.join(PATTERNS)}",
        )
    shapes = junction_shapes(neurons, out_degrees)
    for i, shape in enumerate(shapes):
        check_out_degree(shape.n_left, shape.n_right, shape.d_out, f"out_degrees[{i}]")
    require_memory(
        max(connectivity_bytes(s, pattern) for s in shapes) + sum(s.edges * 4 for s in shapes),
        f"the connectivity of neurons = {neurons} with out-degrees {out_degrees}",
        hint="use narrower layers or smaller out-degrees (`toolchain info` shows the edge counts)",
    )
    conns = []
    for i, shape in enumerate(shapes):
        conn = PATTERNS[pattern].generate(shape, junction_seed(seed, i))
        conn.validate()
        conns.append(conn)
    return conns
