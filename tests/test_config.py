"""Project config: defaults, TOML round trip, and one clear error per kind of bad input."""

from __future__ import annotations

import tomllib

import pytest

from toolchain.cli import main
from toolchain.config import default_config, dumps, from_dict, load_config
from toolchain.errors import ConfigError, ToolchainError


def test_default_is_the_papers_sparse_network():
    cfg = default_config()
    assert cfg.dataset == "mnist"
    assert cfg.network.neurons == [800, 40, 40, 10]
    assert cfg.network.out_degrees == [2, 9, 10]
    assert cfg.network.split_after == 1 and cfg.split_width == 40
    assert cfg.exit.hidden == []


def test_toml_round_trip_is_exact():
    cfg = default_config()
    cfg.exit.hidden = [16, 8]
    cfg.training.learning_rate = 1.5e-3
    assert from_dict(tomllib.loads(dumps(cfg))) == cfg


def test_init_writes_a_loadable_default(tmp_path, capsys):
    path = tmp_path / "p.toml"
    assert main(["init", str(path)]) == 0
    assert load_config(path) == default_config()
    assert main(["init", str(path)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def _write(tmp_path, text: str):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


BAD = [
    # (TOML, words the message must contain)
    (
        "[network]\nneurons = [784, 40, 40, 10]\nout_degrees = [2, 9, 10]\n",
        ["out_degrees[0]", "not admissible", "784·2/40 = 39.2", "nearest admissible: 5, 10"],
    ),
    ("[network]\nout_degrees = [41, 9, 10]\n", ["out_degrees[0]", "larger than the 40"]),
    ("[network]\nout_degrees = [2, 9]\n", ["out_degrees has 2 entries", "3 junctions"]),
    ("[network]\nsplit_after = 2\nneurons = [800, 40, 10]\nout_degrees = [2, 10]\n", ["split_after = 2"]),
    ("[network]\nsplit_after = 0\n", ["split_after = 0", "from 1 to 2"]),
    ('dataset = "cifar"\n', ["dataset = 'cifar'", "mnist, fashion-mnist"]),
    ("[training]\nepochz = 3\n", ["unknown config key training.'epochz'", "epochs"]),
    ("colour = 1\n", ["unknown config key 'colour'", "network"]),
    ('[training]\nepochs = "ten"\n', ["training.epochs must be integer"]),
    ("[network]\nneurons = 800\n", ["network.neurons must be a list of integers"]),
    ("[network]\nneurons = [800, 40.5, 10]\n", ["network.neurons[1] must be integer"]),
    ('[network]\npattern = "banded"\n', ["network.pattern", "random, affine, cyclic"]),
    ("[exit]\nmax_accuracy_drop = 2.0\n", ["exit.max_accuracy_drop"]),
    ("[network]\nneurons = [700, 40, 40, 10]\n", ["smaller than the 784 inputs"]),
    ("[network\n", ["invalid TOML"]),
    # Issue 13 (9): finiteness, ranges, sizes.
    ("[training]\nlearning_rate = nan\n", ["training.learning_rate must be a finite number, got nan"]),
    ("[network]\nbias_init = inf\n", ["network.bias_init must be a finite number, got inf"]),
    ("[training]\nweight_decay = -inf\n", ["training.weight_decay must be a finite number"]),
    ("[training]\nlearning_rate = 1" + "0" * 400 + "\n", ["training.learning_rate", "too large"]),
    ("[training]\nseed = -1\n", ["training.seed = -1 is out of range", "0 to 4294967295"]),
    ("[network]\nseed = 4294967296\n", ["network.seed = 4294967296 is out of range"]),
    (
        "[network]\nneurons = [800, 1000000000, 10]\nout_degrees = [1250000, 1]\n",
        ["network.neurons[1] = 1000000000 is out of range", "1 to 65535", "16-bit"],
    ),
    ("[exit]\nhidden = [100000]\n", ["exit.hidden[0] = 100000 is out of range"]),
    ("[training]\nvalidation_size = 60000\n", ["validation_size = 60000 leaves no training samples"]),
    ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", ["invalid TOML: values nested too deeply"]),
]


@pytest.mark.parametrize("text,words", BAD, ids=[w[0] for _, w in BAD])
def test_bad_config_gives_one_clear_error(tmp_path, capsys, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    for w in words:
        assert w in str(exc.value)
    # Through the CLI: non-zero exit, one message naming the file, no traceback, no bundle written.
    out = tmp_path / "bundle"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    assert main(["info", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "toolchain init" in err


def test_a_project_too_large_for_this_machine_is_refused_before_allocating(tmp_path, capsys):
    """Within every per-field range, but needing terabytes: an error in a second, not a MemoryError."""
    from toolchain.train import train, training_memory_bytes

    path = _write(
        tmp_path,
        "[network]\nneurons = [" + "65535, " * 60 + "10]\nout_degrees = [" + "65535, " * 59 + "10]\n",
    )
    cfg = load_config(path)
    assert training_memory_bytes(cfg) > 2**40
    with pytest.raises(ToolchainError, match=r"needs about .* TiB of memory, but only .* is available"):
        train(cfg, None)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "of memory" in err and "loading" not in err and "Traceback" not in err
    assert main(["plan", "--config", str(path)]) == 2  # the planner builds connectivity: same check
    assert "of memory" in capsys.readouterr().err
    assert main(["info", "--config", str(path)]) == 0  # counting parameters allocates nothing


def test_the_default_project_fits_and_the_estimate_scales(make_config):
    from toolchain.train import training_memory_bytes

    small = training_memory_bytes(make_config(1))
    assert 100e6 < small < 2e9  # mostly the padded dataset (70,000 x 800 float32, and copies)
    wide = make_config(1, neurons=[800, 4000, 40, 10], out_degrees=[200, 9, 10])
    assert training_memory_bytes(wide) > small + 7 * 800 * 4000 * 4  # a dense-stored masked kernel


def test_a_diverging_training_stops_with_an_error_and_writes_nothing(make_config, mnist_splits, tmp_path):
    from toolchain.data import Splits
    from toolchain.train import train

    s = mnist_splits
    n, m = 2000, 500
    sub = Splits(s.x_train[:n], s.y_train[:n], s.x_val[:m], s.y_val[:m], s.x_test[:m], s.y_test[:m])
    cfg = make_config(1, bias_init=1e30)  # finite, but the logits overflow float32
    with pytest.raises(ToolchainError, match=r"training diverged .*the loss is nan") as exc:
        train(cfg, tmp_path / "b", data=sub, quiet=True)
    assert "network.bias_init (now 1e+30)" in str(exc.value)
    assert list(tmp_path.iterdir()) == []
