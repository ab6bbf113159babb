"""`toolchain init`: write the default project (the paper's sparse [800, 40, 40, 10], d_out [2, 9, 10])."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolchain.config import default_config, save_config
from toolchain.errors import ToolchainError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", nargs="?", default="toolchain.toml", help="where to write (default: toolchain.toml)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise ToolchainError(f"{path} already exists", hint="pass --force to overwrite it")
    save_config(default_config(), path)
    print(f"wrote {path}: MNIST, neurons [800, 40, 40, 10], out-degrees [2, 9, 10], split after layer 1")
    return 0
