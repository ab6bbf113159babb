"""Where the toolchain finds its data and where its outputs go by default: the one place for paths.

Data is package data (`toolchain.share`): the same lookup works in a wheel and in an editable checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _package_dir(package: str) -> Path:
    # A regular package on the file system: files() is a pathlib.Path (compilers need real paths).
    path = Path(str(files(package)))
    if not path.is_dir():
        raise RuntimeError(f"toolchain data package {package} is not a directory ({path}); reinstall")
    return path


TARGETS_DIR = _package_dir("toolchain.share.targets")
PLAN_DATA_DIR = TARGETS_DIR / "plan"
CORES_FILE = TARGETS_DIR / "cores.toml"
FIRMWARE_DIR = _package_dir("toolchain.share.firmware_templates")
KERNEL_DIR = FIRMWARE_DIR / "kernels"
HARNESS_DIR = FIRMWARE_DIR / "harness"

BUILD_ROOT = Path("build")  # relative to the working directory
DEFAULT_BUNDLE = Path("bundle")


def default_build_dir(target: str) -> Path:
    """`build/<target>`: where `toolchain build` writes and `flash`/`verify` look by default."""
    return BUILD_ROOT / target
