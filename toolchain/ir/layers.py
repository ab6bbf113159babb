"""The layers of the head + exit IR: structure (`LayerShape`) and values (`Layer`), in packed form.

Every layer is `y[r] = act(bias[r] + Σ_m x[idx[r, m]] · w[r, m])` with w, idx of shape [n_out, d_in]:
sparse junctions keep their index-table order, dense layers (the exit branch, dense junctions) are
d_in = n_in with idx[r, m] = m. `kind` says how a device finds idx: "table" (stored), "affine"
(regenerated from a, b: slot m of row r reads p((r·d_in + m) mod n_in), p(j) = (a·j + b) mod n_in)
or "dense".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from toolchain.sparsity import Connectivity, affine_index


class LayerKind(StrEnum):
    DENSE = "dense"  # idx[r, m] = m
    TABLE = "table"  # idx stored as an index table
    AFFINE = "affine"  # idx regenerated from (a, b): index-free


@dataclass(frozen=True)
class LayerShape:
    """Everything about a layer that does not depend on trained values: what sizes the C arrays,
    buffers and descriptors (the memory predictor and the planner need nothing else)."""

    name: str
    kind: LayerKind
    n_in: int
    n_out: int
    d_in: int
    relu: bool
    params: tuple[tuple[str, int], ...] = ()  # affine: (("a", a), ("b", b))

    @property
    def affine(self) -> tuple[int, int]:
        """(a, b) of the input permutation p(j) = (a·j + b) mod n_in; (1, 0) = identity."""
        p = dict(self.params)
        return (p["a"], p["b"]) if self.kind is LayerKind.AFFINE else (1, 0)

    @property
    def index_bytes(self) -> int:
        """Bytes per stored index of a table layer (uint8 when every input fits, else uint16)."""
        return 1 if self.n_in <= 256 else 2

    @property
    def windows(self) -> tuple[int, int]:
        """(n_win, group) of an index-free layer: rows r + k·n_win (k < group) read the same window."""
        n_in = self.n_in
        n_win = n_in // math.gcd(n_in, self.d_in)
        if self.n_out % n_win:
            # Cannot happen for a biregular junction (n_out·d_in = n_in·d_out); guard the invariant.
            raise ValueError(f"{self.name}: {self.n_out} rows are not a multiple of {n_win} windows")
        return n_win, self.n_out // n_win

    @property
    def window_extent(self) -> int:
        """Length of the cyclically extended input an index-free layer reads (max window end)."""
        n_in = self.n_in
        starts = (np.arange(self.n_out, dtype=np.int64) * self.d_in) % n_in
        return int(starts.max()) + self.d_in


@dataclass
class Layer:
    """A layer with its values: `y[r] = act(bias[r] + Σ_m x[idx[r, m]] · w[r, m])`."""

    name: str
    kind: LayerKind
    n_in: int
    idx: np.ndarray  # int32 [n_out, d_in] (always present, also for affine/dense: the reference uses it)
    w: np.ndarray  # int8 or float32 [n_out, d_in]
    bias: np.ndarray  # int32 or float32 [n_out]
    relu: bool
    params: dict[str, int] = field(default_factory=dict)  # affine: {"a", "b"}
    # int8 only: real = scale · (q − zero_point); per-output-channel weight scales and multipliers.
    quant: dict[str, Any] = field(default_factory=dict)

    @property
    def n_out(self) -> int:
        return int(self.idx.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.idx.shape[1])

    @property
    def shape(self) -> LayerShape:
        return LayerShape(
            self.name,
            LayerKind(self.kind),
            self.n_in,
            self.n_out,
            self.d_in,
            self.relu,
            tuple(sorted(self.params.items())),
        )


def _is_dense(idx: np.ndarray, n_in: int) -> bool:
    return idx.shape[1] == n_in and bool(np.all(idx == np.arange(n_in)[None, :]))


def classify(conn: Connectivity) -> tuple[LayerKind, dict[str, int]]:
    if _is_dense(conn.idx, conn.shape.n_left):
        return LayerKind.DENSE, {}
    if conn.index_free:
        a, b = int(conn.params["a"]), int(conn.params["b"])
        # The export relies on the table being exactly what (a, b) regenerate.
        if not np.array_equal(affine_index(conn.shape, a, b), conn.idx):
            raise ValueError(f"index table of pattern {conn.pattern!r} does not match a={a}, b={b}")
        return LayerKind.AFFINE, {"a": a, "b": b}
    return LayerKind.TABLE, {}


def dense_idx(n_out: int, n_in: int) -> np.ndarray:
    return np.tile(np.arange(n_in, dtype=np.int32), (n_out, 1))


def exit_layer_names(bundle) -> list[str]:
    return [f"exit_{k + 1}" for k in range(len(bundle.config.exit.hidden))] + ["exit_logits"]


def head_connectivity(bundle) -> list[Connectivity]:
    return bundle.connectivity[: bundle.config.network.split_after]


def float_layers(bundle) -> list[Layer]:
    """float32 layers straight from the bundle's form-neutral weights."""
    layers = []
    for i, conn in enumerate(head_connectivity(bundle)):
        kind, params = classify(conn)
        name = f"junction_{i + 1}"
        w = np.asarray(bundle.weights[f"{name}/w"], dtype=np.float32)
        b = np.asarray(bundle.weights[f"{name}/b"], dtype=np.float32)
        layers.append(Layer(name, kind, conn.shape.n_left, conn.idx.astype(np.int32), w, b, True, params))
    names = exit_layer_names(bundle)
    for k, name in enumerate(names):
        kernel = np.asarray(bundle.weights[f"{name}/kernel"], dtype=np.float32)  # Keras [n_in, n_out]
        b = np.asarray(bundle.weights[f"{name}/bias"], dtype=np.float32)
        n_in, n_out = kernel.shape
        w = np.ascontiguousarray(kernel.T)
        relu = k < len(names) - 1
        layers.append(Layer(name, LayerKind.DENSE, n_in, dense_idx(n_out, n_in), w, b, relu))
    return layers


def pack_int8(name: str, w_dense: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Gather the int8 FC weights [n_out, n_in] into packed [n_out, d_in]; everything else must be 0."""
    packed = np.take_along_axis(w_dense, idx.astype(np.int64), axis=1)
    rest = w_dense.copy()
    np.put_along_axis(rest, idx.astype(np.int64), 0, axis=1)
    if np.any(rest != 0):
        bad = int(np.count_nonzero(rest))
        raise ValueError(f"{name}: {bad} int8 weights outside the connectivity are not zero")
    return packed.astype(np.int8)
