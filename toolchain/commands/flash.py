"""`toolchain flash --target T`: flash a build onto its board, or boot its emulator."""

from __future__ import annotations

import argparse

from toolchain.mcu.flash import VIAS, FlashOptions, flash


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name (see `toolchain targets`)")
    p.add_argument("--build", metavar="DIR", help="build directory (default: build/<target>)")
    p.add_argument(
        "--via",
        choices=VIAS,
        help="boot: emulator loads the image (emulated default); tool: the board's flasher (real boards' "
        "default); gdb: load through a GDB server and compare-sections",
    )
    p.add_argument(
        "--gdb",
        metavar="HOST:PORT",
        help="a running GDB server (QEMU -gdb, pyocd gdbserver, openocd); implies --via gdb "
        "(default: start one)",
    )
    p.add_argument(
        "--compare-only",
        action="store_true",
        help="through GDB: compare the board's memory with the image and write nothing",
    )
    p.add_argument("--port", metavar="P", help="serial port, for flashers that need one (Arduino boards)")
    p.add_argument(
        "--tool", metavar="NAME", help="flasher (or GDB server) to use (default: the first installed)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the exact commands and do nothing")
    p.add_argument(
        "--seconds", type=float, metavar="S", help="emulated targets: stop after S seconds (default: Ctrl-C)"
    )
    p.add_argument("--quiet", action="store_true", help="no image summary or load progress")


def run(args: argparse.Namespace) -> int:
    opts = FlashOptions(
        target=args.target,
        build=args.build,
        port=args.port,
        dry_run=args.dry_run,
        tool=args.tool,
        seconds=args.seconds,
        via=args.via,
        gdb=args.gdb,
        compare_only=args.compare_only,
        quiet=args.quiet,
    )
    return flash(opts)
