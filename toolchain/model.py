"""Keras 3 model: sparse junction layers (packed and masked-dense forms) and the split model.

Both layer forms hold the same parameters; the form-neutral representation is the *packed* one,
w[N_right, d_in] in index-table order plus a bias, which is what bundles store and what exports use.

- MaskedSparseDense: y = x @ (K * M) + b with a fixed 0/1 mask M. Converts to plain FULLY_CONNECTED
  (TFLite, Edge TPU, TFLM) and trains as fast as a dense layer on CPU.
- PackedSparseDense: y = sum(take(x, idx) * w) + b. Stores and computes only existing edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from toolchain.config import ProjectConfig
from toolchain.sparsity import Connectivity


@keras.saving.register_keras_serializable(package="toolchain")
class MaskedSparseDense(keras.layers.Layer):
    """Dense kernel times a constant 0/1 mask ([N_left, N_right], Keras kernel layout)."""

    def __init__(self, mask, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = np.asarray(mask, dtype=np.float32)
        self.units = self.mask_value.shape[1]
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        n_in = self.mask_value.shape[0]
        self.kernel = self.add_weight(name="kernel", shape=(n_in, self.units), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.mask = self.add_weight(
            name="mask",
            shape=(n_in, self.units),
            initializer=keras.initializers.Constant(self.mask_value),
            trainable=False,
        )

    def call(self, x):
        return self.activation(ops.matmul(x, self.kernel * self.mask) + self.bias)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mask=self.mask_value.tolist(), activation=keras.activations.serialize(self.activation))
        return cfg

    def packed(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = ops.convert_to_numpy(self.kernel)
        return k[idx, np.arange(self.units)[:, None]], ops.convert_to_numpy(self.bias)

    def set_packed(self, idx: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
        k = np.zeros(self.mask_value.shape, dtype=np.float32)
        k[idx, np.arange(self.units)[:, None]] = w
        self.kernel.assign(k)
        self.bias.assign(np.asarray(b, dtype=np.float32))


@keras.saving.register_keras_serializable(package="toolchain")
class PackedSparseDense(keras.layers.Layer):
    """Weights only for existing edges: w[N_right, d_in]; idx[N_right, d_in] says which input each reads."""

    def __init__(self, idx, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.idx_value = np.asarray(idx, dtype=np.int32)
        self.units, self.d_in = self.idx_value.shape
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(self.units, self.d_in), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, x):
        gathered = ops.take(x, ops.convert_to_tensor(self.idx_value), axis=1)  # [B, N_right, d_in]
        return self.activation(ops.sum(gathered * self.w, axis=-1) + self.bias)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(idx=self.idx_value.tolist(), activation=keras.activations.serialize(self.activation))
        return cfg

    def packed(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        del idx
        return ops.convert_to_numpy(self.w), ops.convert_to_numpy(self.bias)

    def set_packed(self, idx: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
        del idx
        self.w.assign(np.asarray(w, dtype=np.float32))
        self.bias.assign(np.asarray(b, dtype=np.float32))


def sparse_layer(form: str, conn: Connectivity, activation: str | None, name: str) -> keras.layers.Layer:
    if form == "masked":
        return MaskedSparseDense(conn.mask(), activation=activation, name=name)
    if form == "packed":
        return PackedSparseDense(conn.idx, activation=activation, name=name)
    raise ValueError(f"unknown layer form {form!r}")


# ----------------------------------------------------------------------------------------------
# The split model
# ----------------------------------------------------------------------------------------------
@dataclass
class SplitModel:
    """Shared layers viewed five ways. `full` maps input -> {"exit": logits, "final": logits}."""

    full: keras.Model
    head: keras.Model  # input -> split activation
    head_exit: keras.Model  # input -> [split activation, exit logits] (what a device runs)
    exit_branch: keras.Model  # split activation -> exit logits
    tail: keras.Model  # split activation -> final logits (what the server runs)
    junctions: list[keras.layers.Layer]
    exit_layers: list[keras.layers.Dense]
    connectivity: list[Connectivity]


def junction_name(i: int) -> str:
    return f"junction_{i + 1}"


def build_split_model(cfg: ProjectConfig, conns: list[Connectivity], form: str | None = None) -> SplitModel:
    net = cfg.network
    form = form or net.layer_form
    n_junctions = len(net.neurons) - 1
    junctions = [
        sparse_layer(form, c, "relu" if i < n_junctions - 1 else None, junction_name(i))
        for i, c in enumerate(conns)
    ]
    exit_layers = [
        keras.layers.Dense(h, activation="relu", name=f"exit_{k + 1}") for k, h in enumerate(cfg.exit.hidden)
    ]
    exit_layers.append(keras.layers.Dense(cfg.n_classes, name="exit_logits"))

    x_in = keras.Input((net.neurons[0],), name="input")
    h = x_in
    for layer in junctions[: net.split_after]:
        h = layer(h)
    split = h
    e = split
    for layer in exit_layers:
        e = layer(e)
    t = split
    for layer in junctions[net.split_after :]:
        t = layer(t)

    s_in = keras.Input((cfg.split_width,), name="split")
    tail_out, exit_out = s_in, s_in
    for layer in junctions[net.split_after :]:
        tail_out = layer(tail_out)
    for layer in exit_layers:
        exit_out = layer(exit_out)

    return SplitModel(
        full=keras.Model(x_in, {"exit": e, "final": t}, name="full"),
        head=keras.Model(x_in, split, name="head"),
        head_exit=keras.Model(x_in, [split, e], name="head_exit"),
        exit_branch=keras.Model(s_in, exit_out, name="exit_branch"),
        tail=keras.Model(s_in, tail_out, name="tail"),
        junctions=junctions,
        exit_layers=exit_layers,
        connectivity=conns,
    )


# ----------------------------------------------------------------------------------------------
# Form-neutral weights (what bundles store)
# ----------------------------------------------------------------------------------------------
def get_weights(model: SplitModel) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for layer, conn in zip(model.junctions, model.connectivity, strict=True):
        w, b = layer.packed(conn.idx)
        out[f"{layer.name}/w"], out[f"{layer.name}/b"] = w.astype(np.float32), b.astype(np.float32)
    for layer in model.exit_layers:
        k, b = layer.get_weights()
        out[f"{layer.name}/kernel"], out[f"{layer.name}/bias"] = k, b
    return out


def set_weights(model: SplitModel, weights: dict[str, np.ndarray]) -> None:
    for layer, conn in zip(model.junctions, model.connectivity, strict=True):
        layer.set_packed(conn.idx, weights[f"{layer.name}/w"], weights[f"{layer.name}/b"])
    for layer in model.exit_layers:
        layer.set_weights([weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"]])


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Keras' truncated normal: N(0, std) resampled outside ±2 std, std pre-scaled by 1/0.8796."""
    std = std / 0.87962566103423978
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2
    return (z * std).astype(np.float32)


def initial_weights(cfg: ProjectConfig, conns: list[Connectivity], seed: int) -> dict[str, np.ndarray]:
    """Seeded initial weights, identical for every layer form.

    `he_normal` reproduces the paper (a dense he_normal kernel, then masked: fan-in = N_left);
    the `_sparse` variants use the real fan-in d_in, which suits very sparse junctions better.
    """
    rng = np.random.default_rng([seed, 0x1A17])
    net = cfg.network
    w: dict[str, np.ndarray] = {}
    for i, c in enumerate(conns):
        s = c.shape
        shape = (s.n_right, s.d_in)
        if net.kernel_init == "he_normal":
            arr = _truncated_normal(rng, shape, float(np.sqrt(2.0 / s.n_left)))
        elif net.kernel_init == "he_normal_sparse":
            arr = _truncated_normal(rng, shape, float(np.sqrt(2.0 / s.d_in)))
        else:  # glorot_uniform_sparse
            lim = float(np.sqrt(6.0 / (s.d_in + s.d_out)))
            arr = rng.uniform(-lim, lim, shape).astype(np.float32)
        w[f"{junction_name(i)}/w"] = arr
        w[f"{junction_name(i)}/b"] = np.full(s.n_right, net.bias_init, dtype=np.float32)
    sizes = [cfg.split_width, *cfg.exit.hidden, cfg.n_classes]
    names = [f"exit_{k + 1}" for k in range(len(cfg.exit.hidden))] + ["exit_logits"]
    for name, a, b in zip(names, sizes[:-1], sizes[1:], strict=True):
        w[f"{name}/kernel"] = _truncated_normal(rng, (a, b), float(np.sqrt(2.0 / a)))
        w[f"{name}/bias"] = np.full(b, net.bias_init, dtype=np.float32)
    return w
