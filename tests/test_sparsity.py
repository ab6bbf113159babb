"""Structured predefined sparsity: degree math and connectivity patterns (property-based)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.errors import ConfigError
from toolchain.sparsity import (
    PATTERNS,
    JunctionShape,
    admissible_out_degrees,
    affine_index,
    build_connectivity,
    check_out_degree,
    count_params,
    in_degree,
    junction_seed,
    min_out_degree,
    validate_idx,
)


@st.composite
def admissible_shapes(draw, max_n: int = 120) -> JunctionShape:
    n_left = draw(st.integers(1, max_n))
    n_right = draw(st.integers(1, max_n))
    step = n_right // math.gcd(n_left, n_right)
    k = draw(st.integers(1, n_right // step))
    return JunctionShape(n_left, n_right, k * step)


@given(st.integers(1, 500), st.integers(1, 500))
def test_admissible_out_degrees_are_exactly_those_with_integer_in_degree(n_left, n_right):
    brute = [d for d in range(1, n_right + 1) if (n_left * d) % n_right == 0]
    assert admissible_out_degrees(n_left, n_right) == brute
    # Dey: gcd(N_left, N_right) admissible densities, the smallest out-degree N_right / gcd.
    assert len(brute) == math.gcd(n_left, n_right)
    assert brute[0] == min_out_degree(n_left, n_right)


@given(admissible_shapes())
def test_edges_and_density_agree_from_both_sides(shape):
    assert shape.n_left * shape.d_out == shape.n_right * shape.d_in == shape.edges
    assert shape.density == pytest.approx(shape.d_in / shape.n_left)
    assert in_degree(shape.n_left, shape.n_right, shape.d_out) == shape.d_in


@settings(max_examples=60, deadline=None)
@given(admissible_shapes(), st.sampled_from(sorted(PATTERNS)), st.integers(0, 2**31 - 1))
def test_every_pattern_has_exact_degrees_and_no_duplicate_edge(shape, pattern, seed):
    conn = PATTERNS[pattern].generate(shape, seed)
    validate_idx(conn.idx, shape)  # raises on any degree error or duplicate
    mask = conn.mask()
    assert mask.sum(axis=0).tolist() == [shape.d_in] * shape.n_right
    assert mask.sum(axis=1).tolist() == [shape.d_out] * shape.n_left
    # Deterministic: the same shape and seed give the same pattern.
    assert np.array_equal(PATTERNS[pattern].generate(shape, seed).idx, conn.idx)


@settings(max_examples=40, deadline=None)
@given(admissible_shapes(), st.integers(0, 2**31 - 1))
def test_index_free_patterns_regenerate_from_their_integers(shape, seed):
    conn = PATTERNS["affine"].generate(shape, seed)
    assert conn.index_free
    assert set(conn.params) == {"a", "b"}
    assert math.gcd(conn.params["a"], shape.n_left) == 1
    assert np.array_equal(affine_index(shape, conn.params["a"], conn.params["b"]), conn.idx)


def test_random_pattern_depends_on_seed_and_is_not_banded():
    shape = JunctionShape(800, 40, 2)
    a = PATTERNS["random"].generate(shape, 1).idx
    b = PATTERNS["random"].generate(shape, 2).idx
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, PATTERNS["cyclic"].generate(shape, 1).idx)


def test_validate_idx_rejects_duplicates_and_wrong_degrees():
    shape = JunctionShape(4, 2, 1)  # d_in = 2
    validate_idx(np.array([[0, 1], [2, 3]]), shape)
    with pytest.raises(ValueError, match="duplicate"):
        validate_idx(np.array([[0, 0], [2, 3]]), shape)
    with pytest.raises(ValueError, match="out-degree"):
        validate_idx(np.array([[0, 1], [1, 3]]), shape)
    with pytest.raises(ValueError, match="shape"):
        validate_idx(np.array([[0, 1, 2], [2, 3, 1]]), shape)


def test_inadmissible_out_degree_names_the_nearest_admissible_ones():
    with pytest.raises(ConfigError) as exc:
        check_out_degree(784, 40, 2, "out_degrees[0]")
    msg = str(exc.value)
    assert "784·2/40 = 39.2 is not an integer" in msg
    assert "multiples of 5" in msg
    with pytest.raises(ConfigError, match="larger than the 40 neurons"):
        check_out_degree(800, 40, 41)


def test_paper_default_counts():
    pc = count_params([800, 40, 40, 10], [2, 9, 10], 1, [])
    assert pc.as_dict() == {"total": 2450, "head": 1640, "exit": 410, "tail": 810}
    # An exit branch with a hidden layer: 40*16+16 + 16*10+10.
    assert count_params([800, 40, 40, 10], [2, 9, 10], 1, [16]).exit == 826


def test_junction_seeds_are_independent_per_junction():
    assert junction_seed(0, 0) != junction_seed(0, 1) != junction_seed(1, 0)


def test_build_connectivity_for_the_paper_network():
    conns = build_connectivity([800, 40, 40, 10], [2, 9, 10], "random", 0)
    assert [c.idx.shape for c in conns] == [(40, 40), (40, 9), (10, 40)]
    assert np.array_equal(conns[2].idx, np.tile(np.arange(40), (10, 1)))  # last junction is dense
    with pytest.raises(ConfigError, match="unknown connectivity pattern"):
        build_connectivity([800, 40, 10], [2, 10], "banded", 0)
