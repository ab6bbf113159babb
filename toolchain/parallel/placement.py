"""Placements: which instances of which block run on which node, fed by which data shard.

A placement is a TOML file (format in docs/parallel.md, examples in examples/placements/):

    name, description, wire ("fp32" | "fp16" | "int8"), shards (N equal parts, or [[start, stop], ...]
    fractions of the training split), [replicas] (mode "average" | "relay", every = N steps | "epoch",
    aggregator = node), [nodes.NAME] (profile, optional ray_resources), [profile.NAME] (optional
    profiles beside those in targets/plan/nodes.toml) and [[instance]] tables (name, block, node,
    shard, next, exit_to).

A block is "+"-joined parts: head (junctions up to the split), tail (the rest), exit (the exit
branch), full (all of it), or junction_K. Instances of the same block are replicas; they are averaged
(or relayed) as [replicas] says. Every error names the file and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.config import ProjectConfig
from toolchain.errors import ConfigError
from toolchain.parallel.engine import BlockSpec
from toolchain.parallel.profiles import NODES_FILE, NodeProfile, load_profiles, parse_profile, read_toml

WIRES = ("fp32", "fp16", "int8")
SYNC_MODES = ("average", "relay")
TOP_KEYS = ("name", "description", "wire", "shards", "replicas", "nodes", "profile", "instance")
INSTANCE_KEYS = ("name", "block", "node", "shard", "next", "exit_to")


@dataclass(frozen=True)
class Node:
    name: str
    profile: NodeProfile
    ray_resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    name: str
    block: str  # as written, normalised ("head+exit")
    spec: BlockSpec
    node: str
    shard: int | None
    next: str | None
    exit_to: str | None


@dataclass(frozen=True)
class Replicas:
    mode: str  # average | relay
    every: int  # steps; 0 = once per epoch
    aggregator: str | None  # node that averages (average mode)


@dataclass(frozen=True)
class Placement:
    name: str
    description: str
    source: str
    wire: str
    shards: list[tuple[float, float]]
    replicas: Replicas
    nodes: dict[str, Node]
    instances: dict[str, Instance]

    def chains(self) -> list[list[str]]:
        """Per first-block instance, the instances its activations pass through, in order."""
        out = []
        for inst in self.instances.values():
            if inst.shard is None:
                continue
            chain, cur = [inst.name], inst
            while cur.next is not None:
                cur = self.instances[cur.next]
                chain.append(cur.name)
            out.append(chain)
        return out

    def groups(self) -> dict[str, list[str]]:
        """Replica groups: block -> instance names (in file order)."""
        out: dict[str, list[str]] = {}
        for inst in self.instances.values():
            out.setdefault(inst.block, []).append(inst.name)
        return out

    def with_wire(self, wire: str) -> Placement:
        if wire not in WIRES:
            raise ConfigError(f"wire {wire!r} is not valid", hint=f"use one of: {', '.join(WIRES)}")
        return Placement(
            self.name,
            self.description,
            self.source,
            wire,
            self.shards,
            self.replicas,
            self.nodes,
            self.instances,
        )


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
def parse_block(text: Any, cfg: ProjectConfig, where: str) -> tuple[str, BlockSpec]:
    n_j = len(cfg.network.neurons) - 1
    split = cfg.network.split_after
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f'{where} must be a string such as "head+exit", "tail" or "full"')
    parts: dict[str, tuple[list[int], bool]] = {
        "head": (list(range(split)), False),
        "tail": (list(range(split, n_j)), False),
        "exit": ([], True),
        "full": (list(range(n_j)), True),
        **{f"junction_{j + 1}": ([j], False) for j in range(n_j)},
    }
    junctions: list[int] = []
    has_exit = False
    for part in text.split("+"):
        part = part.strip()
        if part not in parts:
            raise ConfigError(
                f"{where} = {text!r}: unknown part {part!r}", hint=f"use {', '.join(parts)} joined by '+'"
            )
        js, ex = parts[part]
        if set(js) & set(junctions) or (ex and has_exit):
            raise ConfigError(f"{where} = {text!r} names a part twice")
        junctions += js
        has_exit = has_exit or ex
    junctions.sort()
    if junctions and junctions != list(range(junctions[0], junctions[-1] + 1)):
        raise ConfigError(f"{where} = {text!r}: the junctions of a block must be contiguous")
    if has_exit and junctions and split - 1 not in junctions:
        raise ConfigError(
            f"{where} = {text!r}: the exit branch reads the split activation, so it needs "
            f"junction_{split} (the head) in the same block or a block of its own"
        )
    spec = BlockSpec(tuple(junctions), has_exit)
    return spec.label, spec


# ----------------------------------------------------------------------------------------------
# The placement file
# ----------------------------------------------------------------------------------------------
def _shards(value: Any, src: str) -> list[tuple[float, float]]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{src}: shards = {value} must be at least 1")
        return [(k / value, (k + 1) / value) for k in range(value)]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{src}: shards must be a count or a list of [start, stop] fractions")
    out = []
    for i, pair in enumerate(value):
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)
        if not ok or not 0 <= pair[0] < pair[1] <= 1:
            raise ConfigError(
                f"{src}: shards[{i}] = {pair!r} must be [start, stop] with 0 <= start < stop <= 1"
            )
        out.append((float(pair[0]), float(pair[1])))
    edges = sorted(out)
    pos = 0.0
    for start, stop in edges:
        if not math.isclose(start, pos, abs_tol=1e-9):
            what = "overlap" if start < pos else "leave a gap"
            raise ConfigError(
                f"{src}: shards {what} at {min(start, pos):g} (they must cover [0, 1] exactly once)",
                hint="e.g. shards = 4, or [[0, 0.5], [0.5, 1]]",
            )
        pos = stop
    if not math.isclose(pos, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"{src}: shards stop at {pos:g}: they do not cover the training data up to 1",
            hint="the last shard must end at 1",
        )
    return out


def _replicas(value: Any, nodes: dict[str, Node], src: str) -> Replicas:
    value = value if value is not None else {}
    if not isinstance(value, dict):
        raise ConfigError(f"{src}: [replicas] must be a table")
    unknown = [k for k in value if k not in ("mode", "every", "aggregator")]
    if unknown:
        raise ConfigError(
            f"{src}: unknown key replicas.{unknown[0]}", hint="valid keys: mode, every, aggregator"
        )
    mode = value.get("mode", "average")
    if mode not in SYNC_MODES:
        raise ConfigError(f"{src}: replicas.mode = {mode!r}", hint=f"use one of: {', '.join(SYNC_MODES)}")
    every = value.get("every", "epoch")
    if every == "epoch":
        every = 0
    elif isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f'{src}: replicas.every = {every!r} must be a number of steps >= 1 or "epoch"')
    agg = value.get("aggregator")
    if agg is not None and agg not in nodes:
        raise ConfigError(
            f"{src}: replicas.aggregator = {agg!r} is not a node in [nodes]",
            hint=f"nodes: {', '.join(nodes)}",
        )
    return Replicas(mode, every, agg)


def _nodes(data: dict[str, Any], profiles: dict[str, NodeProfile], src: str) -> dict[str, Node]:
    nodes_data = data.get("nodes")
    if not isinstance(nodes_data, dict) or not nodes_data:
        raise ConfigError(
            f"{src}: [nodes] is missing or empty", hint='e.g. [nodes.edge] profile = "edge-server"'
        )
    nodes = {}
    for name, spec in nodes_data.items():
        where = f"{src}: nodes.{name}"
        if not isinstance(spec, dict) or "profile" not in spec:
            raise ConfigError(f"{where} must be a table with a profile")
        unknown = [k for k in spec if k not in ("profile", "ray_resources")]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}", hint="valid keys: profile, ray_resources"
            )
        if spec["profile"] not in profiles:
            raise ConfigError(
                f"{where}.profile = {spec['profile']!r} is not a known profile",
                hint=f"known: {', '.join(sorted(profiles))} ({NODES_FILE.name} or [profile.*] here)",
            )
        res = spec.get("ray_resources", {})
        if not isinstance(res, dict) or not all(isinstance(v, int | float) and v > 0 for v in res.values()):
            raise ConfigError(f"{where}.ray_resources must map resource names to positive amounts")
        nodes[name] = Node(name, profiles[spec["profile"]], {k: float(v) for k, v in res.items()})
    return nodes


def _instance(
    i: int, d: Any, cfg: ProjectConfig, nodes: dict[str, Node], n_shards: int, src: str
) -> Instance:
    where = f"{src}: instance[{i}]"
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = [k for k in d if k not in INSTANCE_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}", hint=f"valid keys: {', '.join(INSTANCE_KEYS)}"
        )
    for key in ("name", "block", "node"):
        if not isinstance(d.get(key), str):
            raise ConfigError(f"{where}.{key} is missing (a string)")
    where = f"{src}: instance {d['name']!r}"
    label, spec = parse_block(d["block"], cfg, f"{where}.block")
    if d["node"] not in nodes:
        raise ConfigError(
            f"{where}.node = {d['node']!r} is not a node in [nodes]", hint=f"nodes: {', '.join(nodes)}"
        )
    first = bool(spec.junctions) and spec.junctions[0] == 0
    shard = d.get("shard")
    if first != (shard is not None):
        need = "needs a shard (it reads the data)" if first else "reads no data: remove shard"
        raise ConfigError(f"{where}: block {label} {need}")
    if shard is not None and (
        isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < n_shards
    ):
        raise ConfigError(f"{where}.shard = {shard!r} is not a shard index", hint=f"use 0 to {n_shards - 1}")
    return Instance(d["name"], label, spec, d["node"], shard, d.get("next"), d.get("exit_to"))


def _check_links(insts: dict[str, Instance], cfg: ProjectConfig, src: str) -> None:
    n_j = len(cfg.network.neurons) - 1
    split = cfg.network.split_after - 1
    for inst in insts.values():
        where = f"{src}: instance {inst.name!r}"
        js = inst.spec.junctions
        if js and js[-1] < n_j - 1:
            if inst.next is None:
                raise ConfigError(
                    f"{where}: block {inst.block} ends at junction_{js[-1] + 1}: "
                    f"next must name the instance that continues at junction_{js[-1] + 2}"
                )
            nxt = insts[inst.next].spec.junctions
            if not nxt or nxt[0] != js[-1] + 1:
                raise ConfigError(f"{where}.next = {inst.next!r} does not start at junction_{js[-1] + 2}")
        elif inst.next is not None:
            raise ConfigError(f"{where}.next: block {inst.block} is the end of the network; remove next")
        needs_exit = bool(js) and js[-1] == split and not inst.spec.exit
        if needs_exit and inst.exit_to is None:
            raise ConfigError(
                f"{where}: block {inst.block} ends at the split and has no exit: "
                "exit_to must name an exit instance",
                hint='or use block = "head+exit"',
            )
        if inst.exit_to is not None:
            if not needs_exit:
                raise ConfigError(
                    f"{where}.exit_to: only a block that ends at the split without the exit sends to one"
                )
            if insts[inst.exit_to].spec.junctions or not insts[inst.exit_to].spec.exit:
                raise ConfigError(f"{where}.exit_to = {inst.exit_to!r} is not an exit-only instance")


def _check_targets(insts: dict[str, Instance], src: str) -> None:
    for inst in insts.values():
        for key in ("next", "exit_to"):
            target = getattr(inst, key)
            if target is not None and target not in insts:
                raise ConfigError(
                    f"{src}: instance {inst.name!r}.{key} = {target!r} is not an instance",
                    hint=f"instances: {', '.join(insts)}",
                )


def _check_cycles(insts: dict[str, Instance], src: str) -> None:
    for start in insts:
        path, cur = [start], insts[start].next
        while cur is not None:
            if cur in path:
                loop = " -> ".join([*path[path.index(cur) :], cur])
                raise ConfigError(
                    f"{src}: the instances form a cycle: {loop}", hint="activations must flow forward"
                )
            path.append(cur)
            cur = insts[cur].next


def _check_coverage(insts: dict[str, Instance], cfg: ProjectConfig, n_shards: int, src: str) -> None:
    n_j = len(cfg.network.neurons) - 1
    for j in range(n_j):
        if not any(j in i.spec.junctions for i in insts.values()):
            raise ConfigError(
                f"{src}: block junction_{j + 1} has no instance",
                hint="every part of the network (head, exit, tail) needs at least one instance",
            )
    if not any(i.spec.exit for i in insts.values()):
        raise ConfigError(
            f"{src}: block exit has no instance", hint='add "+exit" to the head or an exit instance'
        )
    used = {i.shard for i in insts.values() if i.shard is not None}
    unused = [k for k in range(n_shards) if k not in used]
    if unused:
        raise ConfigError(
            f"{src}: shard {unused[0]} feeds no instance, so its data would never be trained on",
            hint="give each shard to at least one first-block instance",
        )
    fed = {i.next for i in insts.values()} | {i.exit_to for i in insts.values()}
    for inst in insts.values():
        if inst.shard is None and inst.name not in fed:
            raise ConfigError(f"{src}: instance {inst.name!r} is fed by no instance (nothing reaches it)")


def load_placement(path: str | Path, cfg: ProjectConfig, profiles_file: Path | None = None) -> Placement:
    """Read and validate a placement for a project; every error names the file and field."""
    path = Path(path)
    data = read_toml(path, "placement")
    return placement_from_dict(data, cfg, str(path), profiles_file)


def placement_from_dict(
    data: dict[str, Any], cfg: ProjectConfig, src: str = "placement", profiles_file: Path | None = None
) -> Placement:
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{src}: unknown key {unknown[0]!r}", hint=f"valid keys: {', '.join(TOP_KEYS)}")
    profiles = load_profiles(profiles_file)
    for name, spec in data.get("profile", {}).items():
        profiles[name] = parse_profile(name, spec, f"{src}: profile.{name}")
    wire = data.get("wire", "fp32")
    if wire not in WIRES:
        raise ConfigError(f"{src}: wire = {wire!r} is not valid", hint=f"use one of: {', '.join(WIRES)}")
    shards = _shards(data.get("shards", 1), src)
    nodes = _nodes(data, profiles, src)
    raw = data.get("instance")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{src}: no [[instance]] tables", hint="see examples/placements/")
    insts: dict[str, Instance] = {}
    for i, d in enumerate(raw):
        inst = _instance(i, d, cfg, nodes, len(shards), src)
        if inst.name in insts:
            raise ConfigError(f"{src}: instance name {inst.name!r} is used twice")
        insts[inst.name] = inst
    _check_targets(insts, src)
    _check_cycles(insts, src)
    _check_links(insts, cfg, src)
    _check_coverage(insts, cfg, len(shards), src)
    replicas = _replicas(data.get("replicas"), nodes, src)
    groups = [b for b in {i.block for i in insts.values()} if sum(i.block == b for i in insts.values()) > 1]
    if groups and replicas.mode == "average" and replicas.aggregator is None:
        raise ConfigError(
            f"{src}: block {sorted(groups)[0]} has replicas but replicas.aggregator is not set",
            hint='name the node that averages them, e.g. [replicas] aggregator = "edge"',
        )
    if cfg.training.mode != "joint":
        raise ConfigError(
            f"training.mode = {cfg.training.mode!r}: parallel training runs the joint loss only",
            hint='set training.mode = "joint" in the project file',
        )
    return Placement(
        str(data.get("name", Path(src).stem)),
        str(data.get("description", "")),
        src,
        wire,
        shards,
        replicas,
        nodes,
        insts,
    )
