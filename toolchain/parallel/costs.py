"""Compute, communication and energy per node: predicted from the schedule, or from measured tallies.

Both paths produce per-instance *tallies* (MACs forward/backward, bytes sent/received by kind,
messages, host busy seconds) and then the same `node_costs` turns them into per-node figures:

- MACs: analytic sparse MACs per sample (junction edges, exit dense layers; backward = weight
  gradients + input gradients, none for the data input) times the samples processed.
- node time: `macs_per_s` profiles: (forward + backward MACs) / rate, estimated from the profile;
  `slowdown` profiles: host-measured busy time x slowdown. The host busy time is always reported beside.
- energy = node time x active power + (bytes sent + received) x 8 x energy per bit.
- transfer time (estimated): bytes x 8 / up- or downlink bandwidth + half an RTT per message sent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from toolchain.config import ProjectConfig
from toolchain.parallel import wire
from toolchain.parallel.engine import BlockSpec
from toolchain.parallel.placement import Placement
from toolchain.parallel.schedule import Schedule
from toolchain.sparsity import junction_shapes

KINDS = ("activations", "gradients", "weights")


def block_macs(cfg: ProjectConfig, spec: BlockSpec) -> tuple[int, int]:
    """(forward, backward) MACs per sample of a block, counting only the sparse edges."""
    shapes = junction_shapes(cfg.network.neurons, cfg.network.out_degrees)
    fwd = bwd = 0
    for j in spec.junctions:
        e = shapes[j].edges
        fwd += e
        bwd += e if j == 0 else 2 * e  # weight gradients; input gradients unless the input is data
    if spec.exit:
        sizes = [cfg.split_width, *cfg.exit.hidden, cfg.n_classes]
        for a, b in itertools.pairwise(sizes):
            fwd += a * b
            bwd += 2 * a * b
    return fwd, bwd


def block_values(cfg: ProjectConfig, spec: BlockSpec) -> int:
    """Trainable values of a block in packed form (what a weights message carries)."""
    shapes = junction_shapes(cfg.network.neurons, cfg.network.out_degrees)
    n = sum(shapes[j].edges + shapes[j].n_right for j in spec.junctions)
    if spec.exit:
        sizes = [cfg.split_width, *cfg.exit.hidden, cfg.n_classes]
        n += sum(a * b + b for a, b in itertools.pairwise(sizes))
    return n


def state_values(cfg: ProjectConfig, spec: BlockSpec, with_opt: bool) -> int:
    n = block_values(cfg, spec)
    slots = 2 if cfg.training.optimizer == "adam" else 1
    return n * (1 + slots) + 1 if with_opt else n


@dataclass
class Tally:
    macs_forward: int = 0
    macs_backward: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    messages_sent: int = 0
    messages_received: int = 0
    busy_cpu_s: float = 0.0
    busy_wall_s: float | None = None
    steps: int = 0
    samples: int = 0
    sync_calls: int = 0  # weights read or written (averaging, relaying), local or not

    def add_message(self, kind: str, size: int, out: bool) -> None:
        box = self.sent if out else self.received
        box[kind] = box.get(kind, 0) + size
        if out:
            self.messages_sent += 1
        else:
            self.messages_received += 1


def _transfer(tallies: dict[str, Tally], nodes: dict[str, str], a: str, b: str, kind: str, size: int) -> None:
    if nodes[a] != nodes[b]:
        tallies[a].add_message(kind, size, out=True)
        tallies[b].add_message(kind, size, out=False)


def predict_tallies(
    cfg: ProjectConfig,
    placement: Placement,
    sched: Schedule,
    host: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Tally]:
    """Walk the schedule: what every instance (and the aggregator) will compute and send.

    `host` (from `toolchain.parallel.calibrate`) gives per instance (seconds per step, seconds per
    weights read/write) measured on this host; with it the host busy time is predicted too.
    """
    insts = placement.instances
    nodes = {n: i.node for n, i in insts.items()}
    agg = placement.replicas.aggregator
    if agg is not None:
        nodes["aggregator"] = agg
    tallies = {n: Tally() for n in nodes}
    macs = {n: block_macs(cfg, i.spec) for n, i in insts.items()}
    widths = {
        n: cfg.network.neurons[i.spec.junctions[-1] + 1] if i.spec.junctions else 0 for n, i in insts.items()
    }
    for rnd in sched.rounds:
        for w in rnd.work:
            chain = sched.chains[w.chain]
            members = [*chain, *(insts[n].exit_to for n in chain if insts[n].exit_to)]
            for step in range(w.start, w.stop):
                rows = sched.batch_rows(w.chain, step, placement)
                for n in members:
                    t = tallies[n]
                    t.macs_forward += rows * macs[n][0]
                    t.macs_backward += rows * macs[n][1]
                    t.steps += 1
                    t.samples += rows
                for a, b in [
                    *itertools.pairwise(chain),
                    *((n, insts[n].exit_to) for n in chain if insts[n].exit_to),
                ]:
                    _transfer(
                        tallies,
                        nodes,
                        a,
                        b,
                        "activations",
                        wire.message_bytes(rows, widths[a], placement.wire, True),
                    )
                    _transfer(
                        tallies,
                        nodes,
                        b,
                        a,
                        "gradients",
                        wire.message_bytes(rows, widths[a], placement.wire, False),
                    )
        _predict_sync(cfg, placement, sched, rnd, tallies, nodes)
    if host is not None:
        for n, t in tallies.items():
            step_s, sync_s = host.get(n, (0.0, 0.0))
            t.busy_cpu_s = t.steps * step_s + t.sync_calls * sync_s
    return tallies


def _predict_sync(cfg, placement, sched, rnd, tallies, nodes) -> None:
    insts = placement.instances
    groups = [g for g in placement.groups().values() if len(g) > 1]
    if placement.replicas.mode == "average":
        active = {
            n
            for w in rnd.work
            for c in [sched.chains[w.chain]]
            for n in [*c, *(insts[m].exit_to for m in c if insts[m].exit_to)]
        }
        for group in groups:
            members = [n for n in group if n in active]
            if len(members) < 2:
                continue
            size = wire.arrays_bytes(state_values(cfg, insts[group[0]].spec, False))
            for n in members:
                _transfer(tallies, nodes, n, "aggregator", "weights", size)
                _transfer(tallies, nodes, "aggregator", n, "weights", size)
                tallies[n].sync_calls += 2
                tallies["aggregator"].sync_calls += 1
        return
    i = sched.rounds.index(rnd)
    if i + 1 >= len(sched.rounds):
        return
    a_chain, b_chain = sched.chains[rnd.work[0].chain], sched.chains[sched.rounds[i + 1].work[0].chain]
    for group in groups:
        a = next((n for n in group if n in _with_exits(a_chain, insts)), None)
        b = next((n for n in group if n in _with_exits(b_chain, insts)), None)
        if a is not None and b is not None and a != b:
            _transfer(
                tallies, nodes, a, b, "weights", wire.arrays_bytes(state_values(cfg, insts[a].spec, True))
            )
            tallies[a].sync_calls += 1
            tallies[b].sync_calls += 1


def _with_exits(chain: list[str], insts) -> list[str]:
    return [*chain, *(insts[n].exit_to for n in chain if insts[n].exit_to)]


def node_costs(placement: Placement, tallies: dict[str, Tally], busy_status: str) -> dict[str, Any]:
    """Per-node and total figures, every one labelled with how it was obtained."""
    nodes: dict[str, dict[str, Any]] = {}
    owner = {n: i.node for n, i in placement.instances.items()}
    if placement.replicas.aggregator:
        owner["aggregator"] = placement.replicas.aggregator
    for name, node in placement.nodes.items():
        mine = [tallies[n] for n in tallies if owner.get(n) == name]
        p = node.profile
        macs_f, macs_b = sum(t.macs_forward for t in mine), sum(t.macs_backward for t in mine)
        busy = sum(t.busy_cpu_s for t in mine)
        sent = {k: sum(t.sent.get(k, 0) for t in mine) for k in KINDS}
        recv = {k: sum(t.received.get(k, 0) for t in mine) for k in KINDS}
        msgs = sum(t.messages_sent for t in mine)
        if p.macs_per_s is not None:
            node_time = (macs_f + macs_b) / p.macs_per_s.value
            time_how = (
                f"estimated: MACs / {p.macs_per_s.value:.3g} MAC/s ({p.name} profile, {p.macs_per_s.status})"
            )
        else:
            node_time = busy * p.slowdown.value
            time_how = f"{busy_status} host busy time x slowdown {p.slowdown.value:g} ({p.name} profile)"
        bits = 8 * (sum(sent.values()) + sum(recv.values()))
        e_compute = node_time * p.active_power_w.value
        e_comm = bits * p.energy_per_bit_nj.value * 1e-9
        transfer = (
            8 * sum(sent.values()) / p.uplink_bps.value
            + 8 * sum(recv.values()) / p.downlink_bps.value
            + msgs * p.rtt_ms.value / 2e3
        )
        nodes[name] = {
            "profile": p.name,
            "kind": p.kind,
            "macs_forward": macs_f,
            "macs_backward": macs_b,
            "host_busy_s": busy,
            "host_busy_status": busy_status,
            "node_time_s": node_time,
            "node_time_status": time_how,
            "bytes_sent": sent,
            "bytes_received": recv,
            "messages_sent": msgs,
            "energy_compute_j": e_compute,
            "energy_comm_j": e_comm,
            "energy_j": e_compute + e_comm,
            "energy_status": f"estimated: node time x {p.active_power_w.value:g} W "
            f"({p.active_power_w.status}) + bits x {p.energy_per_bit_nj.value:g} nJ/bit "
            f"({p.energy_per_bit_nj.status})",
            "transfer_s": transfer,
            "transfer_status": "estimated: bytes x 8 / profile bandwidth + half an RTT per message sent",
        }
    total = {
        key: sum(n[key] for n in nodes.values())
        for key in (
            "macs_forward",
            "macs_backward",
            "host_busy_s",
            "node_time_s",
            "energy_j",
            "energy_comm_j",
        )
    }
    total["bytes"] = sum(sum(n["bytes_sent"].values()) for n in nodes.values())
    total["device_energy_j"] = sum(n["energy_j"] for n in nodes.values() if n["kind"] == "device")
    return {"nodes": nodes, "total": total}


def profile_sources(placement: Placement) -> list[dict[str, Any]]:
    """Every profile number used, with unit, status and source (reports print this)."""
    units = {
        "macs_per_s": "MAC/s",
        "slowdown": "x",
        "active_power_w": "W",
        "uplink_bps": "bit/s",
        "downlink_bps": "bit/s",
        "rtt_ms": "ms",
        "energy_per_bit_nj": "nJ/bit",
    }
    seen, rows = set(), []
    for node in placement.nodes.values():
        p = node.profile
        if p.name in seen:
            continue
        seen.add(p.name)
        for key, s in p.sourced_items().items():
            rows.append(
                {
                    "profile": p.name,
                    "name": key,
                    "value": s.value,
                    "unit": units[key],
                    "status": s.status,
                    "source": s.source,
                }
            )
    return rows
