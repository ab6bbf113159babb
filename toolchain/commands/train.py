"""`toolchain train`: train a project and write its artifact bundle."""

from __future__ import annotations

import argparse
import json

from toolchain.commands.common import add_config, add_data_dir, add_force
from toolchain.config import load_config, validate
from toolchain.train import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_data_dir(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default="bundle",
        help="bundle directory (default: ./bundle); replaced only if empty or written by the toolchain",
    )
    add_force(p)
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
        validate(cfg)
    result = train(cfg, args.out, data_dir=args.data_dir, quiet=args.quiet, force=args.force)
    m = result.metrics
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
            allow_nan=False,  # train() refuses a diverged model, so this never fires on a NaN
        )
    )
    return 0
