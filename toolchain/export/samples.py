"""Inputs and Keras outputs the exporters check their artifacts against (shared by TFLite and ONNX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.bundle import Bundle, load_bundle_splits
from toolchain.errors import DataError


def synthetic_inputs(bundle: Bundle, n: int = 256, seed: int = 0) -> np.ndarray:
    """Deterministic image-like inputs in [0, 1]: about 20 % lit pixels, like MNIST digits."""
    rng = np.random.default_rng(seed)
    shape = (n, bundle.config.network.neurons[0])
    lit = rng.random(shape) < 0.2
    return np.where(lit, rng.uniform(0.0, 1.0, shape), 0.0).astype(np.float32)


def check_samples(bundle: Bundle, data_dir: str | Path | None, n: int = 500) -> np.ndarray:
    """Real test images when the dataset is at hand, else deterministic image-like inputs."""
    try:
        splits = load_bundle_splits(bundle, data_dir)
    except DataError:
        return synthetic_inputs(bundle, n)
    return splits.x_test[:n]


def keras_reference(bundle: Bundle, x: np.ndarray) -> dict[str, np.ndarray]:
    """Split activation, exit logits and final logits from the Keras masked model (imports TF)."""
    model = bundle.split_model(form="masked")
    split, exit_logits = (np.asarray(a) for a in model.head_exit.predict(x, batch_size=1024, verbose=0))
    final = np.asarray(model.tail.predict(split, batch_size=1024, verbose=0))
    return {"split": split, "exit": exit_logits, "final": final, "model": model}
