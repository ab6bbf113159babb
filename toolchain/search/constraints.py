"""Device constraints of a search: a candidate that breaks one is never trained.

The int8 head + exit must fit the target's flash and RAM as the C export's own memory predictor
sizes it (`toolchain.mcu.memory.predict_memory` on `toolchain.ir.head.head_shape`, through the
planner's `memory_summary` and `fits`), and stay within optional limits on device instructions per
inference and bytes per offloaded sample: the same figures `toolchain plan` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolchain.config import ProjectConfig
from toolchain.dtypes import DType
from toolchain.errors import ToolchainError
from toolchain.plan.core import DEFAULT_TARGET
from toolchain.plan.costs import Costs, Overrides, resolve
from toolchain.plan.splits import estimate_instructions, fits, memory_summary, predicted_memory, wire_bytes
from toolchain.sparsity import build_connectivity

DTYPE = DType.INT8  # the deployed head: int8 C arrays


@dataclass(frozen=True)
class DeviceCost:
    flash: int  # bytes: model data + descriptors (aligned), as the export lays them out
    ram: int  # bytes: static buffers + caller buffers + the stack (the target's reserve if larger)
    instructions: float  # head + exit per inference, from the planner's per-MAC figures
    offload_bytes: int  # one split activation on the wire, framing included
    reason: str | None  # why the candidate is rejected; None = admissible

    def as_dict(self) -> dict[str, Any]:
        return {
            "flash": self.flash,
            "ram": self.ram,
            "instructions": self.instructions,
            "offload_bytes": self.offload_bytes,
        }


@dataclass
class Constraints:
    target: str
    costs: Costs
    max_instructions: float | None = None
    max_offload_bytes: int | None = None
    _cache: dict[tuple, DeviceCost] = field(default_factory=dict, repr=False)

    def check(self, cfg: ProjectConfig) -> DeviceCost:
        net = cfg.network
        key = (tuple(net.neurons), tuple(net.out_degrees), net.pattern, net.seed, net.split_after)
        key += (tuple(cfg.exit.hidden),)
        if key not in self._cache:
            self._cache[key] = self._check(cfg)
        return self._cache[key]

    def _check(self, cfg: ProjectConfig) -> DeviceCost:
        net = cfg.network
        conns = build_connectivity(net.neurons, net.out_degrees, net.pattern, net.seed)
        mem = memory_summary(predicted_memory(cfg, conns, net.split_after, DTYPE))
        fit = fits(mem, self.costs, None)
        instr = estimate_instructions(cfg, conns, net.split_after, DTYPE, self.costs)
        nbytes = wire_bytes(cfg.split_width, DTYPE, self.costs)
        reasons = []
        if fit is not None and fit["flash_needed"] > fit["flash_budget"]:
            reasons.append(f"flash {fit['flash_needed']:,} B > {fit['flash_budget']:,} B of {self.target}")
        if fit is not None and fit["ram_needed"] > fit["ram_budget"]:
            reasons.append(f"RAM {fit['ram_needed']:,} B > {fit['ram_budget']:,} B of {self.target}")
        if self.max_instructions is not None and instr > self.max_instructions:
            reasons.append(
                f"{instr:,.0f} instructions/inference > max_instructions {self.max_instructions:,.0f}"
            )
        if self.max_offload_bytes is not None and nbytes > self.max_offload_bytes:
            reasons.append(f"{nbytes} B per offloaded sample > max_offload_bytes {self.max_offload_bytes}")
        ram = fit["ram_needed"] if fit is not None else mem["ram"]
        return DeviceCost(mem["flash"], ram, instr, nbytes, "; ".join(reasons) or None)


def make_constraints(
    target: str | None, link: str, max_instructions: float | None, max_offload_bytes: int | None
) -> Constraints:
    """Constraints for a target (default: the planner's, stm32f4) with a flash/RAM budget."""
    name = target or DEFAULT_TARGET
    costs = resolve(name, Overrides(link=link))
    if costs.budget is None:
        raise ToolchainError(
            f"target {name} has no [memory] flash and ram budget to check candidates against",
            hint="choose a microcontroller target (`toolchain targets`), e.g. --target stm32f4",
        )
    return Constraints(name, costs, max_instructions, max_offload_bytes)
