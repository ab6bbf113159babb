"""Training speed and peak memory: packed vs masked vs dense, side by side in one run.

Networks: the default [800, 40, 40, 10] with out-degrees [2, 9, 10], and a wide one
[800, 1024, 1024, 10] with out-degrees [64, 51, 10] (6.25 % and 5 % junction density). "dense" is the
same split model with plain Keras Dense layers (every edge present) as the baseline.

Each measurement is a fresh worker process (so peak RSS is its own), training joint head+exit on MNIST
for `--epochs` epochs; samples/s is the median over epochs after the first (which includes tracing).
Variants are interleaved round by round so that machine noise hits them alike.

    python benchmarks/train_speed.py --data-dir DIR [--rounds 3 --epochs 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from _results import out_help, output_path  # benchmarks/ is sys.path[0]

NETWORKS = {
    "default": ([800, 40, 40, 10], [2, 9, 10]),
    "wide": ([800, 1024, 1024, 10], [64, 51, 10]),
}
VARIANTS = ("packed", "masked", "dense")


def worker(network: str, variant: str, epochs: int, data_dir: str | None) -> dict:
    """Train once and report throughput and memory (runs in its own process)."""
    import keras
    import tensorflow as tf

    from toolchain.config import default_config, validate
    from toolchain.data import load_splits
    from toolchain.model import build_split_model, initial_weights, set_weights
    from toolchain.sparsity import build_connectivity

    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    neurons, degrees = NETWORKS[network]
    cfg = default_config()
    cfg.network.neurons, cfg.network.out_degrees = neurons, degrees
    validate(cfg)
    data = load_splits("mnist", neurons[0], 5000, data_dir)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keras.utils.set_random_seed(0)
    conns = build_connectivity(neurons, degrees, "random", 0)
    if variant == "dense":
        x = keras.Input((neurons[0],))
        h = x
        for n in neurons[1:2]:
            h = keras.layers.Dense(n, activation="relu")(h)
        e = keras.layers.Dense(neurons[-1])(h)
        t = h
        for n in neurons[2:-1]:
            t = keras.layers.Dense(n, activation="relu")(t)
        t = keras.layers.Dense(neurons[-1])(t)
        model = keras.Model(x, {"exit": e, "final": t})
    else:
        sm = build_split_model(cfg, conns, variant)
        set_weights(sm, initial_weights(cfg, conns, 0))
        model = sm.full
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"exit": ce, "final": ce})
    ds = (
        tf.data.Dataset.from_tensor_slices((data.x_train, {"exit": data.y_train, "final": data.y_train}))
        .shuffle(len(data.x_train), seed=0)
        .batch(128)
        .prefetch(tf.data.AUTOTUNE)
    )
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(ds, epochs=epochs, verbose=0, callbacks=[Clock()])
    steady = times[1:] or times
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "network": network,
        "variant": variant,
        "samples_per_s": len(data.x_train) / float(np.median(steady)),
        "epoch_seconds": times,
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "rss_after_import_mb": rss_import,
        "rss_after_data_mb": rss_data,
        "rss_peak_mb": rss_peak,
        "training_rss_mb": rss_peak - rss_data,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--networks", default="default,wide")
    p.add_argument("--data-dir")
    p.add_argument("--out", help=out_help("train_speed") + ", without extension")
    p.add_argument("--worker", nargs=2, metavar=("NETWORK", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.epochs, args.data_dir)))
        return 0

    from toolchain.fsutil import atomic_write_json, atomic_write_text
    from toolchain.progress import markdown_table, table

    runs: list[dict] = []
    networks = args.networks.split(",")
    for r in range(args.rounds):
        for net in networks:
            for variant in VARIANTS:
                cmd = [sys.executable, __file__, "--worker", net, variant, "--epochs", str(args.epochs)]
                if args.data_dir:
                    cmd += ["--data-dir", args.data_dir]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["round"] = r
                runs.append(res)
                print(
                    f"round {r + 1}/{args.rounds} {net:<8} {variant:<7} "
                    f"{res['samples_per_s']:>10,.0f} samples/s  peak RSS {res['rss_peak_mb']:,.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    summary = []
    for net in networks:
        base = np.median(
            [x["samples_per_s"] for x in runs if x["network"] == net and x["variant"] == "masked"]
        )
        for variant in VARIANTS:
            sel = [x for x in runs if x["network"] == net and x["variant"] == variant]
            sps = [x["samples_per_s"] for x in sel]
            summary.append(
                {
                    "network": net,
                    "neurons": NETWORKS[net][0],
                    "out_degrees": NETWORKS[net][1],
                    "variant": variant,
                    "samples_per_s_median": float(np.median(sps)),
                    "samples_per_s_min": float(np.min(sps)),
                    "samples_per_s_max": float(np.max(sps)),
                    "vs_masked": float(np.median(sps) / base),
                    "trainable_params": sel[0]["trainable_params"],
                    "rss_peak_mb_median": float(np.median([x["rss_peak_mb"] for x in sel])),
                    "training_rss_mb_median": float(np.median([x["training_rss_mb"] for x in sel])),
                }
            )
    command = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    headers = ["network", "variant", "samples/s (median)", "min–max", "× masked", "trainable params",
               "peak RSS MB", "RSS growth in training MB"]  # fmt: skip
    rows = [
        [s["network"], s["variant"], f"{s['samples_per_s_median']:,.0f}",
         f"{s['samples_per_s_min']:,.0f}–{s['samples_per_s_max']:,.0f}", f"{s['vs_masked']:.2f}",
         s["trainable_params"], f"{s['rss_peak_mb_median']:,.0f}", f"{s['training_rss_mb_median']:,.0f}"]
        for s in summary
    ]  # fmt: skip
    print(table(headers, rows))
    out = output_path(p, args, "train_speed", neutral={"worker"})
    atomic_write_json(out.with_suffix(".json"), {"command": command, "summary": summary, "runs": runs})
    md = (
        f"# Training speed\n\nCommand: `{command}` ({args.rounds} interleaved rounds, "
        f"{args.epochs} epochs each, batch 128, 2 vCPU, no GPU). Masked/packed hold the same trainable "
        "values; masked also stores the "
        "zeros of missing edges, which is why its trainable-parameter count equals dense.\n\n"
        + markdown_table(headers, rows)
        + "\n"
    )
    atomic_write_text(out.with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
