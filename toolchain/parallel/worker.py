"""One block instance: its NumPy block, its data shard, its wire codec and its meters.

`BlockWorker` is a plain class; `toolchain.parallel.runner` runs one per instance as a Ray actor, and
the cost calibration runs it in-process. Every method that computes is timed with the thread's CPU
clock (robust to a shared machine; the actors run single-threaded BLAS) and the wall clock, and every
message it sends or receives across nodes is counted with len() of the bytes actually serialized.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.parallel import wire
from toolchain.parallel.engine import Block, BlockSpec, OptimizerSpec, softmax_xent
from toolchain.sparsity import Connectivity


@dataclass
class WorkerInit:
    name: str
    node: str
    cfg: ProjectConfig
    conns: list[Connectivity]
    spec: BlockSpec
    weights: dict[str, np.ndarray]
    total_steps: int  # for the cosine schedule of this instance (or of its relay group)
    wire: str
    next_node: str | None = None
    exit_node: str | None = None
    x: np.ndarray | None = None  # the shard (first blocks)
    y: np.ndarray | None = None
    orders: list[np.ndarray] | None = None  # per epoch, positions in the shard
    macs_per_sample: tuple[int, int] = (0, 0)  # forward, backward (analytic, sparse)


@dataclass
class Meters:
    busy_cpu_s: float = 0.0
    busy_wall_s: float = 0.0
    macs_forward: int = 0
    macs_backward: int = 0
    samples: int = 0
    steps: int = 0
    sent: dict[str, int] = field(default_factory=dict)  # kind -> bytes to other nodes
    received: dict[str, int] = field(default_factory=dict)
    messages_sent: int = 0
    messages_received: int = 0
    loss_final: float = 0.0
    loss_exit: float = 0.0
    loss_batches: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class BlockWorker:
    def __init__(self, init: WorkerInit) -> None:
        if init.x is not None:
            # Ray hands large arguments over as read-only views of shared memory whose pages fault in
            # on first touch; a private copy makes every step cost the same (and the pilot representative).
            init.x, init.y = np.array(init.x, copy=True), np.array(init.y, copy=True)
        self.init = init
        self.block = Block(
            init.cfg,
            init.conns,
            init.spec,
            init.weights,
            OptimizerSpec.from_config(init.cfg, init.total_steps),
        )
        self.meters = Meters()
        self.batch = init.cfg.training.batch_size
        t = init.cfg.training
        self.w_exit, self.w_final = t.exit_loss_weight, t.final_loss_weight
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []

    # ----- accounting -----
    def _send(self, msg: bytes, kind: str, dst: str | None) -> bytes:
        if dst is not None and dst != self.init.node:
            self.meters.sent[kind] = self.meters.sent.get(kind, 0) + len(msg)
            self.meters.messages_sent += 1
        return msg

    def _recv(self, msg: bytes, kind: str, src: str | None) -> bytes:
        if src is not None and src != self.init.node:
            self.meters.received[kind] = self.meters.received.get(kind, 0) + len(msg)
            self.meters.messages_received += 1
        return msg

    def _timed(self, fn, *args):
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.meters.busy_cpu_s += time.thread_time() - c0
            self.meters.busy_wall_s += time.perf_counter() - w0

    def _count_forward(self, n: int) -> None:
        self.meters.macs_forward += n * self.init.macs_per_sample[0]

    def _count_backward(self, n: int) -> None:
        self.meters.macs_backward += n * self.init.macs_per_sample[1]
        self.meters.samples += n
        self.meters.steps += 1

    # ----- one training step, in pieces -----
    def start(self, epoch: int, step: int) -> bytes | None:
        """First block: forward a batch of the shard. Returns the activation message for the next
        instance (and the exit instance), or None when this block is the whole network."""
        return self._timed(self._start, epoch, step)

    def _start(self, epoch: int, step: int) -> bytes | None:
        order = self.init.orders[epoch]
        pos = order[step * self.batch : (step + 1) * self.batch]
        x, y = self.init.x[pos], self.init.y[pos]
        out, exit_logits = self.block.forward(x)
        self._count_forward(len(y))
        if self.block.last:
            d_out, d_exit = self._losses(out, exit_logits, y)
            self.block.backward(d_out, d_exit)
            self._count_backward(len(y))
            return None
        self._pending.append((y, self._exit_grad(exit_logits, y)))
        msg = wire.encode(out, self.init.wire, y)
        self._send(msg, "activations", self.init.next_node)
        if self.init.exit_node is not None:
            self._send(msg, "activations", self.init.exit_node)
        return msg

    def middle(self, msg: bytes, src: str) -> bytes:
        """A block between others: forward the incoming activation, pass it on."""
        return self._timed(self._middle, msg, src)

    def _middle(self, msg: bytes, src: str) -> bytes:
        x, y = wire.decode(self._recv(msg, "activations", src))
        out, exit_logits = self.block.forward(x)
        self._count_forward(len(y))
        self._pending.append((y, self._exit_grad(exit_logits, y)))
        return self._send(wire.encode(out, self.init.wire, y), "activations", self.init.next_node)

    def finish(self, msg: bytes, src: str) -> bytes:
        """Last block or exit-only block: forward, loss, backward, update; the gradient of the input."""
        return self._timed(self._finish, msg, src)

    def _finish(self, msg: bytes, src: str) -> bytes:
        x, y = wire.decode(self._recv(msg, "activations", src))
        out, exit_logits = self.block.forward(x)
        self._count_forward(len(y))
        d_out, d_exit = self._losses(out if self.block.last else None, exit_logits, y)
        d_in = self.block.backward(d_out, d_exit)
        self._count_backward(len(y))
        return self._send(wire.encode(d_in, self.init.wire), "gradients", src)

    def backward(
        self,
        g_next: bytes,
        g_exit: bytes | None,
        src_next: str,
        src_exit: str | None,
        prev: str | None = None,
    ) -> bytes | None:
        """A block with a successor: backpropagate the successor's (and the exit's) gradient, update;
        a middle block returns the gradient for its predecessor (on node `prev`)."""
        return self._timed(self._backward, g_next, g_exit, src_next, src_exit, prev)

    def _backward(self, g_next, g_exit, src_next, src_exit, prev):
        d_out, _ = wire.decode(self._recv(g_next, "gradients", src_next))
        if g_exit is not None:
            d_split, _ = wire.decode(self._recv(g_exit, "gradients", src_exit))
            d_out = d_out + d_split  # the split activation feeds both: the sum of both gradients
        y, d_exit = self._pending.pop(0)
        d_in = self.block.backward(d_out, d_exit)
        self._count_backward(len(y))
        if self.block.first:
            return None
        return self._send(wire.encode(d_in, self.init.wire), "gradients", prev)

    def _exit_grad(self, exit_logits: np.ndarray | None, y: np.ndarray) -> np.ndarray | None:
        """The exit loss where the exit lives inside a block that also sends its output on."""
        if exit_logits is None:
            return None
        return self._losses(None, exit_logits, y)[1]

    def _losses(self, out, exit_logits, y) -> tuple[np.ndarray | None, np.ndarray | None]:
        d_out = d_exit = None
        m = self.meters
        if out is not None:
            loss, d_out = softmax_xent(out, y, self.w_final)
            m.loss_final += loss
        if exit_logits is not None:
            loss, d_exit = softmax_xent(exit_logits, y, self.w_exit)
            m.loss_exit += loss
        m.loss_batches += 1
        return d_out, d_exit

    # ----- replicas: averaging and relaying -----
    def _state_arrays(self, with_opt: bool) -> list[np.ndarray]:
        params = self.block.params()
        arrays = list(self.block.packed_weights().values())
        if with_opt:
            opt = self.block.optimizer
            for name in params:
                arrays += [self._pack(name, s) for s in opt.slots[name]]
            arrays.append(np.array([opt.iterations], dtype=np.float32))
        return arrays

    def _pack(self, name: str, dense: np.ndarray) -> np.ndarray:
        """A dense junction-shaped array in packed [N_right, d_in] order (only real edges travel)."""
        layer = name.split("/")[0]
        if not name.endswith("/kernel") or not layer.startswith("junction_"):
            return dense
        idx = self.init.conns[int(layer.split("_")[1]) - 1].idx
        return dense[idx, np.arange(idx.shape[0])[:, None]]

    def get_state(self, with_opt: bool, dst: str | None) -> bytes:
        msg = self._timed(lambda: wire.encode_arrays(self._state_arrays(with_opt)))
        return self._send(msg, "weights", dst)

    def set_state(self, msg: bytes, with_opt: bool, src: str | None) -> None:
        self._timed(self._set_state, self._recv(msg, "weights", src), with_opt)

    def _set_state(self, msg: bytes, with_opt: bool) -> None:
        current = self._state_arrays(with_opt)
        arrays = wire.decode_arrays(msg, [a.shape for a in current])
        params = self.block.params()
        names = list(params)
        packed = dict(zip(self.block.packed_weights(), arrays[: len(names)], strict=True))
        dense = _unpack_weights(self.block, packed)
        self.block.set_params(dense)
        if with_opt:
            opt, pos = self.block.optimizer, len(names)
            for name in names:
                for slot in opt.slots[name]:
                    _assign_packed(self.init.conns, name, slot, arrays[pos])
                    pos += 1
            opt.iterations = int(arrays[pos][0])

    # ----- checkpoints, meters -----
    def snapshot(self) -> dict:
        return {
            "params": {k: v.copy() for k, v in self.block.params().items()},
            "optimizer": self.block.optimizer.state(),
        }

    def restore(self, snap: dict) -> None:
        self.block.set_params(snap["params"])
        self.block.optimizer.load_state(snap["optimizer"])
        self._pending.clear()

    def packed_weights(self) -> dict[str, np.ndarray]:
        return self.block.packed_weights()

    def get_meters(self) -> dict:
        return self.meters.as_dict()

    def set_meters(self, values: dict) -> None:
        self.meters = Meters(**values)

    def pid(self) -> int:
        return os.getpid()


def _assign_packed(conns: list[Connectivity], name: str, dense: np.ndarray, packed: np.ndarray) -> None:
    layer = name.split("/")[0]
    if name.endswith("/kernel") and layer.startswith("junction_"):
        idx = conns[int(layer.split("_")[1]) - 1].idx
        dense[idx, np.arange(idx.shape[0])[:, None]] = packed
    else:
        dense[...] = packed


def _unpack_weights(block: Block, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Packed bundle-style weights -> the block's dense parameters (zeros off the mask)."""
    out = {}
    for name, current in block.params().items():
        layer, kind = name.split("/")
        if layer.startswith("junction_"):
            src = packed[f"{layer}/w"] if kind == "kernel" else packed[f"{layer}/b"]
            arr = np.zeros_like(current)
            _assign_packed(block.conns, name, arr, src)
            out[name] = arr
        else:
            out[name] = packed[name]
    return out


def average_states(msgs: list[bytes], weights: list[float]) -> bytes:
    """Sample-weighted mean of replica weight messages (FedAvg); equal replicas give back the same bits."""
    n_values = (len(msgs[0]) - wire.HEADER.size) // 4
    total = sum(weights)
    acc = np.zeros(n_values, dtype=np.float32)
    for msg, w in zip(msgs, weights, strict=True):
        acc += np.frombuffer(msg, dtype=np.float32, offset=wire.HEADER.size) * np.float32(w / total)
    return msgs[0][: wire.HEADER.size] + acc.tobytes()


class Aggregator:
    """Averages replica weights on the aggregator node; counts what it receives and sends back."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.meters = Meters()

    def average(self, srcs: list[str], weights: list[float], *msgs: bytes) -> bytes:
        c0, w0 = time.thread_time(), time.perf_counter()
        for msg, src in zip(msgs, srcs, strict=True):
            if src != self.node:
                self.meters.received["weights"] = self.meters.received.get("weights", 0) + len(msg)
                self.meters.messages_received += 1
        out = average_states(list(msgs), weights)
        for src in srcs:  # the mean goes back to every replica
            if src != self.node:
                self.meters.sent["weights"] = self.meters.sent.get("weights", 0) + len(out)
                self.meters.messages_sent += 1
        self.meters.busy_cpu_s += time.thread_time() - c0
        self.meters.busy_wall_s += time.perf_counter() - w0
        return out

    def get_meters(self) -> dict:
        return self.meters.as_dict()

    def set_meters(self, values: dict) -> None:
        self.meters = Meters(**values)

    def pid(self) -> int:
        return os.getpid()


def chain_step(
    chain: list[str], exit_to: dict[str, str | None], node: dict[str, str], epoch: int, step: int, call
):
    """One training step of a chain, as calls `call(instance, method, *args)`.

    The same sequence runs in-process (calibration: `call` invokes the method) and on Ray (`call`
    submits an actor task and returns its ObjectRef, so the whole step is queued without waiting).
    Returns what the first instance's last call returns (None or a reference to wait on).
    """
    outs = [call(chain[0], "start", epoch, step)]
    grads_exit: dict[str, object] = {}
    last_grad = None
    for i, name in enumerate(chain):
        if i > 0:
            prev = node[chain[i - 1]]
            if i == len(chain) - 1:
                last_grad = call(name, "finish", outs[-1], prev)
            else:
                outs.append(call(name, "middle", outs[-1], prev))
        if exit_to.get(name):
            grads_exit[name] = call(exit_to[name], "finish", outs[i], node[name])
    if len(chain) == 1:
        return outs[0]
    g = last_grad
    for i in range(len(chain) - 2, -1, -1):
        name = chain[i]
        ex = exit_to.get(name)
        g = call(
            name,
            "backward",
            g,
            grads_exit.get(name),
            node[chain[i + 1]],
            node[ex] if ex else None,
            node[chain[i - 1]] if i > 0 else None,
        )
    return g
