"""Training on a fraction of the data (training.data_fraction) and stopping at a target accuracy
(training.stop_at_accuracy): the seeded subset and the config checks. The stop itself is exercised
by the search's end-to-end test (tests/test_search_ray.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.config import ProjectConfig, from_dict, validate
from toolchain.data import Splits, subsample_train
from toolchain.errors import ConfigError


def _splits(n: int) -> Splits:
    x = np.arange(n, dtype=np.float32)[:, None]
    return Splits(x, np.arange(n, dtype=np.int32), x[:3], np.zeros(3, np.int32), x[:4], np.zeros(4, np.int32))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.floats(0.001, 1.0), st.integers(0, 10))
def test_subset_is_seeded_ordered_and_leaves_validation_and_test_whole(n, frac, seed):
    s = _splits(n)
    sub = subsample_train(s, frac, seed)
    assert len(sub.x_train) == min(n, max(1, round(frac * n)))
    assert np.all(np.diff(sub.y_train) > 0)  # original order, no repeats
    assert np.array_equal(sub.x_train[:, 0].astype(np.int32), sub.y_train)  # images stay with labels
    assert sub.x_val is s.x_val and sub.x_test is s.x_test
    again = subsample_train(s, frac, seed)
    assert np.array_equal(again.y_train, sub.y_train)


def test_different_seeds_pick_different_subsets():
    s = _splits(1000)
    assert not np.array_equal(subsample_train(s, 0.3, 0).y_train, subsample_train(s, 0.3, 1).y_train)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("data_fraction", 0.0, "data_fraction = 0.0 must be in \\(0, 1\\]"),
        ("data_fraction", 1.5, "data_fraction = 1.5"),
        ("stop_at_accuracy", 1.0, "stop_at_accuracy = 1.0 must be in \\[0, 1\\)"),
        ("stop_at_accuracy", -0.1, "stop_at_accuracy"),
    ],
)
def test_config_rejects_out_of_range_values(key, value, match):
    with pytest.raises(ConfigError, match=match):
        from_dict({"training": {key: value}}, "p.toml")


def test_defaults_train_on_everything_and_never_stop_early():
    cfg = validate(ProjectConfig())
    assert cfg.training.data_fraction == 1.0 and cfg.training.stop_at_accuracy == 0.0
