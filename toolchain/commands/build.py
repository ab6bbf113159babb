"""`toolchain build --target T`: train (if needed), export, render and compile for a target."""

from __future__ import annotations

import argparse

from toolchain.commands.common import add_config, add_data_dir
from toolchain.pipeline import BuildOptions, build
from toolchain.targets import load_target


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name (see `toolchain targets`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bundle", metavar="DIR", help="a trained bundle (default: train the project now)")
    add_config(src)
    p.add_argument("--out", metavar="DIR", help="build directory (default: build/<target>)")
    p.add_argument("--dtype", choices=["int8", "float32"], help="model arithmetic (default: the target's)")
    add_data_dir(p)
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:

    target = load_target(args.target)
    opts = BuildOptions(dtype=args.dtype, data_dir=args.data_dir, quiet=args.quiet)
    build(target, out=args.out, bundle=args.bundle, config=args.config, options=opts)
    return 0
