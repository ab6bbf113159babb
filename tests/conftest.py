"""Shared fixtures: where the real datasets are, and a small trained bundle reused across tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check values, not speed: on a loaded 2-core machine a single example can take longer
# than hypothesis' default 200 ms deadline, which would fail a correct test.
settings.register_profile("toolchain", deadline=None)
settings.load_profile("toolchain")

REPO = Path(__file__).resolve().parent.parent
FASHION_ROOT = Path("/usr/share/datasets")  # Debian package dataset-fashion-mnist


def _mnist_root() -> Path:
    candidates = [
        os.environ.get("TOOLCHAIN_TEST_DATA_DIR"),
        REPO.parent / "shared" / "datasets",
        "/work/shared/datasets",
    ]
    for c in candidates:
        if c and (Path(c) / "mnist").is_dir():
            return Path(c)
    raise RuntimeError(
        "MNIST test data not found: set TOOLCHAIN_TEST_DATA_DIR to a directory holding mnist/ "
        f"(looked in {[str(c) for c in candidates if c]})"
    )


@pytest.fixture(scope="session")
def data_root() -> Path:
    """A data directory with the real MNIST IDX files in mnist/."""
    return _mnist_root()


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    assert (FASHION_ROOT / "fashion-mnist").is_dir(), "install the Debian package dataset-fashion-mnist"
    return FASHION_ROOT


@pytest.fixture(scope="session")
def mnist_splits(data_root):
    from toolchain.data import load_splits

    return load_splits("mnist", 800, 5000, data_root)


def small_config(epochs: int = 3, pattern: str = "random", **network):
    """The default project (paper's sparse [800, 40, 40, 10]) trained briefly."""
    from toolchain.config import default_config, validate

    cfg = default_config()
    cfg.training.epochs = epochs
    cfg.network.pattern = pattern
    for k, v in network.items():
        setattr(cfg.network, k, v)
    return validate(cfg)


@pytest.fixture(scope="session")
def make_config():
    """`make_config(epochs, pattern, **network)`: small_config as a fixture (a site-packages module
    named `tests` shadows `tests.conftest`, so import it through this fixture)."""
    return small_config


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory, mnist_splits) -> Path:
    """Default project, 3 epochs (~89 % accuracy): a real bundle for export and parity tests."""
    from toolchain.train import train

    out = tmp_path_factory.mktemp("bundles") / "random"
    train(small_config(3), out, data=mnist_splits, quiet=True)
    return out


@pytest.fixture(scope="session")
def trained_bundle_affine(tmp_path_factory, mnist_splits) -> Path:
    """Same, with the index-free affine pattern."""
    from toolchain.train import train

    out = tmp_path_factory.mktemp("bundles") / "affine"
    train(small_config(3, pattern="affine"), out, data=mnist_splits, quiet=True)
    return out
