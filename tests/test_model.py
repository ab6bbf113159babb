"""Keras split model: both sparse layer forms agree, the split views share weights, saving is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.bundle import load_bundle
from toolchain.model import (
    MaskedSparseDense,
    PackedSparseDense,
    build_split_model,
    get_weights,
    initial_weights,
    set_weights,
)
from toolchain.sparsity import PATTERNS, JunctionShape, build_connectivity


def _pair(shape: JunctionShape, pattern: str, seed: int):
    """A masked and a packed layer holding the same random weights."""
    conn = PATTERNS[pattern].generate(shape, seed)
    masked = MaskedSparseDense(conn.mask(), activation="relu")
    packed = PackedSparseDense(conn.idx, activation="relu")
    masked.build((None, shape.n_left))
    packed.build((None, shape.n_left))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(shape.n_right, shape.d_in)).astype(np.float32)
    b = rng.normal(size=shape.n_right).astype(np.float32)
    masked.set_packed(conn.idx, w, b)
    packed.set_packed(conn.idx, w, b)
    return conn, masked, packed, rng


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([(12, 8, 2), (30, 10, 3), (16, 16, 5), (800, 40, 2), (40, 10, 10)]),
    st.sampled_from(["random", "affine"]),
    st.integers(0, 1000),
)
def test_masked_and_packed_forms_give_the_same_outputs_and_gradients(dims, pattern, seed):
    import tensorflow as tf

    conn, masked, packed, rng = _pair(JunctionShape(*dims), pattern, seed)
    x = tf.constant(rng.normal(size=(7, dims[0])).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ym, yp = masked(x), packed(x)
        lm, lp = tf.reduce_sum(ym * ym), tf.reduce_sum(yp * yp)
    close(ym.numpy(), yp.numpy())
    # Gradients w.r.t. the input and w.r.t. every existing weight agree; masked-out kernel
    # entries get exactly zero gradient, so training cannot grow an edge.
    close(tape.gradient(lm, x).numpy(), tape.gradient(lp, x).numpy())
    gk = tape.gradient(lm, masked.kernel).numpy()
    gw = tape.gradient(lp, packed.w).numpy()
    close(gk[conn.idx, np.arange(dims[1])[:, None]], gw)
    assert not gk[conn.mask() == 0].any()
    close(tape.gradient(lm, masked.bias).numpy(), tape.gradient(lp, packed.bias).numpy())


def close(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float32 rounding of two summation orders (matmul vs gather-sum): the error
    bound scales with the size of the whole array, so a small element left after cancellation
    is not held to a relative tolerance it cannot meet."""
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("form", ["masked", "packed"])
def test_split_views_share_weights_and_compose(form, make_config):
    cfg = make_config(1)
    cfg.exit.hidden = [16]
    conns = build_connectivity(cfg.network.neurons, cfg.network.out_degrees, "random", 0)
    m = build_split_model(cfg, conns, form)
    set_weights(m, initial_weights(cfg, conns, seed=3))
    x = np.random.default_rng(0).random((5, 800), dtype=np.float32)
    full = m.full.predict(x, verbose=0)
    split, exit_logits = m.head_exit.predict(x, verbose=0)
    np.testing.assert_allclose(m.tail.predict(split, verbose=0), full["final"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.exit_branch.predict(split, verbose=0), full["exit"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exit_logits, full["exit"], rtol=1e-5, atol=1e-6)
    assert split.shape == (5, 40) and (split >= 0).all()  # ReLU at the split


def test_weights_round_trip_between_forms(make_config):
    cfg = make_config(1)
    conns = build_connectivity(cfg.network.neurons, cfg.network.out_degrees, "affine", 5)
    w0 = initial_weights(cfg, conns, seed=1)
    masked = build_split_model(cfg, conns, "masked")
    set_weights(masked, w0)
    packed = build_split_model(cfg, conns, "packed")
    set_weights(packed, get_weights(masked))
    for k, v in get_weights(packed).items():
        assert np.array_equal(v, w0[k]), k
    # Only existing edges carry weight in the masked kernel.
    k1 = masked.junctions[0].kernel.numpy()
    assert np.count_nonzero(k1) == np.count_nonzero(w0["junction_1/w"])
    assert not k1[conns[0].mask() == 0].any()


def test_initialisation_is_seeded(make_config):
    cfg = make_config(1)
    conns = build_connectivity(cfg.network.neurons, cfg.network.out_degrees, "random", 0)
    a, b, c = (initial_weights(cfg, conns, s) for s in (1, 1, 2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["junction_1/w"], c["junction_1/w"])
    # he_normal_sparse uses the real fan-in d_in = 40 of junction 1.
    assert a["junction_1/w"].std() == pytest.approx(np.sqrt(2 / 40), rel=0.15)


def test_bundle_and_keras_save_load_round_trip_is_exact(trained_bundle, tmp_path, mnist_splits):
    import keras

    bundle = load_bundle(trained_bundle)
    x = mnist_splits.x_test[:256]
    m1 = bundle.split_model("masked")
    m2 = bundle.split_model("packed")
    out1, out2 = m1.full.predict(x, verbose=0), m2.full.predict(x, verbose=0)
    np.testing.assert_allclose(out1["final"], out2["final"], rtol=1e-5, atol=1e-5)
    # Native Keras format with the registered custom layers: bit-identical outputs.
    for m, out in ((m1, out1), (m2, out2)):
        path = tmp_path / f"{m.junctions[0].__class__.__name__}.keras"
        m.full.save(path)
        again = keras.models.load_model(path)
        assert np.array_equal(again.predict(x, verbose=0)["final"], out["final"])
    # Bundle -> weights -> bundle is the identity.
    for k, v in get_weights(m2).items():
        assert np.array_equal(v, bundle.weights[k]), k
