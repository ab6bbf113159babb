"""`toolchain verify --target T`: check a device against the host reference over serial."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolchain.commands.common import add_data_dir
from toolchain.mcu.verify import VerifyOptions, verify
from toolchain.mcu.verify.host import parse_samples


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name (see `toolchain targets`)")
    p.add_argument("--build", metavar="DIR", help="build directory (default: build/<target>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", metavar="P", help="serial port of a board (e.g. /dev/ttyACM0)")
    where.add_argument(
        "--url", metavar="URL", help="pyserial URL (e.g. socket://127.0.0.1:PORT from `flash`)"
    )
    p.add_argument(
        "--samples",
        default="200",
        metavar="N",
        help="test samples: a count (fixed subset) or 'all' (default 200)",
    )
    p.add_argument("--report", metavar="FILE", help="JSON report (default: <build>/verify.json)")
    add_data_dir(p)
    p.add_argument("--baud", type=int, help="baud rate of --port (default: the target's)")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="reply timeout per request (default: the target's)"
    )
    p.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="S", help="HELLO deadline (default 10)"
    )
    p.add_argument("--retries", type=int, default=4, help="retransmissions per request (default 4)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:

    opts = VerifyOptions(
        target=args.target,
        build=Path(args.build) if args.build else None,
        port=args.port,
        url=args.url,
        samples=parse_samples(args.samples),
        report=Path(args.report) if args.report else None,
        data_dir=args.data_dir,
        quiet=args.quiet,
        connect_timeout=args.connect_timeout,
        reply_timeout=args.timeout,
        retries=args.retries,
        baud=args.baud,
    )
    verify(opts)
    return 0
