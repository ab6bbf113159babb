"""`toolchain flash --target T`: flash a build onto its board, or boot its emulator."""

from __future__ import annotations

import argparse

from toolchain.mcu.flash import flash


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name (see `toolchain targets`)")
    p.add_argument("--build", metavar="DIR", help="build directory (default: build/<target>)")
    p.add_argument("--port", metavar="P", help="serial port, for flashers that need one (Arduino boards)")
    p.add_argument("--tool", metavar="NAME", help="flasher to use (default: the first installed one)")
    p.add_argument("--dry-run", action="store_true", help="print the exact command and do nothing")
    p.add_argument(
        "--seconds", type=float, metavar="S", help="emulated targets: stop after S seconds (default: Ctrl-C)"
    )


def run(args: argparse.Namespace) -> int:

    return flash(args.target, args.build, args.port, args.dry_run, args.tool, args.seconds)
