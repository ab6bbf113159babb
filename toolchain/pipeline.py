"""`build`: bundle (given, or trained now) -> target builder -> `build/<target>/`, written atomically.

The build directory is self-contained: it holds a copy of the bundle in `bundle/`, so `flash`,
`verify` and `serve` need only `--build DIR`. Builders write into the temporary directory they are
given and must record paths relative to it (the directory is renamed when the build succeeds).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from toolchain.bundle import Bundle, load_bundle
from toolchain.config import load_config
from toolchain.fsutil import atomic_directory
from toolchain.progress import log
from toolchain.targets import Target, builder_for


@dataclass(frozen=True)
class BuildOptions:
    dtype: str | None = None  # int8 | float32; None = the target's default
    data_dir: str | None = None
    quiet: bool = False


def default_build_dir(target: Target) -> Path:
    return Path("build") / target.name


def build(
    target: Target,
    out: str | Path | None = None,
    bundle: str | Path | None = None,
    config: str | Path | None = None,
    options: BuildOptions | None = None,
) -> Path:
    options = options or BuildOptions()
    out = Path(out) if out is not None else default_build_dir(target)
    src: Bundle | None = load_bundle(bundle) if bundle is not None else None
    cfg = None if src is not None else load_config(config)  # validate before any work
    with atomic_directory(out) as tmp:
        if src is not None:
            shutil.copytree(src.path, tmp / "bundle")
        else:
            from toolchain.train import train

            log(
                f"no --bundle given: training {'the default project' if config is None else config}",
                options.quiet,
            )
            train(cfg, tmp / "bundle", data_dir=options.data_dir, quiet=options.quiet)
        builder_for(target)(target, load_bundle(tmp / "bundle"), tmp, options)
    log(f"build written to {out}", options.quiet)
    return out
