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
from toolchain.errors import BundleError, ConfigError, ToolchainError
from toolchain.fsutil import (
    MAX_DESCRIPTOR_BYTES,
    atomic_directory,
    file_sha256,
    json_safe,
    read_versioned_json,
)
from toolchain.npz import Expect, read_npz
from toolchain.sparsity import PATTERNS, Connectivity, junction_shapes

BUNDLE_FORMAT = "toolchain-bundle"
BUNDLE_VERSION = 1
REQUIRED = ("bundle.json", "config.toml", "weights.npz", "connectivity.npz", "metrics.json")
# Files of a bundle that determine the model (metrics and plots do not).
MODEL_FILES = ("config.toml", "weights.npz", "connectivity.npz")
_RETRAIN = "the file is damaged or was modified; retrain with `toolchain train`"


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
    force: bool = False,
) -> Path:
    """Write the bundle atomically; an existing `out` is replaced only if the toolchain wrote it
    (toolchain.outdir) or `force` is set."""
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "toolchain_version": __version__,
        "connectivity": [
            {"junction": i + 1, "pattern": c.pattern, "params": c.params} for i, c in enumerate(conns)
        ],
    }
    with atomic_directory(out, "bundle", force) as tmp:
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "config.toml").write_text(dumps(config))
        (tmp / "weights.npz").write_bytes(_npz_bytes(weights))
        idx = {f"junction_{i + 1}/idx": c.idx for i, c in enumerate(conns)}
        (tmp / "connectivity.npz").write_bytes(_npz_bytes(idx))
        (tmp / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n")
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
    return Path(out)


def weight_shapes(config: ProjectConfig) -> dict[str, Expect]:
    """Every array weights.npz must hold for `config` (form-neutral layout, see toolchain.model)."""
    out = {}
    for i, s in enumerate(junction_shapes(config.network.neurons, config.network.out_degrees)):
        out[f"junction_{i + 1}/w"] = Expect((s.n_right, s.d_in))
        out[f"junction_{i + 1}/b"] = Expect((s.n_right,))
    sizes = [config.split_width, *config.exit.hidden, config.n_classes]
    names = [f"exit_{k + 1}" for k in range(len(config.exit.hidden))] + ["exit_logits"]
    for name, a, b in zip(names, sizes[:-1], sizes[1:], strict=True):
        out[f"{name}/kernel"] = Expect((a, b))
        out[f"{name}/bias"] = Expect((b,))
    return out


def _read_weights(path: Path, config: ProjectConfig) -> dict[str, np.ndarray]:
    weights = read_npz(path / "weights.npz", weight_shapes(config))
    for name, w in weights.items():
        if not np.all(np.isfinite(w)):
            bad = int(np.count_nonzero(~np.isfinite(w)))
            raise BundleError(
                f"{path / 'weights.npz'}: {name} has {bad} NaN or infinite values",
                hint="the training diverged or the file was modified; retrain with `toolchain train`",
            )
        weights[name] = w.astype(np.float32)
    return weights


def _connectivity_meta(path: Path, meta: dict[str, Any], n: int) -> list[tuple[str, dict[str, int]]]:
    """(pattern, params) per junction from bundle.json, every type checked."""
    where = f"{path / 'bundle.json'}: connectivity"
    items = meta.get("connectivity")
    if not isinstance(items, list) or len(items) != n:
        found = f"{len(items)} entries" if isinstance(items, list) else type(items).__name__
        raise BundleError(f"{where} must be a list of {n} junctions (one per config junction), got {found}")
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict) or m.get("pattern") not in PATTERNS:
            pattern = m.get("pattern") if isinstance(m, dict) else m
            raise BundleError(
                f"{where}[{i}]: pattern {pattern!r} is not one of {', '.join(PATTERNS)}",
                hint="the file was modified or written by another tool; retrain with `toolchain train`",
            )
        params = m.get("params", {})
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in params.items()
        ):
            raise BundleError(f"{where}[{i}].params must be a table of integers, got {params!r:.80}")
        out.append((m["pattern"], dict(params)))
    return out


def _read_metrics(path: Path) -> dict[str, Any]:
    file = path / "metrics.json"
    if file.stat().st_size > MAX_DESCRIPTOR_BYTES:
        raise BundleError(f"{file}: {file.stat().st_size:,} bytes is too large for a metrics file")
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{file}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(metrics, dict):
        raise BundleError(f"{file}: expected a JSON object, got {type(metrics).__name__}")
    return metrics


def load_bundle(path: str | Path) -> Bundle:
    """Load and check a bundle: every file is read with bounded memory and checked against the
    config (names, shapes, types, finite weights, exact connectivity); a bad bundle is a BundleError."""
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
    shapes = junction_shapes(config.network.neurons, config.network.out_degrees)
    patterns = _connectivity_meta(path, meta, len(shapes))
    try:
        weights = _read_weights(path, config)
        tables = read_npz(
            path / "connectivity.npz",
            {f"junction_{i + 1}/idx": Expect((s.n_right, s.d_in), "iu") for i, s in enumerate(shapes)},
        )
    except BundleError:
        raise
    except ToolchainError as exc:
        raise BundleError(f"corrupt bundle: {exc.message}", exc.hint or _RETRAIN) from None
    conns = []
    for i, (shape, (pattern, params)) in enumerate(zip(shapes, patterns, strict=True)):
        conn = Connectivity(shape, pattern, tables[f"junction_{i + 1}/idx"].astype(np.int32), params)
        try:
            conn.validate()
        except ValueError as exc:
            raise BundleError(f"{path}: junction {i + 1} connectivity is invalid: {exc}") from None
        conns.append(conn)
    return Bundle(path, config, conns, weights, _read_metrics(path), meta)


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
