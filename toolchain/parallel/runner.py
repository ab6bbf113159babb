"""Training under a placement on Ray: one actor per block instance, rounds, replica sync, recovery.

The driver queues each round's steps as chains of actor calls (the activation and gradient messages
pass between actors as ObjectRefs, never through the driver), waits for the round, syncs replica
groups (averaging at the aggregator, or relaying state), and snapshots every actor. When an actor
dies, every actor is recreated from the last snapshot and the round is run again; the data order is
fixed, so the result equals an uninterrupted run. After `max_restarts` it stops with an error and
writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.config import ProjectConfig
from toolchain.data import Splits
from toolchain.errors import ToolchainError
from toolchain.parallel.cluster import actor_errors, actor_options, workers_single_threaded
from toolchain.parallel.costs import block_macs
from toolchain.parallel.engine import Block, BlockSpec, OptimizerSpec
from toolchain.parallel.orders import epoch_orders
from toolchain.parallel.placement import Placement
from toolchain.parallel.schedule import Round, Schedule
from toolchain.parallel.worker import Aggregator, BlockWorker, WorkerInit, chain_step
from toolchain.progress import Progress, log
from toolchain.sparsity import Connectivity


@dataclass
class RunOutput:
    weights: dict[str, np.ndarray]  # form-neutral, the trained model
    meters: dict[str, dict[str, Any]]  # instance (and "aggregator") -> measured meters
    history: list[dict[str, Any]]  # per epoch
    wall_s: float
    restarts: int


class Run:
    """One training run on an initialised Ray."""

    def __init__(
        self,
        cfg: ProjectConfig,
        conns: list[Connectivity],
        placement: Placement,
        sched: Schedule,
        data: Splits,
        weights: dict[str, np.ndarray],
        order_fn=epoch_orders,
    ) -> None:
        self.cfg, self.conns, self.placement, self.sched, self.data = cfg, conns, placement, sched, data
        self.weights0 = weights
        self.order_fn = order_fn  # (n, global seed, shard seed, epochs) -> per-epoch orders
        self.insts = placement.instances
        self.node = {n: i.node for n, i in self.insts.items()}
        self.exit_to = {n: i.exit_to for n, i in self.insts.items()}
        self.inits = self._inits()
        self.actors: dict[str, Any] = {}

    # ----- actors -----
    def _inits(self) -> dict[str, WorkerInit]:
        cfg, sched, t = self.cfg, self.sched, self.cfg.training
        steps = sched.instance_steps(self.placement)
        orders: dict[int, list[np.ndarray]] = {}
        inits = {}
        for name, inst in self.insts.items():
            x = y = o = None
            if inst.shard is not None:
                a, b = sched.shard_ranges[inst.shard]
                x, y = self.data.x_train[a:b], self.data.y_train[a:b]
                if inst.shard not in orders:
                    orders[inst.shard] = self.order_fn(b - a, t.seed, t.seed + inst.shard, sched.epochs)
                o = orders[inst.shard]
            inits[name] = WorkerInit(
                name,
                inst.node,
                cfg,
                self.conns,
                inst.spec,
                self.weights0,
                steps[name],
                self.placement.wire,
                self.node.get(inst.next) if inst.next else None,
                self.node.get(inst.exit_to) if inst.exit_to else None,
                x,
                y,
                o,
                block_macs(cfg, inst.spec),
            )
        return inits

    def start_actors(self) -> None:
        import ray

        worker_cls, agg_cls = ray.remote(BlockWorker), ray.remote(Aggregator)
        inherit = workers_single_threaded()
        for name, init in self.inits.items():
            opts = actor_options(self.placement.nodes[init.node].ray_resources, inherit)
            self.actors[name] = worker_cls.options(**opts).remote(init)
        agg = self.placement.replicas.aggregator
        if agg is not None:
            opts = actor_options(self.placement.nodes[agg].ray_resources, inherit)
            self.actors["aggregator"] = agg_cls.options(**opts).remote(agg)
        self.pids = dict(
            zip(self.actors, ray.get([a.pid.remote() for a in self.actors.values()]), strict=True)
        )

    def stop_actors(self) -> None:
        import ray

        for actor in self.actors.values():
            ray.kill(actor, no_restart=True)
        self.actors = {}

    def _call(self, name: str, method: str, *args):
        return getattr(self.actors[name], method).remote(*args)

    # ----- rounds -----
    def run_round(self, rnd: Round, index: int, timeout_s: float, sync: bool = True) -> None:
        import ray

        done = []
        longest = max(w.stop - w.start for w in rnd.work)
        for s in range(longest):  # interleaved: chains run in parallel, shared blocks see a fixed order
            for w in rnd.work:
                if w.start + s < w.stop:
                    done.append(
                        chain_step(
                            self.sched.chains[w.chain],
                            self.exit_to,
                            self.node,
                            w.epoch,
                            w.start + s,
                            self._call,
                        )
                    )
        ray.get(done, timeout=timeout_s)
        if sync:
            ray.get(self._sync(rnd, index), timeout=timeout_s)

    def _members(self, chain: int) -> list[str]:
        names = self.sched.chains[chain]
        return [*names, *(self.exit_to[n] for n in names if self.exit_to[n])]

    def _sync(self, rnd: Round, index: int) -> list:
        groups = [g for g in self.placement.groups().values() if len(g) > 1]
        refs: list = []
        if self.placement.replicas.mode == "average":
            agg_node = self.placement.replicas.aggregator
            samples: dict[str, int] = {}
            for w in rnd.work:
                rows = sum(self.sched.batch_rows(w.chain, s, self.placement) for s in range(w.start, w.stop))
                for n in self._members(w.chain):
                    samples[n] = samples.get(n, 0) + rows
            for group in groups:
                members = [n for n in group if n in samples]
                if len(members) < 2:
                    continue
                msgs = [self._call(n, "get_state", False, agg_node) for n in members]
                mean = self._call(
                    "aggregator",
                    "average",
                    [self.node[n] for n in members],
                    [float(samples[n]) for n in members],
                    *msgs,
                )
                refs += [self._call(n, "set_state", mean, False, agg_node) for n in members]
            return refs
        if index + 1 >= len(self.sched.rounds):
            return refs
        a_members = self._members(rnd.work[0].chain)
        b_members = self._members(self.sched.rounds[index + 1].work[0].chain)
        for group in groups:
            a = next((n for n in group if n in a_members), None)
            b = next((n for n in group if n in b_members), None)
            if a is not None and b is not None and a != b:
                msg = self._call(a, "get_state", True, self.node[b])
                refs.append(self._call(b, "set_state", msg, True, self.node[a]))
        return refs

    # ----- state -----
    def snapshot(self) -> dict[str, Any]:
        import ray

        names = list(self.actors)
        metas = ray.get([self.actors[n].get_meters.remote() for n in names])
        snaps = ray.get([self.actors[n].snapshot.remote() for n in names if n != "aggregator"])
        return {
            "meters": dict(zip(names, metas, strict=True)),
            "state": dict(zip([n for n in names if n != "aggregator"], snaps, strict=True)),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        import ray

        refs = [self.actors[n].restore.remote(s) for n, s in snap["state"].items()]
        refs += [self.actors[n].set_meters.remote(m) for n, m in snap["meters"].items()]
        ray.get(refs)

    def model_weights(self, chain: int) -> dict[str, np.ndarray]:
        """The whole network's packed weights, from the instances one chain uses."""
        import ray

        out: dict[str, np.ndarray] = {}
        for part in ray.get([self.actors[n].packed_weights.remote() for n in self._members(chain)]):
            out.update(part)
        return out


def evaluate(cfg: ProjectConfig, conns: list[Connectivity], weights: dict[str, np.ndarray], x, y) -> dict:
    """Validation accuracies of final and exit heads, in NumPy (no TensorFlow in the loop)."""
    spec = BlockSpec(tuple(range(len(conns))), True)
    block = Block(cfg, conns, spec, weights, OptimizerSpec.from_config(cfg, 1))
    out, ex = block.forward(x, keep=False)
    return {
        "val_final_accuracy": float(np.mean(out.argmax(1) == y)),
        "val_exit_accuracy": float(np.mean(ex.argmax(1) == y)),
    }


def run_training(
    run: Run,
    quiet: bool = False,
    max_restarts: int = 2,
    round_timeout_s: float = 900.0,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutput:
    """Run every round of the schedule; returns the trained weights and the measured meters."""
    import ray

    errors = actor_errors()
    t0 = time.perf_counter()
    run.start_actors()
    snap = run.snapshot()
    history: list[dict[str, Any]] = []
    restarts, i = 0, 0
    rounds = run.sched.rounds
    try:
        with Progress(len(rounds), "parallel rounds", quiet=quiet, every=10.0) as bar:
            while i < len(rounds):
                rnd = rounds[i]
                if on_round is not None:
                    on_round({"round": i, "epoch": rnd.epoch, "pids": dict(run.pids)})
                try:
                    run.run_round(rnd, i, round_timeout_s)
                except errors as exc:
                    restarts += 1
                    if restarts > max_restarts:
                        raise ToolchainError(
                            f"a block actor died in round {i + 1} (epoch {rnd.epoch + 1}) and the run was "
                            f"restarted {max_restarts} times already: {type(exc).__name__}",
                            hint="check the Ray logs of the node that lost the actor; no bundle was written",
                        ) from None
                    log(
                        f"an actor died in round {i + 1}: restarting every actor from the last averaged "
                        f"state (restart {restarts}/{max_restarts})",
                        quiet,
                    )
                    run.stop_actors()
                    run.start_actors()
                    run.restore(snap)
                    continue
                except ray.exceptions.GetTimeoutError:
                    raise ToolchainError(
                        f"round {i + 1} made no progress in {round_timeout_s:g} s "
                        "(a node stopped answering?)",
                        hint="check `ray status`; no bundle was written",
                    ) from None
                snap = run.snapshot()
                bar.update(1, epoch=str(rnd.epoch + 1))
                if rnd.last_of_epoch:
                    history.append(_epoch_line(run, rnd, i, snap, t0, quiet))
                    if on_epoch is not None:
                        on_epoch(history[-1])
                i += 1
        chain = rounds[-1].work[-1].chain
        weights = run.model_weights(chain)
        return RunOutput(weights, snap["meters"], history, time.perf_counter() - t0, restarts)
    finally:
        run.stop_actors()


def _epoch_line(run: Run, rnd: Round, i: int, snap: dict, t0: float, quiet: bool) -> dict[str, Any]:
    weights = run.model_weights(rnd.work[-1].chain)
    acc = evaluate(run.cfg, run.conns, weights, run.data.x_val, run.data.y_val)
    meters = snap["meters"]
    losses = [m for m in meters.values() if m.get("loss_batches")]
    final = sum(m["loss_final"] for m in losses) / max(
        1, sum(m["loss_batches"] for m in losses if m["loss_final"])
    )
    sent = sum(sum(m["sent"].values()) for m in meters.values())
    line = {
        "epoch": rnd.epoch + 1,
        "round": i + 1,
        "wall_s": time.perf_counter() - t0,
        "bytes_sent": sent,
        "mean_final_loss_so_far": final,
        **acc,
        "meters": meters,
    }
    log(
        f"parallel epoch {rnd.epoch + 1:>3}/{run.sched.epochs}  val final {acc['val_final_accuracy']:.4f}  "
        f"val exit {acc['val_exit_accuracy']:.4f}  bytes {sent:,}  {line['wall_s']:.1f}s",
        quiet,
    )
    return line
