"""RightTrain on MNIST: energy to reach a target accuracy, the paper's recipe vs random search vs
`toolchain search` (docs/search.md).

Phases (all by default, in this order):

- corpus : learning curves of admissible candidates of examples/search/space.toml, trained for their
           whole budget; written to benchmarks/results/search_curves.json (and, with --ship, to the
           package's toolchain/search/curves.json, the K predictor's shipped corpus);
- kpred  : the K predictor's MAPE on held-out curves against the last-value and power-law baselines;
- energy : for each ε_max: (a) the paper's structure ([800, 40, 40, 10], d_out [2, 9, 10]) with all
           the data for 60 epochs, (b) random search, (c) `toolchain search` (Optuna TPE + the K
           predictor's stopper), the same trial budget for (b) and (c); each choice retrained with 3
           new seeds, test accuracy against ε_max; energy to reach ε_max and the energy each search
           spent, all with their label (measured RAPL, or CPU seconds x a labelled per-thread power).

    python benchmarks/search_energy.py --data-dir /work/shared/datasets            # benchmarks/results/
    python benchmarks/search_energy.py --quick --data-dir /work/shared/datasets    # build/bench/, minutes
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toolchain.fsutil import atomic_write_json  # noqa: E402
from toolchain.progress import log  # noqa: E402

SPACE = ROOT / "examples" / "search" / "space.toml"


def phase_corpus(args, out: Path, command: str) -> Path:
    from toolchain.data import load_splits
    from toolchain.search.constraints import make_constraints
    from toolchain.search.corpus import record_corpus
    from toolchain.search.kpredict import corpus_json, corpus_path
    from toolchain.search.space import load_space

    space = load_space(SPACE)
    if args.quick:
        space.fractions, space.epochs = [0.05, 0.1], [5]
    con = make_constraints(None, space.link, space.max_instructions, space.max_offload_bytes)
    cfg = space.base
    data = load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, args.data_dir)
    path = out.parent / f"{out.name}_curves.json"
    curves = []
    t0 = time.monotonic()

    def save(curve, i: int) -> None:
        curves.append(curve)
        atomic_write_json(path, corpus_json(curves, command))
        log(
            f"curve {i + 1}/{args.curves}: {curve.label}  final val acc {curve.acc[-1]:.4f}  "
            f"({time.monotonic() - t0:.0f}s so far)"
        )

    record_corpus(space, con, data, args.curves, seed=args.seed, on_curve=save)
    if args.ship and not args.quick:
        shutil.copyfile(path, corpus_path())
        log(f"shipped {len(curves)} curves to {corpus_path()}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=("corpus", "kpred", "energy", "all"), default="all")
    p.add_argument("--curves", type=int, default=40, help="corpus: learning curves to record (default 40)")
    p.add_argument("--ship", action="store_true", help="corpus: also write the package's curves.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny budgets, written under build/bench/")
    p.add_argument(
        "--data-dir", help="data directory with mnist/ (default: $TOOLCHAIN_DATA_DIR or the cache)"
    )
    p.add_argument("--out", help="output path prefix (default benchmarks/results/search)")
    args = p.parse_args(argv)
    if args.quick:
        args.curves = min(args.curves, 3)
    out = Path(args.out or ("build/bench/search_quick" if args.quick else "benchmarks/results/search"))
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/search_energy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.phase in ("corpus", "all"):
        phase_corpus(args, out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
