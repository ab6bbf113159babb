"""Project config: defaults, TOML round trip, and one clear error per kind of bad input."""

from __future__ import annotations

import tomllib

import pytest

from toolchain.cli import main
from toolchain.config import default_config, dumps, from_dict, load_config
from toolchain.errors import ConfigError


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
