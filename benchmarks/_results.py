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


def git_commit() -> str:
    """The commit the benchmark ran on, with `+dirty` when the working tree had changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        return res.stdout.strip() if res.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def provenance(script: str, argv: list[str] | None = None) -> dict[str, object]:
    """What a results file records about how it was made: the exact command, the commit, when, and
    how busy the machine was (2 shared cores: the load average is part of the conditions)."""
    import os
    import time

    args = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join(["python", f"benchmarks/{script}", *args]),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def provenance_markdown(p: dict[str, object]) -> str:
    return (
        f"Made by `{p['command']}` at commit `{p['commit']}` on {p['date']} "
        f"({p['cpus']} CPUs, load average {p['load_average_1m_at_end']} when it finished).\n"
    )


def write(prefix: Path, data: dict, markdown: str, script: str, argv: list[str] | None = None) -> None:
    """`prefix`.json (data + "provenance") and `prefix`.md (markdown + a provenance line), atomically."""
    import json

    from toolchain.fsutil import atomic_write_text

    p = provenance(script, argv)
    atomic_write_text(prefix.with_suffix(".json"), json.dumps({**data, "provenance": p}, indent=2) + "\n")
    atomic_write_text(prefix.with_suffix(".md"), markdown.rstrip() + "\n\n" + provenance_markdown(p))
