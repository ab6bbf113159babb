"""The search space file (`toolchain search --space SPACE.toml`): parsing, validation, candidates.

A space lists the choices of one RightTrain search: structure (hidden widths, out-degrees or
"admissible", patterns, split point, exit hidden sizes), training-data fraction, batch size, epoch
budget, and resources (threads per local trial, parallel placements). Every mistake is a
`ConfigError` naming the file and the field. docs/search.md documents every key.
"""

from __future__ import annotations

import copy
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.config import ProjectConfig, default_config, load_config, validate
from toolchain.errors import ConfigError
from toolchain.sparsity import PATTERNS, admissible_out_degrees, check_out_degree

SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("name", "base", "dataset", "structure", "data", "training", "resources", "constraints", "search"),
    "structure": (
        "hidden",
        "out_degrees",
        "max_out_degree_choices",
        "patterns",
        "split_after",
        "exit_hidden",
    ),
    "data": ("fraction",),
    "training": ("batch_size", "epochs"),
    "resources": ("threads", "concurrent_trials", "placements"),
    "constraints": ("max_instructions", "max_offload_bytes", "link"),
    "search": ("trials", "seed", "observe_epochs"),
}


@dataclass(frozen=True)
class Candidate:
    """One point of the space: what a trial trains (and on what)."""

    hidden: tuple[int, ...]
    out_degrees: tuple[int, ...]
    pattern: str
    split_after: int
    exit_hidden: tuple[int, ...]
    data_fraction: float
    batch_size: int
    epochs: int
    threads: int
    placement: str | None = None  # a placement file: parallel training on Ray

    def as_dict(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "out_degrees": list(self.out_degrees),
            "pattern": self.pattern,
            "split_after": self.split_after,
            "exit_hidden": list(self.exit_hidden),
            "data_fraction": self.data_fraction,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "threads": self.threads,
            "placement": self.placement,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(
            hidden=tuple(d["hidden"]),
            out_degrees=tuple(d["out_degrees"]),
            pattern=d["pattern"],
            split_after=int(d["split_after"]),
            exit_hidden=tuple(d["exit_hidden"]),
            data_fraction=float(d["data_fraction"]),
            batch_size=int(d["batch_size"]),
            epochs=int(d["epochs"]),
            threads=int(d["threads"]),
            placement=d.get("placement"),
        )


@dataclass
class SearchSpace:
    path: Path
    name: str
    base: ProjectConfig
    hidden: list[tuple[int, ...]]
    out_degrees: str | list[tuple[int, ...]]  # "admissible" or explicit per-junction lists
    max_out_degree_choices: int
    patterns: list[str]
    split_after: list[int]
    exit_hidden: list[tuple[int, ...]]
    fractions: list[float]
    batch_sizes: list[int]
    epochs: list[int]
    threads: list[int]
    concurrent_trials: int
    placements: list[str | None]
    max_instructions: float | None
    max_offload_bytes: int | None
    link: str
    trials: int
    seed: int
    observe_epochs: int
    notes: list[str] = field(default_factory=list)

    def neurons(self, hidden: tuple[int, ...]) -> list[int]:
        return [self.base.network.neurons[0], *hidden, self.base.n_classes]

    def degree_choices(self, hidden: tuple[int, ...]) -> list[list[int]] | list[tuple[int, ...]]:
        """Per junction, the out-degrees to choose from ("admissible"), or the explicit lists that fit."""
        n = self.neurons(hidden)
        if self.out_degrees == "admissible":
            return [thin(admissible_out_degrees(a, b), self.max_out_degree_choices) for a, b in _pairs(n)]
        return [d for d in self.out_degrees if _fits(n, d)]

    def to_config(self, c: Candidate, seed: int | None = None) -> ProjectConfig:
        """The project a candidate trains: the base project with the candidate's choices."""
        cfg = copy.deepcopy(self.base)
        cfg.network.neurons = self.neurons(c.hidden)
        cfg.network.out_degrees = list(c.out_degrees)
        cfg.network.pattern = c.pattern
        cfg.network.split_after = c.split_after
        cfg.exit.hidden = list(c.exit_hidden)
        cfg.training.data_fraction = c.data_fraction
        cfg.training.batch_size = c.batch_size
        cfg.training.epochs = c.epochs
        if seed is not None:
            cfg.training.seed = seed
        return validate(cfg)


def _pairs(n: list[int]) -> list[tuple[int, int]]:
    return list(itertools.pairwise(n))


def _fits(neurons: list[int], degrees: tuple[int, ...]) -> bool:
    if len(degrees) != len(neurons) - 1:
        return False
    try:
        for (a, b), d in zip(_pairs(neurons), degrees, strict=True):
            check_out_degree(a, b, d)
    except ConfigError:
        return False
    return True


def thin(options: list[int], k: int) -> list[int]:
    """At most k of the sorted options, spread geometrically (sparsity matters in ratios), keeping the
    smallest and the largest (the dense junction)."""
    if len(options) <= k:
        return list(options)
    lo, hi = math.log(options[0]), math.log(options[-1])
    picks = {
        min(options, key=lambda o, t=lo + (hi - lo) * i / (k - 1): abs(math.log(o) - t)) for i in range(k)
    }
    return sorted(picks)


# ----------------------------------------------------------------------------------------------
# Parsing with clear errors
# ----------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def fail(self, where: str, msg: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.path}: {where} {msg}", hint=hint)

    def table(self, name: str) -> dict[str, Any]:
        t = self.data.get(name, {})
        if not isinstance(t, dict):
            raise self.fail(f"[{name}]", f"must be a table, got {t!r}")
        unknown = [k for k in t if k not in SECTIONS[name]]
        if unknown:
            raise self.fail(
                f"{name}.{unknown[0]}", "is not a known key", f"valid: {', '.join(SECTIONS[name])}"
            )
        return t

    def ints(self, sec: str, key: str, default: list[int], lo: int = 1) -> list[int]:
        v = self.table(sec).get(key, default)
        v = v if isinstance(v, list) else [v]
        if not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v):
            raise self.fail(f"{sec}.{key} = {v!r}", f"must be a non-empty list of integers >= {lo}")
        return sorted(set(v))

    def int_lists(
        self, sec: str, key: str, default: list[list[int]], allow_empty: bool
    ) -> list[tuple[int, ...]]:
        v = self.table(sec).get(key, default)
        ok = isinstance(v, list) and v and all(isinstance(x, list) for x in v)
        ok = ok and all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for x in v for i in x)
        ok = ok and (allow_empty or all(x for x in v))
        if not ok:
            example = "[[], [16]]" if allow_empty else "[[40, 40], [100, 50]]"
            raise self.fail(
                f"{sec}.{key} = {v!r}", "must be a list of lists of positive integers", f"e.g. {example}"
            )
        return list(dict.fromkeys(tuple(x) for x in v))

    def number(self, sec: str, key: str, default: float | None, lo: float = 0.0) -> float | None:
        v = self.table(sec).get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= lo:
            raise self.fail(f"{sec}.{key} = {v!r}", f"must be a number > {lo:g}")
        return float(v)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; relative paths inside it are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"space file {path} does not exist", hint="see examples/search/space.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    r = _Reader(path, data)
    unknown = [k for k in data if k not in SECTIONS[""]]
    if unknown:
        raise r.fail(unknown[0], "is not a known key", f"valid: {', '.join(SECTIONS[''])}")
    base = _base(r, path)
    st = r.table("structure")
    degrees: Any = st.get("out_degrees", "admissible")
    if degrees != "admissible":
        degrees = r.int_lists("structure", "out_degrees", [], allow_empty=False)
    patterns = st.get("patterns", [base.network.pattern])
    if not isinstance(patterns, list) or not patterns or any(p not in PATTERNS for p in patterns):
        raise r.fail(
            f"structure.patterns = {patterns!r}", "is not valid", f"a list of: {', '.join(PATTERNS)}"
        )
    fractions = r.table("data").get("fraction", [1.0])
    fractions = fractions if isinstance(fractions, list) else [fractions]
    ok = fractions and all(
        isinstance(f, int | float) and not isinstance(f, bool) and 0 < f <= 1 for f in fractions
    )
    if not ok:
        raise r.fail(
            f"data.fraction = {fractions!r}", "must be a list of fractions in (0, 1]", "e.g. [0.1, 0.5, 1.0]"
        )
    placements = _placements(r, path)
    link = r.table("constraints").get("link", "uart-115200")
    if not isinstance(link, str):
        raise r.fail(f"constraints.link = {link!r}", "must be a link name", "see targets/plan/links.toml")
    space = SearchSpace(
        path=path,
        name=str(data.get("name", path.stem)),
        base=base,
        hidden=r.int_lists("structure", "hidden", [base.network.neurons[1:-1]], allow_empty=False),
        out_degrees=degrees,
        max_out_degree_choices=r.ints("structure", "max_out_degree_choices", [6], lo=2)[0],
        patterns=list(dict.fromkeys(patterns)),
        split_after=r.ints("structure", "split_after", [base.network.split_after]),
        exit_hidden=r.int_lists("structure", "exit_hidden", [base.exit.hidden], allow_empty=True),
        fractions=sorted({float(f) for f in fractions}),
        batch_sizes=r.ints("training", "batch_size", [base.training.batch_size]),
        epochs=r.ints("training", "epochs", [base.training.epochs]),
        threads=r.ints("resources", "threads", [1]),
        concurrent_trials=r.ints("resources", "concurrent_trials", [1])[0],
        placements=placements,
        max_instructions=r.number("constraints", "max_instructions", None),
        max_offload_bytes=_opt_int(r.number("constraints", "max_offload_bytes", None)),
        link=link,
        trials=r.ints("search", "trials", [12])[0],
        seed=r.ints("search", "seed", [0], lo=0)[0],
        observe_epochs=r.ints("search", "observe_epochs", [3], lo=2)[0],
    )
    _check_structures(r, space)
    return space


def _opt_int(v: float | None) -> int | None:
    return None if v is None else int(v)


def _base(r: _Reader, path: Path) -> ProjectConfig:
    base_file = r.data.get("base")
    if base_file is not None and not isinstance(base_file, str):
        raise r.fail(f"base = {base_file!r}", "must be the path of a project file")
    cfg = load_config(path.parent / base_file) if base_file else default_config()
    ds = r.data.get("dataset")
    if ds is not None:
        cfg.dataset = ds
        try:
            validate(cfg)
        except ConfigError as exc:
            raise r.fail(f"dataset = {ds!r}:", exc.message, exc.hint) from None
    return cfg


def _placements(r: _Reader, path: Path) -> list[str | None]:
    """None stands for local (single-process) training; files are parallel placements."""
    v = r.table("resources").get("placements", [])
    if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
        raise r.fail(
            f"resources.placements = {v!r}", "must be a list of placement files", 'e.g. ["local", "fpl.toml"]'
        )
    out: list[str | None] = []
    for p in v or ["local"]:
        if p == "local":
            out.append(None)
            continue
        f = (path.parent / p).resolve()
        if not f.is_file():
            raise r.fail(
                f"resources.placements: {p}", "does not exist", "paths are relative to the space file"
            )
        out.append(str(f))
    return out


def _check_structures(r: _Reader, space: SearchSpace) -> None:
    n_hidden_layers = {len(h) for h in space.hidden}
    for s in space.split_after:
        if s > min(n_hidden_layers):
            raise r.fail(
                f"structure.split_after = {s}",
                f"is deeper than the shallowest hidden list ({min(n_hidden_layers)} layers)",
                "split after a hidden layer every structure has",
            )
    for h in space.hidden:
        if not space.degree_choices(h):
            adm = [thin(admissible_out_degrees(a, b), 8) for a, b in _pairs(space.neurons(h))]
            raise r.fail(
                f"structure.out_degrees: no list fits hidden = {list(h)}",
                "(each list needs one admissible out-degree per junction)",
                f"admissible per junction (some of them): {adm}",
            )
