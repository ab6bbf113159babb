"""`toolchain train`: train a project and write its artifact bundle."""

from __future__ import annotations

import argparse
import json

from toolchain.commands.common import add_config, add_data_dir
from toolchain.config import load_config, validate
from toolchain.errors import ToolchainError
from toolchain.train import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_data_dir(p)
    p.add_argument("--out", metavar="DIR", default="bundle", help="bundle directory (default: ./bundle)")
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    par = p.add_argument_group("parallel training on Ray (docs/parallel.md)")
    par.add_argument(
        "--parallel",
        metavar="PLACEMENT",
        help="train across the nodes of a placement file (examples/placements/*.toml) on Ray",
    )
    par.add_argument("--address", help="join the Ray cluster at HOST:PORT (default: start a local Ray)")
    par.add_argument("--wire", choices=("fp32", "fp16", "int8"), help="override the placement's wire dtype")
    par.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    par.add_argument(
        "--max-restarts", type=int, default=2, help="restarts from the last averaged state when an actor dies"
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
        validate(cfg)
    if args.parallel:
        m = _parallel(args, cfg)
    else:
        for flag in ("address", "wire", "num_cpus"):
            if getattr(args, flag) is not None:
                raise ToolchainError(f"--{flag.replace('_', '-')} needs --parallel PLACEMENT")
        m = train(cfg, args.out, data_dir=args.data_dir, quiet=args.quiet).metrics
    print(
        json.dumps(
            {
                k: m[k]
                for k in (
                    "final_accuracy",
                    "exit_accuracy",
                    "exit_threshold",
                    "exit_rate",
                    "accuracy_at_threshold",
                    "params",
                    "split_width",
                )
            },
            indent=2,
        )
    )
    return 0


def _parallel(args: argparse.Namespace, cfg) -> dict:
    from toolchain.parallel.api import train_parallel
    from toolchain.parallel.placement import load_placement

    if args.max_restarts < 0:
        raise ToolchainError(f"--max-restarts = {args.max_restarts} must be 0 or more")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ToolchainError(f"--num-cpus = {args.num_cpus} must be at least 1")
    placement = load_placement(args.parallel, cfg)
    if args.wire:
        placement = placement.with_wire(args.wire)
    result = train_parallel(
        cfg,
        placement,
        out=args.out,
        data_dir=args.data_dir,
        address=args.address,
        num_cpus=args.num_cpus,
        quiet=args.quiet,
        max_restarts=args.max_restarts,
    )
    return result.metrics
