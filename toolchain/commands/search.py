"""`toolchain search`: structure, data fraction and resources that reach a target accuracy with the
least training energy (RightTrain), on Ray Tune (docs/search.md)."""

from __future__ import annotations

import argparse
import json

from toolchain.commands.common import add_data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--space", required=True, metavar="SPACE.toml", help="search space (examples/search/space.toml)"
    )
    p.add_argument(
        "--target-accuracy", type=float, required=True, metavar="EPS", help="validation accuracy to reach"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (resumes a search found there)"
    )
    p.add_argument("--target", help="device target for the constraints (default: stm32f4)")
    p.add_argument(
        "--deadline-min", type=float, metavar="M", help="training to the target must fit M minutes"
    )
    p.add_argument("--trials", type=int, help="trial budget (default: the space's [search] trials)")
    p.add_argument(
        "--algorithm", choices=("tpe", "random"), default="tpe", help="Optuna TPE (default) or random"
    )
    p.add_argument(
        "--no-early-stop", action="store_true", help="no K-predictor stopper (trials run their budget)"
    )
    p.add_argument("--address", help="Ray cluster HOST:PORT (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument(
        "--watts-per-thread", type=float, help="per-thread power for CPU-seconds energy (labelled 'given')"
    )
    p.add_argument("--corpus", help="learning-curve corpus for the K predictor (default: the shipped one)")
    p.add_argument("--seed", type=int, help="search seed (default: the space's [search] seed)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_data_dir(p)


def run(args: argparse.Namespace) -> int:
    from toolchain.search.driver import SearchOptions, run_search

    res = run_search(
        SearchOptions(
            space=args.space,
            target_accuracy=args.target_accuracy,
            out=args.out,
            target=args.target,
            deadline_min=args.deadline_min,
            address=args.address,
            trials=args.trials,
            algorithm=args.algorithm,
            early_stop=not args.no_early_stop,
            data_dir=args.data_dir,
            watts_per_thread=args.watts_per_thread,
            num_cpus=args.num_cpus,
            corpus=args.corpus,
            seed=args.seed,
            quiet=args.quiet,
        )
    )
    b = res.best
    keys = (
        "trial",
        "hidden",
        "out_degrees",
        "pattern",
        "data_fraction",
        "batch_size",
        "epochs",
        "threads",
        "k",
    )
    print(json.dumps({**{k: b[k] for k in keys}, "energy_to_target_j": b["energy_to_target_j"],
                      "energy_label": b["energy_label"], "out": str(res.out)}, indent=2))  # fmt: skip
    return 0
