"""The edge runtime's inputs: a dataset's test split or a .npy batch, preprocessed as at training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.data import load_raw, preprocess
from toolchain.errors import ToolchainError


def dataset_inputs(
    dataset: str, input_size: int, samples: int, offset: int = 0, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Test samples offset .. offset + samples of a dataset, and their labels."""
    if samples < 1 or offset < 0:
        raise ToolchainError("--samples must be >= 1 and --offset >= 0")
    raw = load_raw(dataset, data_dir)
    sl = slice(offset, offset + samples)
    return preprocess(raw.x_test[sl], input_size), raw.y_test[sl].astype(np.int64)


def file_inputs(
    path: str | Path, input_size: int, labels_path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images [N, 28, 28] / [N, 784] or preprocessed float [N, <= input_size] from a .npy file."""
    try:
        x = np.load(path, allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False) if labels_path else None
    except (OSError, ValueError) as exc:
        raise ToolchainError(
            f"cannot read input: {exc}", hint="pass a .npy file written by numpy.save"
        ) from None
    if x.ndim == 1:
        x = x[None]
    if x.dtype == np.uint8:
        x = preprocess(x, input_size)
    elif x.dtype.kind == "f" and x.ndim == 2 and x.shape[1] <= input_size:
        x = np.pad(x.astype(np.float32), ((0, 0), (0, input_size - x.shape[1])))
    else:
        raise ToolchainError(
            f"{path}: {x.dtype} array of shape {x.shape} is not an input batch",
            hint=f"use uint8 images [N, 28, 28] or preprocessed float32 [N, {input_size}] in [0, 1]",
        )
    if labels is not None and len(labels) != len(x):
        raise ToolchainError(f"{labels_path} has {len(labels)} labels for {len(x)} inputs")
    return x, labels
