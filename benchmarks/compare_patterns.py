"""Accuracy of the index-free `affine` pattern against the paper's `random` pattern, row by row.

Reads two `paper_tables.py` results made with the same settings and seeds, e.g.

    python benchmarks/paper_tables.py --rows sparse --seeds 3 --pattern affine \
        --out benchmarks/results/paper_tables_affine
    python benchmarks/compare_patterns.py benchmarks/results/paper_tables.json \
        benchmarks/results/paper_tables_affine.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _results import RESULTS, out_help, output_path

from toolchain.fsutil import atomic_write_text
from toolchain.progress import markdown_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "base",
        nargs="?",
        default=str(RESULTS / "paper_tables.json"),
        help="paper_tables JSON of the reference pattern (random; default: the committed one)",
    )
    p.add_argument(
        "other",
        nargs="?",
        default=str(RESULTS / "paper_tables_affine.json"),
        help="paper_tables JSON of the compared pattern (affine; default: the committed one)",
    )
    p.add_argument("--out", help=out_help("patterns.md"))
    args = p.parse_args(argv)
    out = output_path(p, args, "patterns.md")
    base, other = (json.loads(Path(f).read_text()) for f in (args.base, args.other))
    for name, rep in (("base", base), ("other", other)):
        if rep["settings"].get("count_only"):
            sys.exit(f"{name}: a --count-only result has no accuracies")
    keyed = {(tuple(r["neurons"]), tuple(r["out_degrees"])): r for r in base["rows"] if "accuracy" in r}
    rows, diffs = [], []
    seen = set()
    for r in other["rows"]:
        key = (tuple(r["neurons"]), tuple(r["out_degrees"]))
        if key in seen or key not in keyed or "accuracy" not in r:
            continue
        seen.add(key)
        b = keyed[key]
        d = r["accuracy"]["mean"] - b["accuracy"]["mean"]
        diffs.append(d)
        rows.append(
            [
                "-".join(map(str, key[0])),
                ",".join(map(str, key[1])),
                f"{b['accuracy']['mean']:.2f} ± {b['accuracy']['std']:.2f}",
                f"{r['accuracy']['mean']:.2f} ± {r['accuracy']['std']:.2f}",
                f"{d:+.2f}",
                f"{b['exit_accuracy']['mean']:.2f}",
                f"{r['exit_accuracy']['mean']:.2f}",
            ]
        )
    pb, po = base["settings"]["pattern"], other["settings"]["pattern"]
    headers = ["neurons", "out_degrees", f"{pb} %", f"{po} %", "difference", f"{pb} exit %", f"{po} exit %"]
    mean = sum(diffs) / len(diffs) if diffs else float("nan")
    text = (
        f"# Connectivity patterns: {po} vs {pb}\n\n"
        f"Command: `python benchmarks/compare_patterns.py {args.base} {args.other}`; both runs: "
        f"{base['settings']['name']} settings, {base['settings']['seeds']} seeds, "
        f"{base['settings']['epochs']} epochs. Mean difference over {len(diffs)} networks: "
        f"{mean:+.2f} points.\n\n" + markdown_table(headers, rows) + "\n"
    )
    atomic_write_text(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
