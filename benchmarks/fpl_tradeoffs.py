"""Flexible parallel learning trade-offs (Malandrino & Chiasserini, PerCom Workshops 2022) on MNIST.

The default network, 4 device nodes (rpi4 profile) + 1 edge (edge-server) + 1 cloud (cloud-server),
five placements from examples/placements/, 3 training seeds each, all at equal samples seen (the same
epochs over the same training split):

- centralized     : the whole network on the cloud node;
- data parallel   : a full-model replica per device on its own shard, averaged at the edge;
- split learning  : head + exit on the devices taking turns (state relayed), tail on the edge;
- FPL             : 4 head + exit replicas in parallel on their shards, one tail on the edge,
                    heads averaged at the edge;
- FPL int8        : the same with int8 activations and gradients on the wire.

Per run: test accuracy, device-side and total energy (estimated from the labelled profiles in
targets/plan/nodes.toml; compute time from the profile's MAC rate for devices and edge, from the
host-measured busy time for the cloud node), bytes on the network (measured: len() of what the
actors serialized), wall time here, and the plan's prediction (before training) against the
measurement: host busy time per epoch and bytes per epoch. All nodes are Ray actors on this host.

    python benchmarks/fpl_tradeoffs.py [--epochs 60] [--seeds 3]     # writes benchmarks/results/
    python benchmarks/fpl_tradeoffs.py --quick                       # 2 epochs, 1 seed, build/benchmarks/
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from _results import out_help, output_path  # benchmarks/ is sys.path[0]

from toolchain.config import default_config
from toolchain.data import load_splits
from toolchain.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from toolchain.progress import log, markdown_table, table

ROOT = Path(__file__).resolve().parent.parent

PLACEMENTS = ROOT / "examples" / "placements"
CONFIGS = [
    ("centralized", "centralized on cloud"),
    ("data_parallel", "data parallel, 4 devices"),
    ("split_learning", "split learning, 4 heads + tail on edge"),
    ("fpl", "FPL, 4 heads + tail on edge"),
    ("fpl_int8", "FPL, int8 wire"),
]


def one_run(name: str, seed: int, epochs: int, data) -> dict:
    from toolchain.parallel.api import train_parallel
    from toolchain.parallel.placement import load_placement

    cfg = default_config()
    cfg.training.epochs = epochs
    cfg.training.seed = seed
    placement = load_placement(PLACEMENTS / f"{name}.toml", cfg)
    t0 = time.perf_counter()
    res = train_parallel(cfg, placement, data=data, quiet=True)
    rep = res.report
    s, pred = rep["summary"], rep["predicted"]
    return {
        "config": name,
        "seed": seed,
        "epochs": epochs,
        "test_accuracy": s["final_accuracy"],
        "exit_accuracy": s["exit_accuracy"],
        "samples_seen": s["samples_seen"],
        "device_energy_j": s["device_energy_j"],
        "energy_j": s["energy_j"],
        "bytes": s["bytes"],
        "predicted_bytes": s["predicted_bytes"],
        "host_busy_s": s["host_busy_s"],
        "predicted_host_busy_s": s["predicted_host_busy_s"],
        "busy_per_epoch_s": s["host_busy_s"] / epochs,
        "predicted_busy_per_epoch_s": pred["per_epoch"]["host_busy_s"],
        "wall_s": s["wall_s"],
        "total_s": time.perf_counter() - t0,
        "restarts": rep["run"]["restarts"],
        "load_average": [rep["run"]["load_average_before"][0], rep["run"]["load_average_after"][0]],
        "per_node": {
            n: {k: v[k] for k in ("node_time_s", "host_busy_s", "energy_j", "bytes_sent")}
            for n, v in rep["measured"]["nodes"].items()
        },
        "node_time_status": {n: v["node_time_status"] for n, v in rep["measured"]["nodes"].items()},
    }


def _ms(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    v = np.asarray(values) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def summarize(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "configuration",
        "test acc %",
        "Δ vs centralized",
        "device energy J",
        "total energy J",
        "bytes (MB)",
        "wall s (here)",
        "busy/epoch measured s",
        "busy/epoch predicted s",
        "busy ratio",
        "bytes ratio",
    ]
    central = [r["test_accuracy"] for r in runs if r["config"] == "centralized"]
    rows = []
    for name, label in CONFIGS:
        rs = [r for r in runs if r["config"] == name]
        if not rs:
            continue
        acc = [r["test_accuracy"] for r in rs]
        delta = f"{(np.mean(acc) - np.mean(central)) * 100:+.2f}" if central else "-"
        busy = [r["busy_per_epoch_s"] / r["predicted_busy_per_epoch_s"] for r in rs]
        nbytes = [r["bytes"] / r["predicted_bytes"] if r["predicted_bytes"] else 1.0 for r in rs]
        rows.append(
            [
                label,
                _ms(acc, 100),
                delta,
                _ms([r["device_energy_j"] for r in rs], digits=1),
                _ms([r["energy_j"] for r in rs], digits=1),
                _ms([r["bytes"] for r in rs], 1e-6, 1),
                _ms([r["wall_s"] for r in rs], digits=0),
                _ms([r["busy_per_epoch_s"] for r in rs], digits=3),
                _ms([r["predicted_busy_per_epoch_s"] for r in rs], digits=3),
                f"{min(busy):.3f}–{max(busy):.3f}",
                f"{min(nbytes):.4f}–{max(nbytes):.4f}",
            ]
        )
    return headers, rows


def plot(runs: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in CONFIGS:
        rs = [r for r in runs if r["config"] == name]
        if not rs:
            continue
        acc = [r["test_accuracy"] * 100 for r in rs]
        a.scatter([r["energy_j"] for r in rs], acc, label=label)
        b.scatter([max(r["bytes"], 1) for r in rs], acc, label=label)
    a.set_xlabel("total energy, all nodes (J, estimated from profiles)")
    b.set_xlabel("bytes on the network (measured; centralized: 0, drawn at 1)")
    b.set_xscale("log")
    a.set_ylabel("test accuracy (%)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.suptitle("FPL trade-offs on MNIST: accuracy vs energy vs bytes (one point per seed)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=60, help="epochs for every configuration (default 60)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per configuration (default 3)")
    p.add_argument("--configs", help="comma-separated subset of: " + ", ".join(n for n, _ in CONFIGS))
    p.add_argument("--quick", action="store_true", help="2 epochs, 1 seed, written under build/benchmarks/")
    p.add_argument(
        "--data-dir", help="data directory with mnist/ (default: $TOOLCHAIN_DATA_DIR or the cache)"
    )
    p.add_argument("--out", help="output path without extension; " + out_help("fpl_tradeoffs"))
    args = p.parse_args(argv)
    out = output_path(p, args, "fpl_tradeoffs")  # any reduced run (--quick, fewer seeds...) writes elsewhere
    if args.quick:
        args.epochs, args.seeds = 2, 1
    names = args.configs.split(",") if args.configs else [n for n, _ in CONFIGS]
    from toolchain.parallel.cluster import start_local_ray, stop_ray

    cfg = default_config()
    data = load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, args.data_dir)
    start_local_ray()
    runs: list[dict] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    command = "python benchmarks/fpl_tradeoffs.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        for seed in range(args.seeds):
            for name in names:
                log(f"== {name} seed {seed} ({args.epochs} epochs)")
                runs.append(one_run(name, seed, args.epochs, data))
                r = runs[-1]
                log(
                    f"   test acc {r['test_accuracy']:.4f}  bytes {r['bytes']:,}  device energy "
                    f"{r['device_energy_j']:.2f} J  wall {r['wall_s']:.0f} s  busy/epoch "
                    f"{r['busy_per_epoch_s']:.3f} s (predicted {r['predicted_busy_per_epoch_s']:.3f})"
                )
                # Written after every run, so an interrupted benchmark still leaves its table.
                write(out, command.strip(), started, args, len(data.x_train), runs)
    finally:
        stop_ray()
    headers, rows = summarize(runs)
    print(table(headers, rows))
    return 0


def write(
    out: Path, command: str, started: str, args: argparse.Namespace, n_train: int, runs: list[dict]
) -> None:
    seeds_done = sorted({r["seed"] for r in runs})
    report = {
        "command": command,
        "started_utc": started,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "seeds_done": seeds_done,
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    headers, rows = summarize(runs)
    atomic_write_json(out.with_suffix(".json"), report)
    atomic_write_bytes(out.with_suffix(".png"), plot(runs))
    loads = [x for r in runs for x in r["load_average"]]
    intro = (
        f"{args.epochs} epochs x {n_train:,} samples for every configuration (equal samples "
        f"seen), training seeds {seeds_done} (mean ± std), all nodes as Ray actors on this "
        f"{os.cpu_count()}-core host (1-minute load average {min(loads):.1f}–{max(loads):.1f} during the "
        "runs: the machine is shared)."
    )
    md = (
        "# Flexible parallel learning trade-offs (MNIST, default network)\n\n"
        f"Command: `{command}`\n\n{intro}\n\n" + markdown_table(headers, rows) + "\n\n" + NOTES
    )
    atomic_write_text(out.with_suffix(".md"), md)


NOTES = """\
- **Energy** is estimated, not measured: node time x active power + bytes sent and received x energy
  per bit, with the labelled figures of `targets/plan/nodes.toml` (rpi4: 1 GMAC/s *assumption*,
  6.4 W *unverified*, Wi-Fi 289.8 nJ/bit *derived* from Huang et al.; edge-server and cloud-server:
  *assumptions*). Device and edge node time = analytic sparse MACs (forward + backward) / the
  profile's rate; cloud node time = the host-measured busy time (slowdown 1.0).
- **Bytes** are measured: len() of every split-activation (with labels), gradient and weights message
  an actor serialized for another node; *bytes ratio* = measured / predicted by the schedule.
- **Busy time** is the thread CPU time inside the actors' methods, summed over the nodes, per epoch;
  the prediction comes from a pilot of the same placement on synthetic data before training
  (`toolchain plan --parallel`); *busy ratio* = measured / predicted (range over seeds).
- **Wall time** is this host's (2 cores for up to 7 actors and the driver), not the deployment's.
"""


if __name__ == "__main__":
    sys.exit(main())
