"""Per split point, without training: parameters, MACs, predicted flash/RAM, wire bytes, device time.

Memory is `toolchain.mcu.memory.predict_memory` itself, run on the IR's structure for that split point
(`toolchain.ir.head.head_shape`: the real connectivity of the project, so the layer kinds, index-table
types and permutation buffers are what the C export would produce; sizes depend on nothing else). For
the trained split point this equals the export's own prediction (tests/test_plan.py checks it).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.config import ProjectConfig, validate
from toolchain.dtypes import DType
from toolchain.edge.client import encode_request
from toolchain.errors import ToolchainError
from toolchain.ir.head import head_shape
from toolchain.ir.layers import classify
from toolchain.mcu.memory import predict_memory
from toolchain.plan.costs import Costs
from toolchain.sparsity import (
    Connectivity,
    admissible_out_degrees,
    build_connectivity,
    count_params,
    junction_shapes,
)


def memory_summary(mem: dict[str, Any]) -> dict[str, int]:
    """Flash and RAM of head + exit from a predict_memory() dict (the C export's layout)."""
    ram = mem["ram"]
    caller = sum(ram["caller_buffers"].values())
    return {
        "flash": mem["flash"]["model_data_aligned"],
        "ram_static": ram["static"],
        "ram_caller": caller,
        "stack": ram["stack_estimate"],
        "ram": ram["static"] + caller + ram["stack_estimate"],
    }


def predicted_memory(cfg: ProjectConfig, conns: list[Connectivity], split: int, dtype: str) -> dict[str, Any]:
    return predict_memory(head_shape(cfg, conns, split, DType(dtype)))


def wire_bytes(n_values: int, dtype: str, costs: Costs) -> int:
    """Bytes on the wire for one split tensor: values + the framing of the chosen wire format."""
    payload = n_values * DType(dtype).nbytes
    p = costs.wire_params
    if costs.wire == "serial":
        per_frame = int(p["max_payload_bytes"].value)
        frames = max(1, math.ceil(payload / per_frame))
        return payload + frames * int(p["frame_overhead_bytes"].value)
    # The v2 body exactly as the edge runtime builds it; the HTTP head as measured.
    body, _ = encode_request("split", np.zeros((1, n_values)), DType(dtype).wire, binary=True)
    return len(body) + int(p["http_head_bytes"].value)


def kind_for_rate(conn: Connectivity) -> str:
    """The instructions-per-MAC class of a junction: table, affine, cyclic or dense."""
    kind, _ = classify(conn)
    return "cyclic" if kind == "affine" and conn.pattern == "cyclic" else kind


def estimate_instructions(
    cfg: ProjectConfig, conns: list[Connectivity], split: int, dtype: str, costs: Costs
) -> float:
    """Σ MACs × instructions/MAC of the layer's kind + the fixed part per inference."""
    rates = costs.per_mac[dtype]
    total = rates["per_inference"].value
    for conn in conns[:split]:
        total += conn.shape.edges * rates[kind_for_rate(conn)].value
    return total + exit_macs(cfg, split) * rates["dense"].value


def exit_macs(cfg: ProjectConfig, split: int) -> int:
    sizes = [cfg.network.neurons[split], *cfg.exit.hidden, cfg.n_classes]
    return sum(a * b for a, b in itertools.pairwise(sizes))


def seconds(instructions: float, costs: Costs) -> float:
    if costs.clock_hz is None:
        raise ToolchainError(
            f"target {costs.target} has no [cpu] clock_hz to turn instructions into time",
            hint="pass --clock-mhz, or choose a microcontroller target (see `toolchain targets`)",
        )
    return instructions / (costs.ipc.value * costs.clock_hz.value)


@dataclass(frozen=True)
class Overhead:
    """Firmware flash/RAM outside the model (code, protocol buffers), measured in a build."""

    flash: int
    ram: int
    source: str


def fits(mem: dict[str, int], costs: Costs, overhead: Overhead | None) -> dict[str, Any] | None:
    """Flash and RAM needed against the target's budget; the stack reserve counts once."""
    b = costs.budget
    if b is None:
        return None
    extra_f, extra_r = (overhead.flash, overhead.ram) if overhead else (0, 0)
    flash = mem["flash"] + extra_f
    ram = mem["ram_static"] + mem["ram_caller"] + max(b["stack"], mem["stack"]) + extra_r
    return {
        "flash_needed": flash,
        "ram_needed": ram,
        "flash_budget": b["flash"],
        "ram_budget": b["ram"],
        "fits": flash <= b["flash"] and ram <= b["ram"],
    }


def split_points(
    cfg: ProjectConfig,
    costs: Costs,
    dtype: str = "int8",
    overhead: Overhead | None = None,
    conns: list[Connectivity] | None = None,
) -> list[dict[str, Any]]:
    """One row per hidden layer s = 1 .. L-1: the head is junctions 1..s plus the exit branch."""
    net = cfg.network
    conns = conns or build_connectivity(net.neurons, net.out_degrees, net.pattern, net.seed)
    shapes = junction_shapes(net.neurons, net.out_degrees)
    rows = []
    for s in range(1, len(net.neurons) - 1):
        pc = count_params(net.neurons, net.out_degrees, s, cfg.exit.hidden)
        mem = {d: memory_summary(predicted_memory(cfg, conns, s, d)) for d in DType}
        width = net.neurons[s]
        nbytes = wire_bytes(width, dtype, costs)
        instr = estimate_instructions(cfg, conns, s, dtype, costs)
        t_dev = seconds(instr, costs)
        t_off = 8 * nbytes / costs.bandwidth_bps.value + (costs.rtt_ms.value + costs.tail_ms.value) / 1e3
        power = costs.power_mw.value if costs.power_mw else None
        e_bit = costs.energy_per_bit_nj.value if costs.energy_per_bit_nj else None
        rows.append(
            {
                "split": s,
                "split_width": width,
                "params": pc.as_dict(),
                "macs": {
                    "head": sum(x.edges for x in shapes[:s]),
                    "exit": exit_macs(cfg, s),
                    "tail": sum(x.edges for x in shapes[s:]),
                },
                "memory": mem,
                "wire_bytes": nbytes,
                "instructions_estimate": instr,
                "device_ms": t_dev * 1e3,
                "offload_ms": t_off * 1e3,
                "device_energy_uj": None if power is None else power * t_dev * 1e3,
                "tx_energy_uj": None if e_bit is None else 8 * nbytes * e_bit / 1e3,
                "fit": fits(mem[dtype], costs, overhead),
            }
        )
    return rows


def degree_sweep(cfg: ProjectConfig, dtype: str = "int8") -> list[dict[str, Any]]:
    """Every admissible out-degree of the first junction: head MACs, parameters and flash."""
    net = cfg.network
    rows = []
    for d in admissible_out_degrees(net.neurons[0], net.neurons[1]):
        c = copy.deepcopy(cfg)
        c.network.out_degrees = [d, *net.out_degrees[1:]]
        validate(c)
        conns = build_connectivity(c.network.neurons, c.network.out_degrees, net.pattern, net.seed)
        mem = memory_summary(predicted_memory(c, conns, net.split_after, dtype))
        shapes = junction_shapes(c.network.neurons, c.network.out_degrees)
        rows.append(
            {
                "d_out": d,
                "d_in": shapes[0].d_in,
                "density": shapes[0].density,
                "head_macs": sum(x.edges for x in shapes[: net.split_after]),
                "head_params": sum(x.params for x in shapes[: net.split_after]),
                "flash": mem["flash"],
                "ram": mem["ram"],
            }
        )
    return rows
