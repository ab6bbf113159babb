"""The artifact bundle: everything a trained project leaves behind, written atomically.

bundle.json        format name and version, toolchain version, connectivity metadata
config.toml        the resolved project config
weights.npz        form-neutral weights (packed junctions w[N_right, d_in], b; exit Dense layers)
connectivity.npz   index tables junction_i/idx [N_right, d_in]
metrics.json       accuracies, exit calibration, parameter counts, seeds
exit_calibration.png
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import __version__
from toolchain.config import ProjectConfig, dumps, load_config
from toolchain.data import Splits, load_splits
from toolchain.errors import BundleError, ConfigError
from toolchain.fsutil import atomic_directory, file_sha256, read_versioned_json
from toolchain.sparsity import PATTERNS, Connectivity, junction_shapes

BUNDLE_FORMAT = "toolchain-bundle"
BUNDLE_VERSION = 1
REQUIRED = ("bundle.json", "config.toml", "weights.npz", "connectivity.npz", "metrics.json")
# Files of a bundle that determine the model (metrics and plots do not).
MODEL_FILES = ("config.toml", "weights.npz", "connectivity.npz")


@dataclass
class Bundle:
    path: Path
    config: ProjectConfig
    connectivity: list[Connectivity]
    weights: dict[str, np.ndarray]
    metrics: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def split_model(self, form: str | None = None):
        """Rebuild the Keras split model with the stored weights (imports TensorFlow)."""
        from toolchain.model import build_split_model, set_weights

        model = build_split_model(self.config, self.connectivity, form)
        set_weights(model, self.weights)
        return model


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_bundle(
    out: str | Path,
    config: ProjectConfig,
    conns: list[Connectivity],
    weights: dict[str, np.ndarray],
    metrics: dict[str, Any],
    extra: dict[str, bytes] | None = None,
) -> Path:
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "toolchain_version": __version__,
        "connectivity": [
            {"junction": i + 1, "pattern": c.pattern, "params": c.params} for i, c in enumerate(conns)
        ],
    }
    with atomic_directory(out) as tmp:
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "config.toml").write_text(dumps(config))
        (tmp / "weights.npz").write_bytes(_npz_bytes(weights))
        idx = {f"junction_{i + 1}/idx": c.idx for i, c in enumerate(conns)}
        (tmp / "connectivity.npz").write_bytes(_npz_bytes(idx))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
    return Path(out)


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    if not path.is_dir():
        raise BundleError(
            f"bundle directory {path} does not exist",
            hint="train one with `toolchain train --out DIR` and pass that DIR as --bundle",
        )
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise BundleError(
            f"{path} is not a complete bundle: missing {', '.join(missing)}",
            hint="re-run `toolchain train` to write a fresh bundle",
        )
    meta = read_versioned_json(
        path / "bundle.json",
        BUNDLE_FORMAT,
        BUNDLE_VERSION,
        what="a toolchain bundle",
        missing=f"{path} is not a complete bundle: missing bundle.json",
        missing_hint="re-run `toolchain train` to write a fresh bundle",
        error=BundleError,
    )
    try:
        config = load_config(path / "config.toml")
    except ConfigError as exc:
        raise BundleError(f"bundle config is invalid: {exc.message}", exc.hint) from None
    try:
        with np.load(path / "weights.npz") as z:
            weights = {k: z[k] for k in z.files}
        with np.load(path / "connectivity.npz") as z:
            idx = {k: z[k] for k in z.files}
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: corrupt bundle file ({exc})") from None
    conns = []
    shapes = junction_shapes(config.network.neurons, config.network.out_degrees)
    for i, (shape, m) in enumerate(zip(shapes, meta.get("connectivity", []), strict=False)):
        table = idx.get(f"junction_{i + 1}/idx")
        if table is None or m.get("pattern") not in PATTERNS:
            raise BundleError(f"{path}: connectivity of junction {i + 1} is missing or unknown")
        conn = Connectivity(shape, m["pattern"], table.astype(np.int32), dict(m.get("params", {})))
        try:
            conn.validate()
        except ValueError as exc:
            raise BundleError(f"{path}: junction {i + 1} connectivity is invalid: {exc}") from None
        conns.append(conn)
    if len(conns) != len(shapes):
        raise BundleError(f"{path}: bundle.json lists {len(conns)} junctions, config has {len(shapes)}")
    return Bundle(path, config, conns, weights, metrics, meta)


def as_bundle(bundle: Bundle | str | Path) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def load_bundle_splits(bundle: Bundle, data_dir: str | Path | None = None) -> Splits:
    """The dataset splits the bundle was trained on (same input width and validation size)."""
    cfg = bundle.config
    return load_splits(cfg.dataset, cfg.network.neurons[0], cfg.training.validation_size, data_dir)


def bundle_sha256(bundle_dir: str | Path) -> str:
    """One hash for the trained model: SHA-256 over the hashes of its config, weights and connectivity."""
    h = hashlib.sha256()
    for name in MODEL_FILES:
        h.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(Path(bundle_dir) / name)))
    return h.hexdigest()
