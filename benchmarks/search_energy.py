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

Budgets, sized for about 90 minutes on an idle 2-core machine: 40 corpus curves, 10 trials per
search (6 searches), 3 reruns per choice, (a) 3 seeds x 60 epochs. Estimated from this machine's
per-epoch times (the default project trains 60 epochs in about a minute on 2 idle cores): corpus
~10-15 min, searches ~25-35 min, reruns and (a) ~10 min; under a load average of 13 (other jobs)
a corpus curve took ~80 s instead of ~15 s, so run it on a quiet machine. `--phase` runs one part.

    python benchmarks/search_energy.py --data-dir /work/shared/datasets            # benchmarks/results/
    python benchmarks/search_energy.py --quick --data-dir /work/shared/datasets    # build/benchmarks/
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

from _results import out_help, output_path  # benchmarks/ is sys.path[0]

from toolchain.fsutil import atomic_write_json, atomic_write_text
from toolchain.progress import log

ROOT = Path(__file__).resolve().parent.parent

SPACE = ROOT / "examples" / "search" / "space.toml"
EPS = (0.94, 0.95, 0.96)


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


def phase_kpred(args, out: Path, command: str) -> dict:
    from toolchain.search import kpredict as kp

    path = out.parent / f"{out.name}_curves.json"
    curves = kp.load_corpus(path if path.is_file() else None)
    rows = [kp.evaluate(curves, m, eps_values=EPS) for m in (2, 3, 4, 5)]
    rows += [kp.evaluate(curves, m, eps_values=kp.EPS_GRID) for m in (2, 3, 4, 5)]
    res = {"command": command, "corpus": str(path), "curves": len(curves), "evaluations": rows}
    atomic_write_json(out.parent / f"{out.name}_kpred.json", res)
    return res


def _retrain(cfg, data, power, eps: float, seed: int) -> dict:
    """One training run here, in this process, measured like a trial; stops at ε on validation."""
    from toolchain.train import train

    cfg = copy.deepcopy(cfg)
    cfg.training.seed = seed
    cfg.training.stop_at_accuracy = eps
    res = train(cfg, None, data=data, quiet=True)
    curve = res.metrics["training"]["curve"]
    cpu = sum(r["cpu_s"] for r in curve)
    reached = curve[-1]["val_final_accuracy"] >= eps
    return {
        "seed": seed,
        "epochs_run": len(curve),
        "val_reached": reached,
        "test_accuracy": res.metrics["final_accuracy"],
        "test_reached": res.metrics["final_accuracy"] >= eps,
        "busy_s": cpu,
        "energy_j": power.energy_j(cpu),
        "curve": [round(r["val_final_accuracy"], 5) for r in curve],
    }


def _paper(data, power, epochs: int, seeds: list[int]) -> list[dict]:
    """(a) the paper's structure, all the data, the whole recipe (no early stop)."""
    from toolchain.config import default_config

    return [_retrain(_with_epochs(default_config(), epochs), data, power, 0.0, s) for s in seeds]


def _with_epochs(cfg, epochs: int):
    cfg.training.epochs = epochs
    return cfg


def _search(args, eps: float, algorithm: str, trials: int, out: Path, space: Path) -> dict:
    from toolchain.errors import ToolchainError
    from toolchain.search.driver import SearchOptions, run_search

    try:
        res = run_search(
            SearchOptions(
                space=space,
                target_accuracy=eps,
                out=out,
                trials=trials,
                algorithm=algorithm,
                early_stop=algorithm == "tpe",
                data_dir=args.data_dir,
                quiet=True,
            )
        )
    except ToolchainError as exc:  # no trial reached ε: the table says so
        log(f"   {exc.message}")
        table = json.loads((out / "trials.json").read_text()) if (out / "trials.json").is_file() else None
        spent = sum(t["energy_j"] or 0.0 for t in table["trials"] if t["trial"]) if table else float("nan")
        return {"best": None, "error": exc.message, "search_energy_j": spent, "out": str(out)}
    spent = sum(r["energy_j"] or 0.0 for r in res.rows if r["trial"] is not None)
    return {"best": res.best, "search_energy_j": spent, "wall_s": res.summary["wall_s"], "out": str(out)}


def phase_energy(args, out: Path, command: str) -> dict:
    from toolchain.config import load_config
    from toolchain.data import load_splits
    from toolchain.search.energy import power_model

    power = power_model()
    cfg0 = load_config(None)
    data = load_splits(cfg0.dataset, cfg0.network.neurons[0], cfg0.training.validation_size, args.data_dir)
    space = _quick_space(out) if args.quick else SPACE
    seeds = [101, 102, 103]
    path = out.parent / f"{out.name}_energy.json"
    res: dict = {"command": command, "energy_label": power.label, "trials": args.trials, "targets": {}}
    log(f"(a) the paper's recipe: {args.paper_epochs} epochs x {len(seeds)} seeds")
    paper = _paper(data, power, args.paper_epochs, seeds)
    res["paper_runs"] = paper
    for eps in EPS if not args.quick else (0.85,):
        row: dict = {}
        for algo, name in (("random", "b_random"), ("tpe", "c_search")):
            log(f"eps {eps}: {name} ({args.trials} trials)")
            s = _search(args, eps, algo, args.trials, out.parent / f"{out.name}_{name}_{eps}", space)
            if s["best"] is not None:
                cfg = load_config(Path(s["out"]) / "best.toml")
                s["reruns"] = [_retrain(cfg, data, power, eps, seed) for seed in seeds]
            row[name] = s
        res["targets"][str(eps)] = row
        atomic_write_json(path, res)
    return res


def _quick_space(out: Path) -> Path:
    p = out.parent / f"{out.name}_space.toml"
    text = SPACE.read_text()
    for old, new in (
        ("hidden = [[40, 40], [64, 32], [100, 50], [128, 64]]", "hidden = [[64, 32], [100, 50]]"),
        ("fraction = [0.1, 0.2, 0.35, 0.5, 0.75, 1.0]", "fraction = [0.05, 0.1]"),
        ("epochs = [10, 20, 30]", "epochs = [4]"),
        ("batch_size = [64, 128, 256]", "batch_size = [64]"),
    ):
        text = text.replace(old, new)
    p.write_text(text)
    return p


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def _first_reach(curve: list[float], eps: float) -> int | str:
    return next((i + 1 for i, a in enumerate(curve) if a >= eps), "never")


def energy_table(res: dict) -> list[list]:
    paper = res["paper_runs"]
    rows = []
    for eps_s, row in res["targets"].items():
        eps = float(eps_s)
        e_a = _mean(r["energy_j"] for r in paper)
        rows.append(
            [eps, "(a) paper structure, all data, full recipe", "[800,40,40,10] d[2,9,10]",
             "/".join(str(_first_reach(r["curve"], eps)) for r in paper), f"{e_a:.1f}",
             f"{sum(r['test_accuracy'] >= eps for r in paper)}/{len(paper)}", "-", "1.00"]
        )  # fmt: skip
        for name, label in (("b_random", "(b) random search"), ("c_search", "(c) toolchain search")):
            s = row[name]
            if s["best"] is None:
                rows.append(
                    [eps, label, "no trial reached ε_max", "-", "-", "-", f"{s['search_energy_j']:.0f}", "-"]
                )
                continue
            b, reruns = s["best"], s["reruns"]
            e = _mean(r["energy_j"] for r in reruns)
            rows.append(
                [eps, label, f"{b['hidden']} d{b['out_degrees']} f{b['data_fraction']} b{b['batch_size']}",
                 "/".join(str(r["epochs_run"]) for r in reruns), f"{e:.1f}",
                 f"{sum(r['test_reached'] for r in reruns)}/{len(reruns)}", f"{s['search_energy_j']:.0f}",
                 f"{e / e_a:.2f}"]
            )  # fmt: skip
    return rows


def write_markdown(out: Path) -> None:
    from toolchain.progress import markdown_table

    parts = ["# RightTrain search: energy to a target accuracy on MNIST", ""]
    kp_path = out.parent / f"{out.name}_kpred.json"
    if kp_path.is_file():
        k = json.loads(kp_path.read_text())
        src = Path(k["corpus"])
        corpus = json.loads(src.read_text())["command"] if src.is_file() else "?"
        parts += [f"Command: `{k['command']}`; the curves: `{corpus}` (the package ships them as "
                  "toolchain/search/curves.json).", "",
                  f"## K predictor ({k['curves']} curves, grouped 5-fold)", "",
                  "MAPE of predicted epochs-to-ε after m observed epochs, on curves never in the fold's "
                  "training set; pairs already at ε by epoch m are excluded. The ridge strength (10) was "
                  "chosen by the same cross-validation on these curves.", ""]  # fmt: skip
        rows = [[e["m"], "0.94, 0.95, 0.96" if len(e["per_eps"]) == 3 else "0.85 ... 0.98 (step 0.005)",
                 e["examples"], f"{e['mape_model']:.1%}", f"{e['mape_last_value']:.1%}",
                 f"{e['mape_power_law']:.1%}"] for e in k["evaluations"]]  # fmt: skip
        parts += [markdown_table(["epochs seen m", "targets ε", "held-out (curve, ε) pairs", "MAPE model",
                                  "MAPE last value", "MAPE power law"], rows), ""]  # fmt: skip
    en_path = out.parent / f"{out.name}_energy.json"
    if en_path.is_file():
        e = json.loads(en_path.read_text())
        head = f"## Energy to the target ({e['trials']} trials per search)"
        parts += [f"Command: `{e['command']}`", "", head,
                  "", f"Energy: {e['energy_label']}.", "",
                  markdown_table(["ε_max", "method", "choice", "epochs per rerun (3 new seeds)",
                                  "energy per rerun J", "reruns ≥ ε_max on test", "search spent J",
                                  "energy vs (a)"], energy_table(e)), ""]  # fmt: skip
    else:
        todo = "Not run yet: `python benchmarks/search_energy.py --phase energy --data-dir DATA`"
        parts += ["## Energy to the target", "", todo + " (see the script's docstring).", ""]
    atomic_write_text(out.parent / f"{out.name}_energy.md", "\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=("corpus", "kpred", "energy", "all"), default="all")
    p.add_argument("--curves", type=int, default=40, help="corpus: learning curves to record (default 40)")
    p.add_argument("--ship", action="store_true", help="corpus: also write the package's curves.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=10, help="energy: trials per search, (b) and (c) alike")
    p.add_argument("--paper-epochs", type=int, default=60, help="energy: epochs of the paper's recipe (a)")
    p.add_argument("--quick", action="store_true", help="tiny budgets, written under build/benchmarks/")
    p.add_argument(
        "--data-dir", help="data directory with mnist/ (default: $TOOLCHAIN_DATA_DIR or the cache)"
    )
    p.add_argument("--out", help="output path prefix; " + out_help("search"))
    args = p.parse_args(argv)
    # --phase and --ship choose what is written, not how much is measured; anything else reduced
    # (--quick, fewer trials or curves...) writes under build/benchmarks/.
    out = output_path(p, args, "search", neutral={"phase", "ship"})
    if args.quick:
        args.curves, args.trials, args.paper_epochs = min(args.curves, 3), 2, 3
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/search_energy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.phase in ("corpus", "all"):
        phase_corpus(args, out, command)
    if args.phase in ("kpred", "all"):
        phase_kpred(args, out, command)
    if args.phase in ("energy", "all"):
        phase_energy(args, out, command)
    write_markdown(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
