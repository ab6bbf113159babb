"""The numerics of one block instance in NumPy: forward, backward, loss and the optimizer.

A block is a contiguous run of junctions, optionally with the exit branch. Its arithmetic mirrors
what `toolchain.train` asks Keras for, operation by operation, in float32: a masked sparse junction
is `x @ (K·M) + b` (the kernel holds zeros off the mask, so `K·M == K`), ReLU on hidden layers,
softmax cross-entropy averaged over the batch and weighted per head (exit, final), and Keras' own
update formulas for Adam / AdamW (decoupled weight decay applied before the Adam step, both at the
current schedule value) and SGD with momentum 0.9, with Keras' cosine and inverse-time schedules.
That is what lets a one-node placement reproduce centralized training to 1e-5 (tests/test_parallel.py).

NumPy, not TensorFlow, so that a block actor starts in a fraction of a second and holds tens of MB
instead of a TensorFlow runtime each; the device-side cost model counts the sparse MACs (edges),
which is what a device implementation executes, not the dense matmuls used here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.sparsity import Connectivity

F32 = np.float32


def junction_name(i: int) -> str:
    """Layer names as in toolchain.model (not imported: it pulls in Keras, which actors must not)."""
    return f"junction_{i + 1}"


@dataclass(frozen=True)
class BlockSpec:
    """Which parts of the network one instance computes."""

    junctions: tuple[int, ...]  # 0-based, contiguous, ascending
    exit: bool  # holds the exit branch (it reads the split activation)

    @property
    def label(self) -> str:
        parts = [junction_name(j) for j in self.junctions]
        return "+".join([*parts, "exit"] if self.exit else parts)


@dataclass(frozen=True)
class OptimizerSpec:
    """The training section's optimizer and schedule, resolved for one instance's step count."""

    kind: str  # adam | sgd
    learning_rate: float
    schedule: str  # constant | cosine | inverse_time
    decay_steps: int  # cosine: the instance's total steps
    final_lr_fraction: float
    decay: float
    weight_decay: float

    @classmethod
    def from_config(cls, cfg: ProjectConfig, total_steps: int) -> OptimizerSpec:
        t = cfg.training
        return cls(
            t.optimizer,
            t.learning_rate,
            t.schedule,
            max(1, total_steps),
            t.final_lr_fraction,
            t.decay,
            t.weight_decay,
        )

    def lr(self, step: int) -> np.float32:
        """Keras' schedule value at `step` (the optimizer's iteration count before the update)."""
        lr0 = F32(self.learning_rate)
        if self.schedule == "cosine":
            s = min(F32(step), F32(self.decay_steps))
            frac = F32(s) / F32(self.decay_steps)
            cosd = F32(0.5) * (F32(1.0) + np.cos(F32(math.pi) * frac, dtype=F32))
            return F32(lr0 * (F32(1 - self.final_lr_fraction) * cosd + F32(self.final_lr_fraction)))
        if self.schedule == "inverse_time":
            return F32(lr0 / (F32(1.0) + F32(self.decay) * F32(step)))
        return lr0


class Optimizer:
    """Keras 3 Adam/AdamW (beta 0.9/0.999, eps 1e-7) or SGD(momentum 0.9), per named parameter."""

    def __init__(self, spec: OptimizerSpec, params: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {
            k: [np.zeros_like(v) for _ in range(2 if spec.kind == "adam" else 1)] for k, v in params.items()
        }

    def apply(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        lr = self.spec.lr(self.iterations)
        if self.spec.weight_decay:
            wd = F32(self.spec.weight_decay)
            for p in params.values():
                p -= p * wd * lr
        if self.spec.kind == "adam":
            self._adam(params, grads, lr)
        else:
            self._sgd(params, grads, lr)
        self.iterations += 1

    def _adam(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: np.float32) -> None:
        t = F32(self.iterations + 1)
        b1p, b2p = F32(0.9) ** t, F32(0.999) ** t
        alpha = lr * np.sqrt(F32(1) - b2p) / (F32(1) - b1p)
        one_minus_b1, one_minus_b2, eps = F32(1 - 0.9), F32(1 - 0.999), F32(1e-7)
        for name, p in params.items():
            g = grads[name]
            m, v = self.slots[name]
            m += (g - m) * one_minus_b1
            v += (np.square(g) - v) * one_minus_b2
            p -= (m * alpha) / (np.sqrt(v) + eps)

    def _sgd(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: np.float32) -> None:
        momentum = F32(0.9)
        for name, p in params.items():
            (m,) = self.slots[name]
            m[...] = m * momentum - grads[name] * lr
            p += m

    def state(self) -> dict[str, np.ndarray]:
        out = {f"{k}/slot{i}": s.copy() for k, slots in self.slots.items() for i, s in enumerate(slots)}
        out["iterations"] = np.array(self.iterations, dtype=np.int64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for k, slots in self.slots.items():
            for i, s in enumerate(slots):
                s[...] = state[f"{k}/slot{i}"]
        self.iterations = int(state["iterations"])


def softmax_xent(logits: np.ndarray, labels: np.ndarray, weight: float) -> tuple[float, np.ndarray]:
    """Mean sparse softmax cross-entropy times `weight`, and its gradient w.r.t. the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, labels]))
    grad = e / s
    grad[rows, labels] -= F32(1)
    return weight * loss, grad * F32(weight / len(labels))


@dataclass
class Layer:
    """One affine layer in Keras layout: y = act(x @ kernel + bias); `mask` zero off the sparse edges."""

    name: str
    kernel: np.ndarray  # [n_in, n_out]
    bias: np.ndarray
    relu: bool
    mask: np.ndarray | None = None
    _x: list[np.ndarray] = field(default_factory=list, repr=False)
    _y: list[np.ndarray] = field(default_factory=list, repr=False)

    def forward(self, x: np.ndarray, keep: bool) -> np.ndarray:
        y = x @ self.kernel + self.bias
        if self.relu:
            y = np.maximum(y, F32(0))
        if keep:
            self._x.append(x)
            self._y.append(y)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        x, y = self._x.pop(), self._y.pop()
        if self.relu:
            dy = np.where(y > 0, dy, F32(0))
        dk = x.T @ dy
        if self.mask is not None:
            dk *= self.mask
        db = dy.sum(axis=0)
        dx = dy @ self.kernel.T if need_dx else None
        return dx, dk, db


def _junction_layer(i: int, conn: Connectivity, w: np.ndarray, b: np.ndarray, last: bool) -> Layer:
    mask = conn.mask().astype(F32)
    kernel = np.zeros(mask.shape, dtype=F32)
    kernel[conn.idx, np.arange(conn.idx.shape[0])[:, None]] = w
    return Layer(junction_name(i), kernel, np.array(b, dtype=F32), relu=not last, mask=mask)


class Block:
    """The layers of one block instance, their optimizer, and forward/backward over a batch."""

    def __init__(
        self,
        cfg: ProjectConfig,
        conns: list[Connectivity],
        spec: BlockSpec,
        weights: dict[str, np.ndarray],
        opt: OptimizerSpec,
    ) -> None:
        n_j = len(conns)
        self.cfg, self.conns, self.spec = cfg, conns, spec
        self.layers = [
            _junction_layer(
                j, conns[j], weights[f"{junction_name(j)}/w"], weights[f"{junction_name(j)}/b"], j == n_j - 1
            )
            for j in spec.junctions
        ]
        self.exit_layers: list[Layer] = []
        if spec.exit:
            names = [f"exit_{k + 1}" for k in range(len(cfg.exit.hidden))] + ["exit_logits"]
            self.exit_layers = [
                Layer(
                    n,
                    np.array(weights[f"{n}/kernel"], F32),
                    np.array(weights[f"{n}/bias"], F32),
                    relu=n != "exit_logits",
                )
                for n in names
            ]
        self.first = bool(spec.junctions) and spec.junctions[0] == 0
        self.last = bool(spec.junctions) and spec.junctions[-1] == n_j - 1
        self.split = cfg.network.split_after - 1
        # The exit reads the split activation (junction `split`'s output): inside this block when the
        # block computes that junction, else it is this (exit-only) block's input.
        self.exit_reads_output = spec.exit and self.split in spec.junctions
        if spec.exit and spec.junctions and not self.exit_reads_output:
            raise ValueError(f"block {spec.label}: the exit branch needs {junction_name(self.split)}")
        self.optimizer = Optimizer(opt, self.params())

    def params(self) -> dict[str, np.ndarray]:
        """Live references, keyed like the bundle's weights (dense kernels for junctions)."""
        out: dict[str, np.ndarray] = {}
        for layer in [*self.layers, *self.exit_layers]:
            out[f"{layer.name}/kernel"], out[f"{layer.name}/bias"] = layer.kernel, layer.bias
        return out

    def packed_weights(self) -> dict[str, np.ndarray]:
        """Form-neutral weights (what bundles store): w[N_right, d_in] in index-table order."""
        out: dict[str, np.ndarray] = {}
        for j, layer in zip(self.spec.junctions, self.layers, strict=True):
            idx = self.conns[j].idx
            out[f"{layer.name}/w"] = layer.kernel[idx, np.arange(idx.shape[0])[:, None]].copy()
            out[f"{layer.name}/b"] = layer.bias.copy()
        for layer in self.exit_layers:
            out[f"{layer.name}/kernel"], out[f"{layer.name}/bias"] = layer.kernel.copy(), layer.bias.copy()
        return out

    def forward(self, x: np.ndarray, keep: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(output of the last junction, exit logits or None); x is the input or the split activation."""
        h = x
        exit_logits = None
        if self.spec.exit and not self.exit_reads_output:
            exit_logits = self._exit_forward(x, keep)
        for j, layer in zip(self.spec.junctions, self.layers, strict=True):
            h = layer.forward(h, keep)
            if self.exit_reads_output and j == self.split:
                exit_logits = self._exit_forward(h, keep)
        return h, exit_logits

    def _exit_forward(self, h: np.ndarray, keep: bool) -> np.ndarray:
        for layer in self.exit_layers:
            h = layer.forward(h, keep)
        return h

    def backward(self, d_out: np.ndarray | None, d_exit: np.ndarray | None) -> np.ndarray | None:
        """Backpropagate and apply one optimizer step; returns d(input) unless the input is data.

        `d_out` is d(loss)/d(output of the last junction): the final loss's gradient on the last block,
        the next block's answer otherwise. `d_exit` is d(loss)/d(exit logits) when the exit is here.
        """
        grads: dict[str, np.ndarray] = {}
        d_split = self._exit_backward(d_exit, grads) if self.spec.exit else None
        d = d_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer, j = self.layers[i], self.spec.junctions[i]
            if self.exit_reads_output and j == self.split:
                # The split activation feeds both the exit and the next junction: the sum of both.
                d = d_split if d is None else d + d_split
            need_dx = i > 0 or not self.first
            d, grads[f"{layer.name}/kernel"], grads[f"{layer.name}/bias"] = layer.backward(d, need_dx)
        if not self.layers:
            d = d_split
        self.optimizer.apply(self.params(), grads)
        return d

    def _exit_backward(self, d: np.ndarray | None, grads: dict[str, np.ndarray]) -> np.ndarray:
        for layer in reversed(self.exit_layers):
            d, grads[f"{layer.name}/kernel"], grads[f"{layer.name}/bias"] = layer.backward(d, True)
        return d

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        for name, p in self.params().items():
            p[...] = params[name]
