"""The K predictor on synthetic learning curves with a known K, its baselines, the corpus file, and
the energy labels (RAPL parsing on a sysfs-shaped tree: this VM has no readable RAPL)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.errors import ToolchainError
from toolchain.search import kpredict as kp
from toolchain.search.energy import power_model, rapl_delta_j, rapl_domains, read_rapl_uj


def synthetic(rng, n: int) -> list[kp.Curve]:
    """Power-law error with an annealing drop near the end of the budget (a cosine schedule's
    shape): 1 - a(t) = α t^-β (1 - 0.6 (t/B)^2). The first epochs cannot show the drop, so a power
    law fitted to them over-estimates K; the budget is a feature the model can use."""
    out = []
    for _ in range(n):
        alpha, beta = rng.uniform(0.05, 0.3), rng.uniform(0.2, 0.8)
        budget = int(rng.choice([10, 20, 30]))
        t = np.arange(1, budget + 1)
        err = alpha * t**-beta * (1 - 0.6 * (t / budget) ** 2) * np.exp(rng.normal(0, 0.01, budget))
        n_train = int(rng.choice([5000, 20000, 55000]))
        out.append(kp.Curve(tuple(1 - err), 3000, n_train, 128, budget))
    return out


def test_epochs_to_reach_is_the_first_epoch_at_or_above_the_target():
    acc = (0.5, 0.8, 0.79, 0.9, 0.95)
    assert kp.epochs_to_reach(acc, 0.8) == 2
    assert kp.epochs_to_reach(acc, 0.85) == 4
    assert kp.epochs_to_reach(acc, 0.95) == 5
    assert kp.epochs_to_reach(acc, 0.96) is None


@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 0.5), st.floats(0.2, 1.5), st.floats(0.9, 0.99))
def test_power_law_baseline_recovers_k_of_a_pure_power_law(alpha, beta, eps):
    """On 1 - a(t) = α t^-β the fit from three points is exact: the continuous K it solves for
    rounds up to the first integer epoch at or above ε."""
    t = np.arange(1, 400)
    acc = tuple(1 - alpha * t**-beta)
    k = kp.epochs_to_reach(acc, eps)
    if k is None or k <= 3 or 1 - eps < 1e-4:
        return
    pred = kp.powerlaw_k(acc[:3], eps, cap=1e6)
    assert math.ceil(pred - 1e-6) == k


def test_last_value_baseline():
    assert kp.last_value_k((0.5, 0.96), 0.95, 20) == 2
    assert kp.last_value_k((0.5, 0.9), 0.95, 20) == 20


def test_model_beats_both_baselines_on_held_out_synthetic_curves():
    curves = synthetic(np.random.default_rng(1), 80)
    ev = kp.evaluate(curves, m=3, eps_values=(0.9, 0.93, 0.95, 0.96), folds=5)
    assert ev["examples"] > 100
    assert ev["mape_model"] < ev["mape_power_law"]
    assert ev["mape_model"] < ev["mape_last_value"]
    assert ev["mape_model"] <= 0.15, ev


def test_model_predicts_known_k_for_a_new_curve_of_the_family():
    model = kp.fit(synthetic(np.random.default_rng(2), 60), m=3)
    for c in synthetic(np.random.default_rng(3), 10):
        k = kp.epochs_to_reach(c.acc, 0.94)
        if k is None or k <= 3:
            continue
        assert abs(model.predict(c, 0.94) - k) / k < 0.35


def test_fit_needs_curves_that_reach_a_target():
    flat = [kp.Curve((0.1,) * 10, 100, 100, 10, 10)]
    with pytest.raises(ToolchainError, match="K predictor needs"):
        kp.fit(flat, m=3)


def test_shipped_corpus_loads_and_a_broken_one_is_a_clear_error(tmp_path):
    curves = kp.load_corpus()
    assert curves and all(len(c.acc) >= 1 for c in curves)
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ToolchainError, match="not a toolchain-search-curves"):
        kp.load_corpus(bad)
    bad.write_text("{")
    with pytest.raises(ToolchainError, match="not valid JSON"):
        kp.load_corpus(bad)


def _rapl_tree(root, energy: int, rng: int = 1000):
    pkg = root / "intel-rapl:0"
    sub = root / "intel-rapl:0:0"
    for d, name in ((pkg, "package-0"), (sub, "core")):
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{rng}\n")
    return pkg


def test_rapl_reader_uses_package_domains_and_handles_wraparound(tmp_path):
    _rapl_tree(tmp_path, 900)
    doms = rapl_domains(tmp_path)
    assert [d.name for d in doms] == ["intel-rapl:0"]  # the core sub-domain is inside the package
    before = read_rapl_uj(doms)
    (doms[0] / "energy_uj").write_text("100\n")  # wrapped past max_energy_range_uj = 1000
    assert rapl_delta_j(before, read_rapl_uj(doms)) == pytest.approx(200e-6)
    pm = power_model(rapl_root=tmp_path)
    assert pm.method == "rapl" and pm.label.startswith("measured: RAPL")


def test_energy_label_says_estimated_and_from_what(tmp_path):
    pm = power_model(rapl_root=tmp_path)  # no RAPL there
    assert pm.method == "cpu-seconds" and pm.label.startswith("estimated: CPU seconds x")
    assert "codecarbon" in pm.label
    assert pm.energy_j(10.0) == pytest.approx(10.0 * pm.watts_per_thread)
    given_pm = power_model(watts_per_thread=7.5)
    assert "7.5 W per thread" in given_pm.label and given_pm.energy_j(2.0) == 15.0
