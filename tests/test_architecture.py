"""The layout is the pipeline: no import cycle, no stage importing a stage above it.

Every `import` in the package counts, also the ones inside functions (a lazy import is still an arrow).
Run `python tests/test_architecture.py` to print the stages, their ranks and every cross-stage arrow;
`python -m pytest tests/test_architecture.py` checks them.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "toolchain"

# Stages from the bottom up. A module may import its own stage and any stage of a lower rank; two
# stages of the same rank must not import each other (siblings such as the backends stay independent).
STAGES: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "foundation", ("toolchain", "toolchain.errors", "toolchain.fsutil", "toolchain.progress",
                       "toolchain.paths", "toolchain.dtypes", "toolchain.share", "toolchain.outdir",
                       "toolchain.npz", "toolchain.resources", "toolchain.interrupt")),
    (1, "data", ("toolchain.data",)),
    (1, "sparsity", ("toolchain.sparsity",)),
    (1, "calibrate", ("toolchain.calibrate",)),
    (2, "config", ("toolchain.config",)),
    (3, "model", ("toolchain.model",)),
    (4, "bundle", ("toolchain.bundle",)),
    (5, "train", ("toolchain.train",)),
    (5, "targets", ("toolchain.targets",)),
    (6, "ir", ("toolchain.ir",)),
    (7, "edge runtime", ("toolchain.edge",)),
    (8, "quantize", ("toolchain.quantize",)),
    (9, "export", ("toolchain.export",)),
    (10, "mcu backend", ("toolchain.mcu",)),
    (10, "edge/server backends", ("toolchain.deploy",)),
    (10, "serve", ("toolchain.serve",)),
    (11, "plan", ("toolchain.plan",)),
    (12, "pipeline", ("toolchain.pipeline",)),
    (12, "parallel", ("toolchain.parallel",)),
    (13, "search", ("toolchain.search",)),
    # Entry points: the CLI, and `python -m toolchain.edge` (the same command on a board).
    (14, "cli", ("toolchain.cli", "toolchain.__main__", "toolchain.commands", "toolchain.edge.__main__")),
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Toolchain modules imported anywhere in `path` (`from pkg import mod` counts as pkg.mod)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "toolchain"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "toolchain":
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or {node.module}
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(p, known) - {m} for m, p in mods.items()}


def stage_of(module: str) -> tuple[int, str]:
    best: tuple[int, int, str] | None = None
    for rank, name, prefixes in STAGES:
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[0]):  # the most specific stage wins
                best = (len(prefix), rank, name)
    assert best is not None, f"{module} belongs to no stage: add it to STAGES"
    return best[1], best[2]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        rank, stage = stage_of(m)
        for d in sorted(deps):
            d_rank, d_stage = stage_of(d)
            if d_stage != stage and d_rank >= rank:
                bad.append(f"{m} ({stage}, rank {rank}) imports {d} ({d_stage}, rank {d_rank})")
    return bad


def test_every_module_belongs_to_a_stage():
    for m in modules():
        stage_of(m)


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_stage_imports_a_stage_above_it():
    assert violations(graph()) == []


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages explicitly (it maps the data folders into toolchain.share)."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(p.parent) for p in PACKAGE.rglob("__init__.py")}
    data = {"toolchain.share.targets", "toolchain.share.firmware_templates"}
    assert listed == on_disk | data


def main() -> int:
    g = graph()
    for rank, name, prefixes in STAGES:
        print(f"{rank:>2}  {name:<22} {', '.join(prefixes)}")
    print()
    arrows = sorted({(stage_of(m)[1], stage_of(d)[1]) for m, ds in g.items() for d in ds})
    for a, b in arrows:
        if a != b:
            print(f"{a} -> {b}")
    problems = [f"cycle: {' <-> '.join(c)}" for c in cycles(g)] + violations(g)
    print("\n".join(problems) or "\nno import cycle, no upward import")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
