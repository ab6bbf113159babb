"""`build`: bundle (given, or trained now) -> the target kind's builder -> `build/<target>/`, atomically.

The build directory is self-contained: it holds a copy of the bundle in `bundle/`, so `flash`,
`verify` and `serve` need only `--build DIR`. Builders (`toolchain.targets.Builder`) write into the
temporary directory they are given and record paths relative to it (it is renamed on success).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from toolchain.bundle import Bundle, load_bundle
from toolchain.config import load_config
from toolchain.fsutil import atomic_directory
from toolchain.paths import default_build_dir
from toolchain.progress import log
from toolchain.targets import Builder, BuildOptions, Target, TargetKind


# The registry: one builder per target kind, imported when used (a Raspberry Pi build needs neither
# the cross compiler nor the Triton writer, and the backends import TensorFlow-dependent modules).
def _mcu() -> Builder:
    from toolchain.mcu.builder import build

    return build


def _linux() -> Builder:
    from toolchain.deploy.rpi import build

    return build


def _edgetpu() -> Builder:
    from toolchain.deploy.coral import build

    return build


def _server() -> Builder:
    from toolchain.deploy.server import build

    return build


BUILDERS: dict[TargetKind, Callable[[], Builder]] = {
    TargetKind.MCU: _mcu,
    TargetKind.LINUX: _linux,
    TargetKind.EDGETPU: _edgetpu,
    TargetKind.SERVER: _server,
}


def builder_for(target: Target) -> Builder:
    return BUILDERS[target.kind]()


def build(
    target: Target,
    out: str | Path | None = None,
    bundle: str | Path | None = None,
    config: str | Path | None = None,
    options: BuildOptions | None = None,
) -> Path:
    options = options or BuildOptions()
    out = Path(out) if out is not None else default_build_dir(target.name)
    src: Bundle | None = load_bundle(bundle) if bundle is not None else None
    cfg = None if src is not None else load_config(config)  # validate before any work
    with atomic_directory(out) as tmp:
        if src is not None:
            shutil.copytree(src.path, tmp / "bundle")
        else:
            from toolchain.train import train  # TensorFlow: only when there is something to train

            log(
                f"no --bundle given: training {'the default project' if config is None else config}",
                options.quiet,
            )
            train(cfg, tmp / "bundle", data_dir=options.data_dir, quiet=options.quiet)
        builder_for(target)(target, load_bundle(tmp / "bundle"), tmp, options)
    log(f"build written to {out}", options.quiet)
    return out
