"""`toolchain plan`: latency, energy, bandwidth and memory per split point and per exit threshold."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from toolchain.commands.common import add_config, add_data_dir
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_write_bytes, atomic_write_text
from toolchain.plan.core import PlanOptions, make_plan
from toolchain.plan.costs import Overrides
from toolchain.plan.report import plot_png, render_markdown, render_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    add_config(src)
    src.add_argument(
        "--bundle",
        metavar="DIR",
        help="a trained bundle or a build directory (adds the exit-threshold sweep on the validation split)",
    )
    p.add_argument("--target", help="microcontroller target (default: the build's, else stm32f4)")
    p.add_argument(
        "--link", default="uart-115200", help="link profile (default uart-115200; see docs/plan.md)"
    )
    p.add_argument("--wire", help="wire format: serial | kserve-binary (default: the link's)")
    p.add_argument(
        "--dtype", help="int8 | float32 split tensor and kernels (default: the build's, else int8)"
    )
    p.add_argument("--split", type=int, help="split point of the exit sweep (must be the bundle's)")
    add_data_dir(p)
    par = p.add_argument_group("parallel training (docs/parallel.md)")
    par.add_argument(
        "--parallel", metavar="PLACEMENT", help="predict per-epoch costs of training under a placement"
    )
    par.add_argument("--epochs", type=int, help="epochs of the parallel plan (default: the config's)")
    par.add_argument(
        "--placement-wire", choices=("fp32", "fp16", "int8"), help="override the placement's wire"
    )
    par.add_argument(
        "--no-pilot", action="store_true", help="skip the Ray pilot (no host busy-time prediction)"
    )
    par.add_argument("--address", help="Ray cluster for the pilot (default: a local Ray)")
    costs = p.add_argument_group("cost overrides (defaults: targets/plan/*.toml and the target file)")
    costs.add_argument("--bandwidth", type=float, metavar="BIT/S", help="uplink payload rate")
    costs.add_argument("--rtt-ms", type=float, metavar="MS", help="round trip beyond the uplink transfer")
    costs.add_argument("--energy-per-bit-nj", type=float, metavar="NJ", help="device energy per uplink bit")
    costs.add_argument("--tail-ms", type=float, metavar="MS", help="tail time on the server")
    costs.add_argument("--power-mw", type=float, metavar="MW", help="device active power")
    costs.add_argument("--ipc", type=float, help="instructions per cycle of the device")
    costs.add_argument("--clock-mhz", type=float, metavar="MHZ", help="device clock")
    costs.add_argument(
        "--instructions", type=float, metavar="N", help="head + exit instructions per inference"
    )
    costs.add_argument("--links-file", metavar="FILE", help="link profiles (default targets/plan/links.toml)")
    costs.add_argument(
        "--devices-file", metavar="FILE", help="device data (default targets/plan/devices.toml)"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the whole plan as JSON")
    out.add_argument(
        "--plot", metavar="FILE", help="PNG of expected latency/energy/bytes/accuracy vs threshold"
    )
    out.add_argument("--markdown", metavar="FILE", help="write the tables as markdown")
    out.add_argument("--rows", type=int, default=11, help="threshold rows in the table (default 11)")
    out.add_argument(
        "--sweep-degrees",
        action="store_true",
        help="also list every admissible out-degree of the first junction (head flash, MACs)",
    )


def run(args: argparse.Namespace) -> int:

    if args.parallel:
        return _parallel(args)
    if args.rows < 2:
        raise ToolchainError(f"--rows = {args.rows} must be at least 2")
    if args.plot and not args.bundle:
        raise ToolchainError("--plot draws the exit-threshold sweep and needs --bundle")
    overrides = Overrides(
        link=args.link,
        wire=args.wire,
        bandwidth_bps=args.bandwidth,
        rtt_ms=args.rtt_ms,
        energy_per_bit_nj=args.energy_per_bit_nj,
        tail_ms=args.tail_ms,
        power_mw=args.power_mw,
        ipc=args.ipc,
        clock_mhz=args.clock_mhz,
        links_file=Path(args.links_file) if args.links_file else None,
        devices_file=Path(args.devices_file) if args.devices_file else None,
    )
    opts = PlanOptions(
        config=args.config,
        bundle=args.bundle,
        target=args.target,
        dtype=args.dtype,
        split=args.split,
        instructions=args.instructions,
        data_dir=args.data_dir,
        sweep_degrees=args.sweep_degrees,
        overrides=overrides,
    )
    plan = make_plan(opts)
    print(render_text(plan, args.rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(plan, indent=1) + "\n")
    if args.markdown:
        command = "toolchain " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["plan"] else "toolchain plan"
        atomic_write_text(args.markdown, render_markdown(plan, command, args.rows))
    if args.plot:
        atomic_write_bytes(args.plot, plot_png(plan))
    return 0


def _parallel(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from toolchain.config import load_config, validate
    from toolchain.data import DATASETS
    from toolchain.errors import ToolchainError
    from toolchain.fsutil import atomic_write_text
    from toolchain.parallel.api import predict_costs
    from toolchain.parallel.placement import load_placement
    from toolchain.parallel.report import render_prediction

    for flag in ("bundle", "target", "split", "plot"):
        if getattr(args, flag):
            raise ToolchainError(
                f"--{flag} does not apply to --parallel (a training plan, not a deployment plan)"
            )
    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
        validate(cfg)
    placement = load_placement(args.parallel, cfg)
    if args.placement_wire:
        placement = placement.with_wire(args.placement_wire)
    n_train = DATASETS[cfg.dataset].train_images.shape[0] - cfg.training.validation_size
    pred = predict_costs(cfg, placement, n_train, measure_host=not args.no_pilot, address=args.address)
    print(render_prediction(pred, placement))
    if args.json:
        atomic_write_text(args.json, json.dumps(pred, indent=1, default=str) + "\n")
    if args.markdown:
        command = "toolchain " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["plan"] else "toolchain plan"
        atomic_write_text(args.markdown, render_prediction(pred, placement, markdown=True, command=command))
    return 0
