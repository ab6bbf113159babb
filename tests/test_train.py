"""Training: bundle contents, metric consistency, two-stage freezing, determinism, output errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from toolchain.bundle import BUNDLE_VERSION, load_bundle
from toolchain.calibrate import calibrate, softmax_confidence
from toolchain.cli import main
from toolchain.errors import BundleError, ToolchainError
from toolchain.train import fit_model, predict, train

METRIC_KEYS = {
    "final_accuracy",
    "exit_accuracy",
    "exit_threshold",
    "exit_rate",
    "accuracy_at_threshold",
    "params",
    "split_width",
    "seed",
}


def test_bundle_has_everything_and_metrics_match_the_model(trained_bundle, mnist_splits):
    files = {p.name for p in trained_bundle.iterdir()}
    assert {"bundle.json", "config.toml", "weights.npz", "connectivity.npz", "metrics.json"} <= files
    assert (trained_bundle / "exit_calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((trained_bundle / "metrics.json").read_text())
    assert set(m) >= METRIC_KEYS
    assert m["params"] == {"total": 2450, "head": 1640, "exit": 410, "tail": 810}
    assert m["split_width"] == 40 and m["seed"]["training"] == 0
    # Recompute the test metrics from the stored weights: they must be what metrics.json says.
    b = load_bundle(trained_bundle)
    model = b.split_model()
    e, f = predict(model, mnist_splits.x_test)
    y = mnist_splits.y_test
    assert m["final_accuracy"] == pytest.approx(np.mean(f.argmax(1) == y), abs=1e-6)
    assert m["exit_accuracy"] == pytest.approx(np.mean(e.argmax(1) == y), abs=1e-6)
    exited = softmax_confidence(e) >= m["exit_threshold"]
    assert m["exit_rate"] == pytest.approx(exited.mean(), abs=2e-4)
    system = np.where(exited, e.argmax(1), f.argmax(1))
    assert m["accuracy_at_threshold"] == pytest.approx(np.mean(system == y), abs=2e-4)
    assert m["final_accuracy"] > 0.8  # 3 epochs of the paper's network
    # The validation-calibrated threshold keeps validation accuracy within the allowed drop.
    v = m["validation"]
    assert v["accuracy_at_threshold"] >= v["final_accuracy"] - b.config.exit.max_accuracy_drop - 1e-9


def _rule_threshold(model, x, y, cfg) -> float:
    e, f = predict(model, x)
    target = cfg.exit.max_accuracy_drop if cfg.exit.rule == "max_accuracy_drop" else cfg.exit.target_exit_rate
    return calibrate(
        softmax_confidence(e), e.argmax(1) == y, f.argmax(1) == y, cfg.exit.rule, target
    ).threshold


def test_the_float_exit_threshold_comes_from_the_validation_split(trained_bundle, mnist_splits):
    """Calibrated on the validation split, exactly; calibrating on the test split gives another value, so
    this check would notice a threshold chosen on the test set."""
    b = load_bundle(trained_bundle)
    model = b.split_model()
    s = mnist_splits
    on_val = _rule_threshold(model, s.x_val, s.y_val, b.config)
    assert b.metrics["exit_threshold"] == on_val
    assert _rule_threshold(model, s.x_test, s.y_test, b.config) != on_val


def test_two_stage_freezes_the_backbone_and_training_is_deterministic(make_config, mnist_splits):
    from toolchain.model import get_weights

    def run(exit_epochs):
        cfg = make_config(1)
        cfg.training.mode = "two_stage"
        cfg.training.exit_epochs = exit_epochs
        model, _, _ = fit_model(cfg, _subset(mnist_splits), quiet=True)
        return get_weights(model)

    a, b = run(0), run(1)
    for k in a:
        if k.startswith("junction_"):
            assert np.array_equal(a[k], b[k]), f"{k} changed while training the exit"
    assert not np.array_equal(a["exit_logits/kernel"], b["exit_logits/kernel"])
    assert all(np.array_equal(a[k], run(0)[k]) for k in a)  # same seed, same weights


def _subset(s, n=8000):
    from toolchain.data import Splits

    return Splits(
        s.x_train[:n], s.y_train[:n], s.x_val[:1000], s.y_val[:1000], s.x_test[:1000], s.y_test[:1000]
    )


def test_target_exit_rate_rule_and_packed_form(make_config, mnist_splits, tmp_path):
    cfg = make_config(1, layer_form="packed")
    cfg.exit.rule = "target_exit_rate"
    cfg.exit.target_exit_rate = 0.6
    data = _subset(mnist_splits)
    res = train(cfg, tmp_path / "b", data=data, quiet=True)
    b = load_bundle(tmp_path / "b")
    assert b.config.network.layer_form == "packed"
    # Brute force: the highest score t whose exit rate mean(score >= t) still reaches 60 %.
    e, _ = predict(b.split_model(), data.x_val)
    scores = softmax_confidence(e)
    want = max(t for t in np.unique(scores) if np.mean(scores >= t) >= 0.6)
    assert res.metrics["exit_threshold"] == want
    assert res.metrics["validation"]["exit_rate"] == np.mean(scores >= want) >= 0.6


def test_unwritable_output_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ToolchainError, match="cannot be created"):
        train(None, blocker / "bundle", data=None)  # type: ignore[arg-type]
    assert main(["train", "--out", str(blocker / "bundle"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "output directory" in err and "Traceback" not in err


def test_bundle_errors(tmp_path, trained_bundle):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    import shutil

    bad = tmp_path / "old"
    shutil.copytree(trained_bundle, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["version"] = BUNDLE_VERSION + 1
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=f"version {BUNDLE_VERSION + 1} is not supported"):
        load_bundle(bad)
    (bad / "weights.npz").unlink()
    with pytest.raises(BundleError, match=r"missing weights\.npz"):
        load_bundle(bad)


def test_cli_train_end_to_end_in_a_subprocess(tmp_path, data_root, make_config):
    """The real console script: progress on stderr, JSON on stdout, an atomic bundle."""
    from toolchain.config import save_config

    cfg = make_config(1)
    cfg.training.validation_size = 50000  # train on 10,000 samples: fast
    save_config(cfg, tmp_path / "p.toml")
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [sys.executable, "-m", "toolchain", "train", "--config", str(tmp_path / "p.toml"), "--out", str(out),
         "--data-dir", str(data_root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "epoch   1/1" in proc.stderr and "bundle written" in proc.stderr
    assert json.loads(proc.stdout)["params"]["total"] == 2450
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert load_bundle(out).config == cfg
