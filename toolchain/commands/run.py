"""`toolchain run`: the edge runtime (head + exit on LiteRT, offload to a KServe v2 server).

Imports only the device-side modules (toolchain.edge), so it works with `toolchain[device]`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from toolchain.edge.cli import add_arguments as edge_arguments

    edge_arguments(p)


def run(args: argparse.Namespace) -> int:
    from toolchain.edge.cli import run as edge_run

    return edge_run(args)
