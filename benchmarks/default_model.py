"""The built-in default project, trained as `bash scripts/train.sh` trains it: the figures the README
quotes for it (final, exit and at-threshold accuracy, exit rate, parameters) and how long it took.

    python benchmarks/default_model.py --data-dir ../shared/datasets     # benchmarks/results/default_model.*
    python benchmarks/default_model.py --epochs 2                        # reduced: build/benchmarks/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _results import out_help, output_path, write  # benchmarks/ is sys.path[0]

from toolchain.config import default_config, validate
from toolchain.progress import markdown_table
from toolchain.train import train

KEYS = ("final_accuracy", "exit_accuracy", "accuracy_at_threshold", "exit_rate", "exit_threshold")


def measure(epochs: int | None, data_dir: str | None) -> dict:
    cfg = default_config()
    if epochs is not None:
        cfg.training.epochs = epochs
    validate(cfg)
    with tempfile.TemporaryDirectory(prefix="default-model-") as tmp:
        wall0, cpu0 = time.monotonic(), time.process_time()
        result = train(cfg, Path(tmp) / "bundle", data_dir=data_dir, quiet=False)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    m = result.metrics
    return {
        "project": {
            "neurons": cfg.network.neurons,
            "out_degrees": cfg.network.out_degrees,
            "pattern": cfg.network.pattern,
            "epochs": cfg.training.epochs,
            "seed": cfg.training.seed,
        },
        "metrics": {k: m[k] for k in KEYS},
        "validation": m["validation"],
        "params": m["params"],
        "seconds": {"wall": round(wall, 1), "cpu": round(cpu, 1), "training_only": m["training"]["seconds"]},
    }


def markdown(r: dict) -> str:
    m, p = r["metrics"], r["project"]
    rows = [
        ["final accuracy (test)", f"{100 * m['final_accuracy']:.2f} %"],
        ["exit accuracy (test)", f"{100 * m['exit_accuracy']:.2f} %"],
        ["accuracy at the calibrated threshold (test)", f"{100 * m['accuracy_at_threshold']:.2f} %"],
        ["exit rate at that threshold (test)", f"{100 * m['exit_rate']:.1f} %"],
        ["exit threshold (calibrated on the validation split)", f"{m['exit_threshold']:.4f}"],
        ["parameters total / head / exit / tail", "{total} / {head} / {exit} / {tail}".format(**r["params"])],
        ["wall time, whole `train` (s)", f"{r['seconds']['wall']:.0f}"],
        ["CPU time of the process (s)", f"{r['seconds']['cpu']:.0f}"],
    ]
    title = f"{p['neurons']}, out-degrees {p['out_degrees']}, pattern {p['pattern']}, {p['epochs']} epochs"
    return f"# The default project\n\n{title}, seed {p['seed']}, MNIST.\n\n" + markdown_table(
        ["figure", "value"], rows
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, help="override the default project's epochs (a reduced run)")
    p.add_argument("--data-dir", help="data directory with mnist/ (default: $TOOLCHAIN_DATA_DIR or cache)")
    p.add_argument("--out", help="output path without extension; " + out_help("default_model"))
    args = p.parse_args(argv)
    out = output_path(p, args, "default_model")
    result = measure(args.epochs, args.data_dir)
    md = markdown(result)
    write(out, result, md, "default_model.py", argv)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
