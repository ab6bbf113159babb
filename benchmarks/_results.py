"""Where a benchmark writes: the committed `benchmarks/results/` only for the full run.

A run with any option that changes what is measured set away from its default (`--count-only`,
fewer rows, seeds, epochs, samples or rounds, ...) is a reduced run: by default it writes to
`build/benchmarks/` (ignored by git), so a quick check never overwrites a committed table. An
explicit `--out` always wins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCRATCH = Path(__file__).resolve().parent.parent / "build" / "benchmarks"


def out_help(name: str) -> str:
    return (
        f"output path (default: benchmarks/results/{name} for the full run, "
        f"build/benchmarks/{name} for a reduced one)"
    )


def reduced_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, neutral: set[str]
) -> list[str]:
    """Options set away from their defaults, except `neutral` ones (paths, data directories)."""
    changed = []
    for action in parser._actions:  # argparse has no public list of its arguments
        dest = action.dest
        if dest in neutral | {"help", "out"} or not hasattr(args, dest):
            continue
        if getattr(args, dest) != action.default:
            changed.append(action.option_strings[0] if action.option_strings else dest)
    return changed


def output_path(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    name: str,
    neutral: set[str] = frozenset(),  # type: ignore[assignment]
    extra: list[str] | None = None,
) -> Path:
    """`--out` if given; else results/<name> for the full run, build/benchmarks/<name> otherwise.

    `neutral`: options that do not change what is measured (inputs, paths); `extra`: reasons the
    script itself knows make this a reduced run."""
    if getattr(args, "out", None):
        return Path(args.out)
    changed = reduced_options(parser, args, {"data_dir", *neutral}) + list(extra or [])
    if not changed:
        return RESULTS / name
    path = SCRATCH / name
    print(
        f"reduced run ({', '.join(changed)}): writing {path}, not the committed benchmarks/results/",
        file=sys.stderr,
    )
    return path
