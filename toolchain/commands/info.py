"""`toolchain info`: per-junction sparsity and parameter counts, without training."""

from __future__ import annotations

import argparse
import json

from toolchain.commands.common import add_config
from toolchain.config import load_config
from toolchain.progress import table
from toolchain.sparsity import count_params, junction_shapes


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def describe(cfg) -> dict:
    net = cfg.network
    shapes = junction_shapes(net.neurons, net.out_degrees)
    junctions = [
        {
            "junction": i + 1,
            "shape": f"{s.n_left}->{s.n_right}",
            "d_out": s.d_out,
            "d_in": s.d_in,
            "density": s.density,
            "edges": s.edges,
            "params": s.params,
            "part": "head" if i < net.split_after else "tail",
        }
        for i, s in enumerate(shapes)
    ]
    edges = sum(s.edges for s in shapes)
    dense = sum(s.n_left * s.n_right for s in shapes)
    pc = count_params(net.neurons, net.out_degrees, net.split_after, cfg.exit.hidden)
    return {
        "junctions": junctions,
        "edges": edges,
        "density": edges / dense,
        "params": pc.as_dict(),
        "split_width": cfg.split_width,
        "pattern": net.pattern,
    }


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    d = describe(cfg)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    rows = [
        [
            j["junction"],
            j["shape"],
            j["d_out"],
            j["d_in"],
            f"{j['density']:.4f}",
            j["edges"],
            j["params"],
            j["part"],
        ]
        for j in d["junctions"]
    ]
    print(
        f"{cfg.name}: {cfg.dataset}, neurons {cfg.network.neurons}, out-degrees "
        f"{cfg.network.out_degrees}, pattern {cfg.network.pattern}"
    )
    print(table(["junction", "shape", "d_out", "d_in", "density", "edges", "params (w+b)", "part"], rows))
    p = d["params"]
    print()
    print(f"total parameters (weights + biases, paper convention): {p['total']:,}")
    print(
        f"  head {p['head']:,}   tail {p['tail']:,}   early-exit branch {p['exit']:,} (reported separately)"
    )
    print(f"overall density {d['density']:.4f}   split width {d['split_width']}")
    return 0
