"""Exit calibration: the threshold sweep against brute force, and the two rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toolchain.calibrate import apply_threshold, calibrate, softmax_confidence, sweep


def _brute(scores, ec, fc, t):
    exited = scores >= t
    return exited.mean(), np.where(exited, ec, fc).mean()


samples = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        arrays(np.int64, n, elements=st.integers(0, 6)),  # few distinct values: many ties
        arrays(np.bool_, n),
        arrays(np.bool_, n),
    )
)


@settings(max_examples=150, deadline=None)
@given(samples)
def test_sweep_matches_brute_force_at_every_threshold(data):
    scores, ec, fc = data
    sw = sweep(scores, ec, fc)
    assert np.all(np.diff(sw.thresholds) > 0)
    assert sw.exit_rate[0] == 1.0 and sw.exit_rate[-1] == 0.0
    for t, rate, acc in zip(sw.thresholds, sw.exit_rate, sw.accuracy, strict=True):
        b_rate, b_acc = _brute(scores, ec, fc, t)
        assert rate == pytest.approx(b_rate)
        assert acc == pytest.approx(b_acc)


@settings(max_examples=150, deadline=None)
@given(samples, st.floats(0.0, 0.3))
def test_max_accuracy_drop_gives_the_most_exits_within_the_budget(data, drop):
    scores, ec, fc = data
    cal = calibrate(scores, ec, fc, "max_accuracy_drop", drop)
    b_rate, b_acc = _brute(scores, ec, fc, cal.threshold)
    assert b_acc >= fc.mean() - drop - 1e-12
    assert cal.exit_rate == pytest.approx(b_rate)
    # No threshold with more exits also satisfies the budget.
    for t in np.unique(scores):
        r, a = _brute(scores, ec, fc, t)
        if r > b_rate:
            assert a < fc.mean() - drop - 1e-12


@settings(max_examples=150, deadline=None)
@given(samples, st.floats(0.01, 1.0))
def test_target_exit_rate_is_met_with_the_highest_threshold(data, q):
    scores, ec, fc = data
    cal = calibrate(scores, ec, fc, "target_exit_rate", q)
    rate, _ = _brute(scores, ec, fc, cal.threshold)
    assert rate >= q - 1e-12
    higher = np.unique(scores)[np.unique(scores) > cal.threshold]
    assert all(_brute(scores, ec, fc, t)[0] < q - 1e-12 for t in higher)


def test_target_exit_rate_boundary_is_inclusive():
    """Hand-derived: scores [1, 2, 3, 4]: thresholds 1, 2, 3, 4 exit 100, 75, 50, 25 %; a target of
    exactly 50 % is met by threshold 3 (not 2, which a strict > would give), 60 % needs 2."""
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    ok = np.ones(4, dtype=bool)
    assert calibrate(scores, ok, ok, "target_exit_rate", 0.5).threshold == 3.0
    assert calibrate(scores, ok, ok, "target_exit_rate", 0.6).threshold == 2.0
    assert calibrate(scores, ok, ok, "target_exit_rate", 0.25).threshold == 4.0
    assert calibrate(scores, ok, ok, "target_exit_rate", 0.26).threshold == 3.0


def test_max_accuracy_drop_boundary_is_inclusive():
    """Exit answers right for the two most confident samples only; final exit always right. System
    accuracy at thresholds 4, 3, 2, 1: 100, 100, 75, 50 %. A drop of exactly 25 points allows 2."""
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    exit_ok = np.array([False, False, True, True])
    final_ok = np.ones(4, dtype=bool)
    assert calibrate(scores, exit_ok, final_ok, "max_accuracy_drop", 0.25).threshold == 2.0
    assert calibrate(scores, exit_ok, final_ok, "max_accuracy_drop", 0.24).threshold == 3.0
    assert calibrate(scores, exit_ok, final_ok, "max_accuracy_drop", 0.5).threshold == 1.0


def test_softmax_confidence_and_apply_threshold():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    conf = softmax_confidence(logits)
    assert conf[0] > 0.99 and conf[1] == pytest.approx(1 / 3)
    pred, exited = apply_threshold(conf, np.array([0, 1]), np.array([2, 2]), 0.5)
    assert exited.tolist() == [True, False] and pred.tolist() == [0, 2]


def test_unknown_rule():
    with pytest.raises(ValueError):
        calibrate(np.ones(3), np.ones(3, bool), np.ones(3, bool), "median", 0.1)
